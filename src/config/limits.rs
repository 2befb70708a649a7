//! Per-request limits (`[limits]` in the file, the `--max-*` flags): their defaults and bounds.

use serde::Deserialize;

use super::{ConfigError, MAX_MODEL_NAME_BYTES};

/// Per-request limits, checked before any work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Pairs (or documents) in one request.
    pub max_pairs_per_request: usize,
    /// Bytes in one text (text_a, text_b, query or document).
    pub max_text_bytes: usize,
    /// Bytes in one `request_id` or `Document.id`.
    pub max_id_bytes: usize,
    /// Bytes of text being tokenized at once, over all requests; beyond, RESOURCE_EXHAUSTED.
    pub max_tokenizing_bytes: usize,
    /// ScoreStream requests being scored at once on one stream; the stream stops reading beyond.
    pub max_stream_in_flight: usize,
    /// Seconds a ScoreStream or RerankStream may go without a client message before it ends.
    pub stream_idle_timeout_secs: u64,
    /// The largest (least urgent) `priority` a request may give; 0 is the highest.
    pub max_priority: u32,
}

/// The ceiling of `max_priority`.
pub const MAX_PRIORITY_LEVELS: u32 = 1000;

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_pairs_per_request: 2048,
            max_text_bytes: 64 * 1024,
            max_id_bytes: 256,
            max_tokenizing_bytes: 64 << 20,
            max_stream_in_flight: 8,
            stream_idle_timeout_secs: 300,
            max_priority: 9,
        }
    }
}

impl RequestLimits {
    /// The largest request message these limits let through: every pair at its largest, with
    /// ids, plus protobuf framing. The default gRPC message limit is this, capped at 64 MiB.
    pub fn max_request_bytes(&self) -> usize {
        let per_pair = 2 * self.max_text_bytes + self.max_id_bytes + 16;
        let header = self.max_text_bytes + self.max_id_bytes + MAX_MODEL_NAME_BYTES + 64;
        self.max_pairs_per_request
            .saturating_mul(per_pair)
            .saturating_add(header)
    }

    /// Every limit positive (`max_priority` may be 0) and under its ceiling.
    pub fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_pairs_per_request", self.max_pairs_per_request as u64),
            ("max_text_bytes", self.max_text_bytes as u64),
            ("max_id_bytes", self.max_id_bytes as u64),
            ("max_tokenizing_bytes", self.max_tokenizing_bytes as u64),
            ("max_stream_in_flight", self.max_stream_in_flight as u64),
            ("stream_idle_timeout_secs", self.stream_idle_timeout_secs),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "limits: {name} must be positive"
            )));
        }
        let ceilings = [
            (
                "max_pairs_per_request",
                self.max_pairs_per_request as u64,
                1 << 20,
            ),
            ("max_text_bytes", self.max_text_bytes as u64, 64 << 20),
            ("max_id_bytes", self.max_id_bytes as u64, 64 << 10),
            (
                "max_stream_in_flight",
                self.max_stream_in_flight as u64,
                1024,
            ),
            (
                "stream_idle_timeout_secs",
                self.stream_idle_timeout_secs,
                86_400,
            ),
            (
                "max_priority",
                u64::from(self.max_priority),
                u64::from(MAX_PRIORITY_LEVELS),
            ),
        ];
        for (name, value, max) in ceilings {
            if value > max {
                return Err(ConfigError::Invalid(format!(
                    "limits: {name} is {value}; at most {max}"
                )));
            }
        }
        Ok(())
    }
}
