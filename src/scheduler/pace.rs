//! How fast a model has been running, for refusing at once a request that cannot start before
//! its deadline. The estimate is deliberately optimistic (the fastest recent batch, every
//! replica busy on the work ahead), so a request is refused only when even that is too slow.

use std::collections::VecDeque;
use std::time::Duration;

/// Batches remembered.
const RECENT: usize = 32;

#[derive(Debug)]
pub struct Pace {
    /// Seconds per real token of the recent batches.
    recent: VecDeque<f64>,
    replicas: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            recent: VecDeque::with_capacity(RECENT),
            replicas: 1,
        }
    }
}

impl Pace {
    pub fn set_replicas(&mut self, replicas: usize) {
        self.replicas = replicas.max(1);
    }

    /// A batch of `tokens` real tokens ran in `took`.
    pub fn record(&mut self, tokens: usize, took: Duration) {
        if tokens == 0 {
            return;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(took.as_secs_f64() / tokens as f64);
    }

    /// The least time `tokens` of queued work can take, at the fastest recent pace on every
    /// replica at once; None before any batch ran.
    pub fn least_time(&self, tokens: usize) -> Option<Duration> {
        let fastest = self.recent.iter().copied().reduce(f64::min)?;
        let secs = fastest * tokens as f64 / self.replicas as f64;
        Duration::try_from_secs_f64(secs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_recent_batch_spread_over_the_replicas() {
        let mut pace = Pace::default();
        assert_eq!(pace.least_time(100), None);
        pace.record(100, Duration::from_millis(200));
        pace.record(100, Duration::from_millis(100));
        pace.record(0, Duration::from_secs(1));
        assert_eq!(pace.least_time(50), Some(Duration::from_millis(50)));
        pace.set_replicas(2);
        assert_eq!(pace.least_time(50), Some(Duration::from_millis(25)));
        for _ in 0..RECENT {
            pace.record(10, Duration::from_millis(10));
        }
        assert_eq!(pace.least_time(50), Some(Duration::from_millis(25)));
    }
}
