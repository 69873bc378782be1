//! `Backoff`: how long a loop that keeps retrying a dependency waits before its next try.

use std::time::Duration;

/// Exponential backoff between [`Backoff::FIRST`] and [`Backoff::LONGEST`]: quick to retry a
/// blip, patient with an outage, and never so slow that recovery waits long after the
/// dependency is back.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    /// The wait after a first failure.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The longest wait, however many failures came before.
    pub const LONGEST: Duration = Duration::from_secs(5);

    /// The wait before the next try; each call doubles the one after, up to the longest.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::LONGEST);
        wait
    }

    /// The wait [`Backoff::next_wait`] will return, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The dependency answered: the next failure starts over from the first wait.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_start_over_after_a_reset() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| backoff.next_wait().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.peek(), Backoff::FIRST);
        assert_eq!(backoff.next_wait(), Backoff::FIRST);
    }
}
