//! `cargo test` under a watchdog: each test binary gets a bounded time, and one that overruns
//! it is killed with the names of the tests libtest reported as running for over 60 s, so a
//! hung test fails the run (naming itself) instead of holding it until CI's own limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one of the child's output lines was.
enum Line {
    /// From stdout (libtest's lines).
    Out(String),
    /// From stderr (cargo's `Running …` lines, the tests' own logs).
    Err(String),
}

/// Forwards `stream` line by line to `sender`, wrapped by `wrap`.
fn forward(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<Line>,
    wrap: fn(String) -> Line,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

/// The binary a `Running …` line of cargo announces.
fn running(line: &str) -> Option<&str> {
    line.trim_start().strip_prefix("Running ")
}

/// The test a libtest `test NAME has been running for over 60 seconds` line names.
fn slow(line: &str) -> Option<&str> {
    line.strip_prefix("test ")?
        .strip_suffix(" has been running for over 60 seconds")
}

/// The test a libtest result line (`test NAME ... ok`) names.
fn finished(line: &str) -> Option<&str> {
    line.strip_prefix("test ")?
        .split_once(" ... ")
        .map(|(name, _)| name)
}

/// Tracks the tests libtest reported as slow that have not finished since.
fn note(stuck: &mut Vec<String>, text: &str) {
    if let Some(name) = slow(text) {
        stuck.push(name.to_owned());
    } else if let Some(name) = finished(text) {
        stuck.retain(|s| s != name);
    }
}

/// Runs `cmd` (a `cargo test`), echoing its output, failing if it fails or if one test binary
/// runs longer than `per_binary`.
pub(crate) fn run_tests(cmd: &mut Command, per_binary: Duration) -> Result<()> {
    let line = crate::cmd::announce(cmd);
    // Its own process group, so that the test binary (cargo's child) dies with it.
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run `{line}`"))?;
    let (sender, lines) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        forward(out, sender.clone(), Line::Out);
    }
    if let Some(err) = child.stderr.take() {
        forward(err, sender, Line::Err);
    }
    let mut binary: Option<(String, Instant)> = None;
    let mut stuck: Vec<String> = Vec::new();
    let status = loop {
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(Line::Out(text)) => {
                note(&mut stuck, &text);
                println!("{text}");
            }
            Ok(Line::Err(text)) => {
                // stdout and stderr arrive on two threads, so a binary's first lines may come
                // before its `Running`: the slow list is kept by result lines, not by binary.
                if let Some(name) = running(&text) {
                    binary = Some((name.to_owned(), Instant::now()));
                }
                eprintln!("{text}");
            }
            // Both streams closed: the child is done.
            Err(mpsc::RecvTimeoutError::Disconnected) => break child.wait()?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Done, even if something it started still holds the pipes open.
                if let Some(status) = child.try_wait()? {
                    break status;
                }
            }
        }
        if let Some((name, started)) = &binary
            && started.elapsed() > per_binary
        {
            kill_group(child.id());
            let _ = child.wait();
            // What it printed before it died, still in the pipes, may name the slow tests.
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
                if let Line::Out(text) = line {
                    note(&mut stuck, &text);
                    println!("{text}");
                }
            }
            let _ = std::io::stdout().flush();
            bail!(
                "test binary `{name}` still running after {} s (XTASK_TEST_BINARY_TIMEOUT_SECONDS); \
                 killed. Tests running for over 60 s: {}",
                per_binary.as_secs(),
                if stuck.is_empty() {
                    "none reported".to_owned()
                } else {
                    stuck.join(", ")
                }
            );
        }
    };
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// SIGKILL to the process group `leader` leads (cargo and the test binary it runs).
fn kill_group(leader: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{leader}")])
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_and_libtest_lines_are_recognised() {
        assert_eq!(
            running("     Running tests/e2e/main.rs (target/debug/deps/e2e-1234)"),
            Some("tests/e2e/main.rs (target/debug/deps/e2e-1234)")
        );
        assert_eq!(
            slow("test fuzz::routes::auth has been running for over 60 seconds"),
            Some("fuzz::routes::auth")
        );
        assert_eq!(slow("test fuzz::routes::auth ... ok"), None);
        assert_eq!(
            finished("test fuzz::routes::auth ... ok"),
            Some("fuzz::routes::auth")
        );
        let mut stuck = Vec::new();
        note(&mut stuck, "test a has been running for over 60 seconds");
        note(&mut stuck, "test b has been running for over 60 seconds");
        note(&mut stuck, "test a ... ok");
        assert_eq!(stuck, ["b"]);
    }

    #[test]
    fn a_binary_that_overruns_is_killed_and_named() {
        // A stand-in for cargo: announces a binary, reports a slow test, then hangs.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo '     Running tests/hang.rs (hang-1)' >&2; \
             echo 'test hangs::forever has been running for over 60 seconds'; sleep 600",
        ]);
        let started = Instant::now();
        let error = run_tests(&mut cmd, Duration::from_secs(2))
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not killed in time"
        );
        assert!(error.contains("tests/hang.rs (hang-1)"), "{error}");
        assert!(error.contains("hangs::forever"), "{error}");
    }

    #[test]
    fn a_passing_run_passes_and_a_failing_one_fails() {
        let mut ok = Command::new("sh");
        ok.args([
            "-c",
            "echo '     Running a (a-1)' >&2; echo 'test a ... ok'",
        ]);
        assert!(run_tests(&mut ok, Duration::from_secs(30)).is_ok());
        let mut failing = Command::new("sh");
        failing.args(["-c", "exit 101"]);
        assert!(run_tests(&mut failing, Duration::from_secs(30)).is_err());
    }
}
