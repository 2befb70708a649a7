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
use crate::api::grpc::{log_value, Budget};
use crate::engine::ServeError;

/// Nesting of JSON values in a request (every route's shape needs 4).
pub const MAX_JSON_DEPTH: usize = 32;

/// JSON values a body may hold per entry of max_pairs_per_request. A parsed value costs ~100
/// bytes or more however few bytes it was sent in (`"k":0,` is 6): without a bound, 16 MB of
/// keys in one document object took +440 MiB to parse. A full request of documents as objects
/// of `text` and a few other keys needs about 4 per entry.
pub const VALUES_PER_ENTRY: usize = 16;

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
    /// Entries of a request's lists (max_pairs_per_request): a JSON array with more than one
    /// more is refused unparsed.
    pub max_entries: usize,
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
/// once, else as it arrives), and abandoned when `deadline` passes (`timeout` says which one,
/// for the message).
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
    budget: &Arc<Budget>,
    deadline: Instant,
    timeout: &str,
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
    let late = |received: usize| {
        let of = declared.map_or(String::new(), |n| format!(" of its {n}"));
        ServeError::DeadlineExceeded(format!(
            "the request body did not arrive whole by the call's deadline ({timeout}): \
             {received}{of} bytes arrived"
        ))
    };
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(late(buf.len()).into()),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(
                    ServeError::ClientGone(format!("reading the request body failed: {e}")).into(),
                )
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
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
        return Err(HttpFailure::Empty(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    scan(bytes, limits.max_entries)?;
    // JSON is UTF-8 (RFC 8259); checked whole here, the error names the byte, where the
    // parser's would name the end of the string holding it.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let column = at
            - bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        HttpFailure::Malformed(format!(
            "the body is not UTF-8 at byte {at} (line {line} column {column}); send JSON as UTF-8"
        ))
    })?;
    // serde_json's message ends with the position ("at line 1 column 12").
    serde_json::from_str(text).map_err(|e| {
        HttpFailure::Malformed(format!("the body is not valid JSON for this route: {e}"))
    })
}

/// A container open during [`scan`].
struct Open<'a> {
    array: bool,
    commas: usize,
    /// The object key whose value it is.
    key: Option<&'a [u8]>,
}

/// One pass over the bytes, before parsing: nesting at most [`MAX_JSON_DEPTH`], no array
/// with more than `max_entries + 1` elements (one more than a valid request has, so that the
/// request's validation names the exact count), and at most [`VALUES_PER_ENTRY`] values per
/// entry in all (counted as commas and containers: every value but a container's first
/// follows a comma), so neither the parser's recursion nor its allocations can be driven past
/// what a valid request needs. Strings are skipped whole; what is not JSON is left to the
/// parser.
pub fn scan(bytes: &[u8], max_entries: usize) -> Result<(), HttpFailure> {
    let max_values = max_entries.saturating_mul(VALUES_PER_ENTRY);
    let mut values = 0;
    let mut open: Vec<Open> = Vec::new();
    // The last string read, and the key of the value being read (a string and then ':').
    let (mut last, mut key) = (None, None);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i = string_end(bytes, start);
                last = bytes.get(start..i);
            }
            b':' => key = last.take(),
            b'[' | b'{' => {
                if open.len() == MAX_JSON_DEPTH {
                    return Err(HttpFailure::Malformed(format!(
                        "JSON nesting reaches {} levels at byte {i}; the limit is \
                         {MAX_JSON_DEPTH} levels",
                        MAX_JSON_DEPTH + 1
                    )));
                }
                let array = bytes[i] == b'[';
                open.push(Open {
                    array,
                    commas: 0,
                    key: key.take(),
                });
            }
            b']' | b'}' => {
                open.pop();
                key = None;
            }
            b',' => {
                key = None;
                if let Some(o) = open.last_mut().filter(|o| o.array) {
                    o.commas += 1;
                    // n commas: n + 1 elements.
                    if o.commas > max_entries {
                        return Err(too_many(o.key, max_entries, i));
                    }
                }
            }
            _ => {}
        }
        // (An unclosed string leaves `i` at the end.)
        if matches!(bytes.get(i), Some(b',' | b'[' | b'{')) {
            values += 1;
            if values > max_values {
                return Err(HttpFailure::Malformed(format!(
                    "the body holds more than {max_values} JSON values (at byte {i}); the limit \
                     is {max_values} ({VALUES_PER_ENTRY} for each of max_pairs_per_request's \
                     {max_entries} entries); the body was refused before parsing"
                )));
            }
        }
        i += 1;
    }
    Ok(())
}

