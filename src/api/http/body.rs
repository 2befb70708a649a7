//! Request bodies: bounded before they are read, charged to the server's receiving budget while
//! they arrive, held to the call's deadline, and scanned for nesting and array sizes before the
//! JSON parser builds anything.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::HttpFailure;
use crate::api::grpc::Budget;
use crate::engine::ServeError;

/// Nesting of JSON values in a request (every route's shape needs 4).
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a body could not be had.
#[derive(Debug)]
pub enum BodyError {
    Http(HttpFailure),
    Serve(ServeError),
}

impl From<HttpFailure> for BodyError {
    fn from(f: HttpFailure) -> Self {
        Self::Http(f)
    }
}

impl From<ServeError> for BodyError {
    fn from(e: ServeError) -> Self {
        Self::Serve(e)
    }
}

/// Limits of one body.
pub struct BodyLimits {
    pub max_bytes: usize,
    /// Elements of any one JSON array: past it the request cannot be valid.
    pub max_elements: usize,
}

/// Bytes of the receiving budget held by one body until it is dropped.
struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    fn grow(&mut self, n: usize) -> Result<(), ServeError> {
        if !self.budget.take(n) {
            return Err(ServeError::Overloaded(format!(
                "the server is receiving {} bytes of other requests; {} more exceeds \
                 --max-receiving-mib ({} bytes)",
                self.budget.used(),
                n,
                self.budget.limit()
            )));
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// `Content-Type` must say JSON when it is given (a missing one is taken as JSON).
pub fn check_json_type(headers: &HeaderMap) -> Result<(), HttpFailure> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(HttpFailure::NotJson(format!(
        "`Content-Type` is {}; send application/json",
        crate::api::grpc::log_value(value.to_str().unwrap_or("(not text)"))
    )))
}

/// Reads a whole body: refused from `Content-Length` when it is larger than the limit, cut off
/// when more arrives than the limit or than it declared, charged to `budget` (declared length at
/// once, else as it arrives), and abandoned when `deadline` passes.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
    budget: &Arc<Budget>,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    let too_large = |n: &dyn std::fmt::Display| {
        HttpFailure::TooLarge(format!(
            "the request body is {n} bytes; the limit is {} (max_message_bytes: what the request \
             limits allow)",
            limits.max_bytes
        ))
    };
    let declared = match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| HttpFailure::Malformed("`Content-Length` is not a number".into()))?,
        ),
        None => None,
    };
    if let Some(n) = declared.filter(|&n| n > limits.max_bytes as u64) {
        return Err(too_large(&n).into());
    }
    let mut held = Held {
        budget: budget.clone(),
        bytes: 0,
    };
    let expected = declared.map_or(0, |n| n as usize);
    held.grow(expected)?;
    let mut buf = BytesMut::with_capacity(expected);
    let mut body = body;
    let timeout = |received: usize| {
        ServeError::DeadlineExceeded(format!(
            "the request body did not arrive whole before the deadline ({received} bytes received)"
        ))
    };
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(timeout(buf.len()).into()),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ServeError::ClientGone(format!("reading the request body failed: {e}")).into())
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        let total = buf.len() + data.len();
        if total > limits.max_bytes {
            return Err(too_large(&format!("more than {}", limits.max_bytes)).into());
        }
        if total > held.bytes {
            held.grow(total - held.bytes)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Parses `bytes` as `T` after [`scan`] found them within the limits.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], limits: &BodyLimits) -> Result<T, HttpFailure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpFailure::Empty("the request body is empty; send a JSON object".into()));
    }
    scan(bytes, limits.max_elements)?;
    serde_json::from_slice(bytes).map_err(|e| {
        HttpFailure::Malformed(format!(
            "the body is not valid for this route at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// One pass over the bytes, before parsing: nesting at most [`MAX_JSON_DEPTH`] and no array
/// with more than `max_elements` elements, so neither the parser's recursion nor its
/// allocations can be driven past what a valid request needs. Strings are skipped whole; what
/// is not JSON is left to the parser.
pub fn scan(bytes: &[u8], max_elements: usize) -> Result<(), HttpFailure> {
    // Per open container: (is an array, elements so far, saw a value since the last comma).
    let mut open: Vec<(bool, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                if open.len() == MAX_JSON_DEPTH {
                    return Err(HttpFailure::Malformed(format!(
                        "JSON nesting deeper than {MAX_JSON_DEPTH} levels at byte {i}"
                    )));
                }
                open.push((bytes[i] == b'[', 0));
            }
            b']' | b'}' => {
                open.pop();
            }
            b',' => {
                if let Some((true, n)) = open.last_mut() {
                    *n += 1;
                    // n commas: n + 1 elements.
                    if *n >= max_elements {
                        return Err(HttpFailure::Malformed(format!(
                            "a JSON array ending after byte {i} has more than {max_elements} \
                             elements (max_pairs_per_request)"
                        )));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_bounds_depth_and_arrays_but_skips_strings() {
        assert!(scan(br#"{"a": [1, 2, 3]}"#, 3).is_ok());
        assert!(scan(br#"{"a": [1, 2, 3, 4]}"#, 3).is_err());
        assert!(scan(br#"{"a": "[[[[,,,,,,,]]]]", "b": [1]}"#, 2).is_ok());
        assert!(scan(br#"{"a": "\"[,,,,", "b": [1]}"#, 2).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        assert!(scan(deep.as_bytes(), 10).is_err());
        let ok = "[".repeat(MAX_JSON_DEPTH);
        assert!(scan(ok.as_bytes(), 10).is_ok());
        // Commas of an object do not count as elements.
        assert!(scan(br#"{"a": 1, "b": 2, "c": 3, "d": 4}"#, 2).is_ok());
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(check_json_type(&h).is_ok());
        h.insert("content-type", "application/json; charset=utf-8".parse().unwrap());
        assert!(check_json_type(&h).is_ok());
        h.insert("content-type", "text/plain".parse().unwrap());
        assert!(check_json_type(&h).is_err());
    }
}
