//! The open-loop pace shared by the lag's writes and the replication floor's.

use std::time::Duration;

/// `rate` writes a second for `duration`, open loop: each write is sent on schedule whether or
/// not earlier ones were answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenLoop {
    /// Writes per second.
    pub(crate) rate: u32,
    /// How long to write.
    pub(crate) duration: Duration,
}

impl OpenLoop {
    /// How many writes the schedule holds.
    pub(crate) fn writes(self) -> usize {
        (f64::from(self.rate) * self.duration.as_secs_f64()).round() as usize
    }

    /// The number of writes and the ticker that paces them. A tick missed while the runtime
    /// was busy fires at once, so the rate holds whatever the answers.
    pub(crate) fn start(self) -> (usize, tokio::time::Interval) {
        let period = Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1)));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        (self.writes(), ticker)
    }
}