fn too_many(key: Option<&[u8]>, max_entries: usize, at: usize) -> HttpFailure {
    let name = match key {
        Some(k) => format!(
            "`{}`",
            log_value(&String::from_utf8_lossy(k)).trim_matches('"')
        ),
        None => "a JSON array".to_owned(),
    };
    HttpFailure::Malformed(format!(
        "{name} has more than {} entries (at byte {at}); the limit is {max_entries} \
         (max_pairs_per_request); the body was refused before parsing",
        max_entries + 1
    ))
}

/// Where the string whose contents start at `i` ends: the index of its closing quote, or
/// `bytes.len()` when it is not closed. Escaped characters are skipped; the text between quotes
/// and backslashes is passed over by `memchr` (most of a body is document text, and this scan
/// was the REST port's largest cost of its own while it went byte by byte).
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        i += at;
        if bytes[i] == b'"' {
            return i;
        }
        // The backslash and the character it escapes.
        i += 2;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_bounds_depth_and_arrays_but_skips_strings() {
        assert!(scan(br#"{"a": [1, 2, 3, 4]}"#, 3).is_ok());
        assert!(scan(br#"{"a": [1, 2, 3, 4, 5]}"#, 3).is_err());
        assert!(scan(br#"{"a": "[[[[,,,,,,,]]]]", "b": [1]}"#, 2).is_ok());
        assert!(scan(br#"{"a": "\"[,,,,", "b": [1]}"#, 2).is_ok());
        assert!(scan(br#"{"a": "\\", "b": [1, 2, 3, 4]}"#, 2).is_err());
        // Unclosed strings are left to the parser (they indexed past the end).
        assert!(scan(br#"{"a": "abc"#, 2).is_ok());
        assert!(scan(br#"{"a": "abc\"#, 2).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        assert!(scan(deep.as_bytes(), 10).is_err());
        let ok = "[".repeat(MAX_JSON_DEPTH);
        assert!(scan(ok.as_bytes(), 10).is_ok());
        // Commas of an object do not count as elements.
        assert!(scan(br#"{"a": 1, "b": 2, "c": 3, "d": 4}"#, 2).is_ok());
    }

    /// Values are counted over the whole body, in objects too.
    #[test]
    fn scan_bounds_values() {
        let members: Vec<String> = (0..32).map(|i| format!("\"k{i}\": 0")).collect();
        let body = format!("{{{}}}", members.join(", "));
        assert!(scan(body.as_bytes(), 2).is_ok(), "32 values for 2 entries");
        let body = format!("{{{}, \"k\": 0}}", members.join(", "));
        let HttpFailure::Malformed(m) = scan(body.as_bytes(), 2).unwrap_err() else {
            panic!("not Malformed")
        };
        assert!(
            m.starts_with("the body holds more than 32 JSON values"),
            "{m}"
        );
    }

    /// The refusal names the key whose array is too long, not the keys or strings around it.
    #[test]
    fn scan_names_the_array() {
        let body =
            br#"{"query": "documents", "model": "m", "documents": [{"text": "a"}, "b", "c"]}"#;
        let HttpFailure::Malformed(m) = scan(body, 1).unwrap_err() else {
            panic!("not Malformed")
        };
        assert!(m.starts_with("`documents` has more than 2 entries"), "{m}");
        assert!(m.contains("the limit is 1 (max_pairs_per_request)"), "{m}");
        let HttpFailure::Malformed(m) = scan(br#"[[1, 2, 3]]"#, 1).unwrap_err() else {
            panic!("not Malformed")
        };
        assert!(m.starts_with("a JSON array has more than 2 entries"), "{m}");
    }

    #[test]
    fn invalid_utf8_is_named_by_its_byte() {
        let limits = BodyLimits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let body = b"{\"query\": \"a\",\n \"b\": \"c\xff\"}";
        let Err(HttpFailure::Malformed(m)) = parse::<serde_json::Value>(body, &limits) else {
            panic!("accepted")
        };
        assert_eq!(
            m,
            "the body is not UTF-8 at byte 23 (line 2 column 9); send JSON as UTF-8"
        );
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(check_json_type(&h).is_ok());
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(check_json_type(&h).is_ok());
        h.insert("content-type", "text/plain".parse().unwrap());
        assert!(check_json_type(&h).is_err());
    }
}
