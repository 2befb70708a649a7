//! Every Hub transfer ends: a request without a large body (the revision lookup, a HEAD, a small
//! file) within a fixed time, a download as long as it keeps a minimum average rate; and any of
//! them as soon as its load is cancelled.
//!
//! The rule for a download of `size` bytes: once past its first [`Transfer::timeout`], its
//! average rate since it started must stay at or above [`Transfer::min_rate`]. So a trickle
//! ends right after `timeout`, and the whole file is due by `max(timeout, size / min_rate)`,
//! which is also the request's overall deadline (a complete stall ends there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--hub-timeout-secs` default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// `--hub-min-rate-kib` default: 256 KiB/s, far below any working link to the Hub, far above
/// a trickle.
pub const DEFAULT_MIN_RATE_KIB: u64 = 256;

/// How long Hub transfers may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The overall bound of the revision lookup, a HEAD and a small file; the connect and
    /// first-byte bound of every request; the time a download runs before its rate is checked
    /// (`CROSSRANK_HUB_TIMEOUT_SECS`, `--hub-timeout-secs`).
    pub timeout: Duration,
    /// Bytes per second a download must average once past `timeout`
    /// (`CROSSRANK_HUB_MIN_RATE_KIB` × 1024, `--hub-min-rate-kib`).
    pub min_rate: u64,
}

impl Default for Transfer {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT_SECS, DEFAULT_MIN_RATE_KIB)
    }
}

impl Transfer {
    /// From the flags' units; zeros are raised to 1 (a bound of 0 would refuse everything).
    pub fn new(timeout_secs: u64, min_rate_kib: u64) -> Self {
        Self {
            timeout: Duration::from_secs(timeout_secs.max(1)),
            min_rate: min_rate_kib.max(1).saturating_mul(1024),
        }
    }

    /// The overall deadline of a transfer of `size` bytes (None: a request without a body
    /// of known size): `max(timeout, size / min_rate)`.
    pub fn deadline(&self, size: Option<u64>) -> Duration {
        let by_rate = size.map_or(0.0, |s| s as f64 / self.min_rate as f64);
        self.timeout.max(Duration::from_secs_f64(by_rate.min(1e9)))
    }
}

/// Set when a load is abandoned (UnloadModel, shutdown); its transfers stop at their next
/// check (between reads, between files).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a transfer stopped early.
pub enum Stop {
    Cancelled,
    /// Past its deadline or below the minimum rate; the text says which, with the figures.
    Slow(String),
}

/// One transfer's clock and byte count.
pub struct Pace<'a> {
    transfer: Transfer,
    cancel: &'a Cancel,
    /// The bytes expected (a download), or None (a request whose answer is small).
    size: Option<u64>,
    started: Instant,
    deadline: Duration,
    bytes: u64,
}

impl<'a> Pace<'a> {
    pub fn start(transfer: Transfer, cancel: &'a Cancel, size: Option<u64>) -> Self {
        Self {
            transfer,
            cancel,
            size,
            started: Instant::now(),
            deadline: transfer.deadline(size),
            bytes: 0,
        }
    }

    /// What is left of the overall deadline (at least 1 ms: reqwest's bound, never zero).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_millis(1))
    }

    /// Counts `n` more bytes, then [`check`](Self::check)s.
    pub fn advance(&mut self, n: u64) -> Result<(), Stop> {
        self.bytes = self.bytes.saturating_add(n);
        self.check()
    }

    /// Cancelled, past the deadline, or (a download past its first `timeout`) averaging less
    /// than the minimum rate.
    pub fn check(&self) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let elapsed = self.started.elapsed();
        let slow = self.size.is_some()
            && elapsed > self.transfer.timeout
            && (self.bytes as f64) < self.transfer.min_rate as f64 * elapsed.as_secs_f64();
        match elapsed >= self.deadline || slow {
            true => Err(Stop::Slow(self.reason(elapsed))),
            false => Ok(()),
        }
    }

    fn reason(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        let of = self.size.map(|s| format!(" of {s}")).unwrap_or_default();
        let seen = format!(
            "{}{of} bytes in {secs:.1} s ({})",
            self.bytes,
            rate(self.bytes as f64 / secs.max(1e-3))
        );
        let t = self.transfer.timeout.as_secs();
        match self.size {
            None => format!(
                "no complete answer within {t} s (--hub-timeout-secs, CROSSRANK_HUB_TIMEOUT_SECS): \
                 {seen}"
            ),
            Some(_) => format!(
                "too slow: {seen}; a download must average at least {} after its \
                 first {t} s (--hub-min-rate-kib, --hub-timeout-secs), so this one's deadline \
                 was {:.0} s",
                rate(self.transfer.min_rate as f64),
                self.deadline.as_secs_f64()
            ),
        }
    }
}

/// A rate for messages: "0.2 B/s", "12.5 KiB/s", "3.1 MiB/s".
fn rate(bytes_per_sec: f64) -> String {
    match bytes_per_sec {
        r if r < 1024.0 => format!("{r:.1} B/s"),
        r if r < 1024.0 * 1024.0 => format!("{:.1} KiB/s", r / 1024.0),
        r => format!("{:.1} MiB/s", r / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_size_and_rate() {
        let t = Transfer::new(30, 256);
        assert_eq!(t.deadline(None), Duration::from_secs(30));
        assert_eq!(t.deadline(Some(1000)), Duration::from_secs(30));
        // 1 GiB at 256 KiB/s: 4096 s
        assert_eq!(t.deadline(Some(1 << 30)), Duration::from_secs(4096));
        assert_eq!(
            t.deadline(Some(u64::MAX)),
            Duration::from_secs(1_000_000_000)
        );
        assert_eq!(Transfer::new(0, 0), Transfer::new(1, 1));
    }

    #[test]
    fn cancel_stops_at_the_next_check() {
        let cancel = Cancel::default();
        let mut pace = Pace::start(Transfer::default(), &cancel, Some(10));
        assert!(pace.advance(1).is_ok());
        cancel.clone().cancel();
        assert!(matches!(pace.advance(1), Err(Stop::Cancelled)));
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(rate(0.2), "0.2 B/s");
        assert_eq!(rate(2048.0), "2.0 KiB/s");
        assert_eq!(rate(3.0 * 1024.0 * 1024.0), "3.0 MiB/s");
    }
}
