//! The serving process's own CPU time, read from `/proc/self/stat` at each scrape: what a
//! request costs the server, steady on a busy machine where requests per second are not.

/// Clock ticks per second of `/proc`'s times: Linux exports them in `USER_HZ`, which is 100
/// on every architecture it runs on.
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds this process has used, if `/proc` says (Linux).
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat)
}

/// `utime` + `stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces, so the fields are counted after its `)`.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_summed_whatever_the_command_name() {
        let stat = "4242 (ticketing up) S 1 4242 4242 0 -1 4194560 5067 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_seconds_of(stat), Some(3.25));
        assert_eq!(cpu_seconds_of("garbage"), None);
    }

    #[test]
    fn this_process_counts_the_cpu_it_burns() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = cpu_seconds().unwrap_or(f64::NAN);
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds().is_some_and(|now| now <= before)
            && started.elapsed() < std::time::Duration::from_secs(5)
        {
            x = (0..100_000u64).fold(x, |a, b| a.wrapping_mul(31).wrapping_add(b));
        }
        assert!(
            cpu_seconds().is_some_and(|now| now > before),
            "{before} {x}"
        );
    }
}
