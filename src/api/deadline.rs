//! The caller's deadline from the `grpc-timeout` header.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// A unary call's deadline: the caller's, or `default` from now when it sent none.
pub fn unary_deadline(metadata: &MetadataMap, default: Duration) -> Option<Instant> {
    deadline(metadata).or_else(|| Instant::now().checked_add(default))
}

/// The instant by which crossrank must answer: the caller's `grpc-timeout` less a small margin.
///
/// tonic's own timeout layer starts the same clock earlier and, when it fires, ends the call as
/// CANCELLED; answering a little before it lets the call end DEADLINE_EXCEEDED, and reach the
/// caller before it gives up. The margin is 5% of the timeout, between 2 and 50 ms.
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    Instant::now().checked_add(less_margin(timeout(metadata)?))
}

/// `timeout` less the margin that lets crossrank answer before tonic's timeout layer fires.
pub fn less_margin(timeout: Duration) -> Duration {
    let margin = (timeout / 20).clamp(Duration::from_millis(2), Duration::from_millis(50));
    timeout.saturating_sub(margin)
}

/// `grpc-timeout` is up to 8 digits and a unit: H, M, S, m (ms), u (µs), n (ns).
fn timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// A `grpc-timeout` value.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    // At most 8 digits (gRPC's wire format): nothing a client sends can overflow an instant.
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Some(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "1500m".parse().unwrap());
        let d = deadline(&md).unwrap() - Instant::now();
        assert!(
            d > Duration::from_millis(1400) && d <= Duration::from_millis(1450),
            "{d:?}"
        );
        md.insert("grpc-timeout", "12x".parse().unwrap());
        assert!(deadline(&md).is_none());
        md.insert("grpc-timeout", "999999999H".parse().unwrap()); // 9 digits
        assert!(deadline(&md).is_none());
        assert_eq!(
            parse_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }
}
