//! Waiting between attempts to reach another service: a wait that starts
//! short, doubles after each failed attempt up to a cap, and starts short
//! again once an attempt succeeds.

use std::time::Duration;

/// An exponential backoff.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Waits of `initial`, doubling up to `max`.
    pub(crate) const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The wait the next [`Backoff::wait`] sleeps.
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// An attempt succeeded: the next wait is short again.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Sleeps the current wait, then doubles it (up to the cap). Cancelled
    /// midway, it leaves the wait as it was.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.current).await;
        self.current = (self.current * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(3));
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(backoff.current());
            backoff.wait().await;
        }
        assert_eq!(waits, [1, 2, 3, 3].map(Duration::from_millis).to_vec());
        backoff.reset();
        assert_eq!(backoff.current(), Duration::from_millis(1));
    }
}
