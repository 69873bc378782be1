//! What a lag measurement found: how many writes, how many failed, and the lag of the rest.

use std::fmt;
use std::time::Duration;

/// Lag percentiles over every write.
#[derive(Debug, Default)]
pub struct LagReport {
    /// Updates sent.
    pub writes: usize,
    /// Updates that failed or never became visible within 5 s.
    pub failures: usize,
    /// Of those, updates that were not answered 2xx (or not at all within 10 s).
    pub failed_writes: usize,
    /// Sorted lags of the successful writes.
    pub lags: Vec<Duration>,
}

impl LagReport {
    /// The q-quantile (0.0–1.0) of the observed lags.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.lags.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.lags.len() - 1) as f64 * q).round() as usize;
        self.lags[index.min(self.lags.len() - 1)]
    }
}

impl fmt::Display for LagReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "writes:   {} ({} failed, {} not visible in 5 s)",
            self.writes,
            self.failed_writes,
            self.failures - self.failed_writes
        )?;
        write!(
            f,
            "lag:      p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0))
        )
    }
}
