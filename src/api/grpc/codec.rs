//! The protobuf codec of crossrank's services: prost, plus a scan of each request's wire bytes
//! that refuses a message with more repeated entries than any request may have *before* it is
//! decoded. (An empty `Pair` is 2 bytes on the wire and ~50 in memory: a 64 MiB message of them
//! would otherwise decode into gigabytes before the count check.)

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder};

use super::pb;

/// The most repeated entries (pairs, documents) a message may carry: the largest
/// `max_pairs_per_request` of any server started in this process.
static MAX_ENTRIES: AtomicUsize = AtomicUsize::new(0);

/// Raises the bound to `n` (servers only ever raise it; each still checks its own limit after
/// decoding).
pub fn allow_entries(n: usize) {
    MAX_ENTRIES.fetch_max(n, Ordering::AcqRel);
}

fn max_entries() -> usize {
    match MAX_ENTRIES.load(Ordering::Acquire) {
        0 => crate::config::RequestLimits::default().max_pairs_per_request,
        n => n,
    }
}

/// A message whose repeated field is bounded: the path of field numbers to it (a nested
/// message's field after its parent's) and its name for errors.
pub trait Bounded {
    const ENTRIES: Option<(&'static [u32], &'static str)> = None;
    /// The bound and its name, when it is not `max_pairs_per_request`.
    const LIMIT: Option<(usize, &'static str)> = None;
}

impl Bounded for pb::ScoreRequest {
    const ENTRIES: Option<(&'static [u32], &'static str)> = Some((&[2], "pairs"));
}
impl Bounded for pb::RerankRequest {
    const ENTRIES: Option<(&'static [u32], &'static str)> = Some((&[3], "documents"));
}
impl Bounded for pb::RerankStreamRequest {
    const ENTRIES: Option<(&'static [u32], &'static str)> = Some((&[2, 1], "documents.documents"));
}
macro_rules! unbounded {
    ($($t:ident),*) => { $(impl Bounded for pb::$t {})* };
}
unbounded!(
    ScoreResponse,
    RerankResponse,
    RerankStreamResponse,
    ListModelsRequest,
    ListModelsResponse,
    GetModelRequest,
    ModelInfo,
    UnloadModelRequest,
    UnloadModelResponse
);

/// LoadModel is decoded before its token is checked: its replica devices are counted first,
/// with room above the replica bound (64) so that validation names the count it was given.
impl Bounded for pb::LoadModelRequest {
    const ENTRIES: Option<(&'static [u32], &'static str)> = Some((&[3, 1], "options.devices"));
    const LIMIT: Option<(usize, &'static str)> = Some((4096, "replicas; refused on the wire"));
}

#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Bounded + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::new().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(ProstCodec::<T, U>::new().decoder())
    }
}

pub struct BoundedDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default + Bounded> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if let Some((path, field)) = U::ENTRIES {
            use prost::bytes::Buf;
            let (limit, name) =
                U::LIMIT.unwrap_or_else(|| (max_entries(), "max_pairs_per_request"));
            // tonic hands the decoder one contiguous buffer holding the whole message; a message
            // the scan cannot see whole, or cannot parse, is refused rather than left to prost.
            let counted = match buf.chunk().len() == buf.remaining() {
                true => count(buf.chunk(), path, limit),
                false => Err("the message is not contiguous"),
            };
            match counted {
                Ok(n) if n > limit => {
                    return Err(Status::invalid_argument(format!(
                        "`{field}` has more than {limit} entries ({name}); the message was \
                         refused before decoding"
                    )))
                }
                Ok(_) => {}
                Err(why) => {
                    return Err(Status::invalid_argument(format!(
                        "the request message is not valid protobuf ({why}); it was refused \
                         before decoding"
                    )))
                }
            }
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Nested groups the scan follows, as prost's decoder does (its recursion limit).
const MAX_DEPTH: u32 = 100;

type Scan<T> = Result<T, &'static str>;

/// Occurrences of the field at `path` in the protobuf bytes `buf`, counting at most `limit + 1`;
/// an error when the bytes are not well-formed protobuf. Unknown fields of every wire type are
/// skipped as prost skips them (groups to their matching end, nested up to [`MAX_DEPTH`]), so no
/// prefix or unknown field lets entries past the count.
fn count(mut buf: &[u8], path: &[u32], limit: usize) -> Scan<usize> {
    let (&field, rest) = path.split_first().ok_or("empty path")?;
    let mut n = 0;
    while !buf.is_empty() && n <= limit {
        let (number, wire) = key(&mut buf)?;
        if wire == 4 {
            return Err("a group ends that never started");
        }
        if number == field && wire == 2 {
            let body = length_delimited(&mut buf)?;
            n += match rest.is_empty() {
                true => 1,
                false => count(body, rest, limit - n)?,
            };
        } else {
            skip(&mut buf, number, wire, 0)?;
        }
    }
    Ok(n)
}

/// A field key: its number (1 to 2^29 - 1) and wire type (0 to 5).
fn key(buf: &mut &[u8]) -> Scan<(u32, u64)> {
    let key = varint(buf)?;
    let (number, wire) = (key >> 3, key & 7);
    if key > u64::from(u32::MAX) || number == 0 {
        return Err("invalid field key");
    }
    if wire > 5 {
        return Err("invalid wire type");
    }
    Ok((number as u32, wire))
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Scan<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).map_err(|_| "length too large")?;
    let body = buf.get(..len).ok_or("a length past the end")?;
    *buf = &buf[len..];
    Ok(body)
}

/// Skips the value of field `number` with wire type `wire` (not an end of group).
fn skip(buf: &mut &[u8], number: u32, wire: u64, depth: u32) -> Scan<()> {
    match wire {
        0 => varint(buf).map(drop),
        1 | 5 => {
            let width = if wire == 1 { 8 } else { 4 };
            *buf = buf.get(width..).ok_or("a fixed-width value past the end")?;
            Ok(())
        }
        2 => length_delimited(buf).map(drop),
        3 => {
            if depth >= MAX_DEPTH {
                return Err("groups nested too deep");
            }
            loop {
                let (inner, inner_wire) = key(buf)?;
                if inner_wire == 4 {
                    return match inner == number {
                        true => Ok(()),
                        false => Err("a group ends with another field's number"),
                    };
                }
                skip(buf, inner, inner_wire, depth + 1)?;
            }
        }
        _ => Err("a group ends that never started"),
    }
}

fn varint(buf: &mut &[u8]) -> Scan<u64> {
    let mut value = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let (&byte, rest) = buf.split_first().ok_or("a varint past the end")?;
        *buf = rest;
        // The tenth byte may only carry the top bit of a u64.
        if i == 9 && byte > 1 {
            return Err("a varint longer than 64 bits");
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("a varint longer than 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_entries_at_their_path_without_decoding() {
        let req = pb::ScoreRequest {
            model: "m".into(),
            pairs: vec![pb::Pair::default(); 5],
            request_id: "r".into(),
            ..Default::default()
        };
        assert_eq!(count(&req.encode_to_vec(), &[2], 100), Ok(5));
        assert_eq!(count(&req.encode_to_vec(), &[2], 3), Ok(4)); // stops past the limit
        assert_eq!(count(&batch(7).encode_to_vec(), &[2, 1], 100), Ok(7));
        let bytes = req.encode_to_vec();
        assert!(count(&bytes[..bytes.len() - 1], &[2], 100).is_err());
    }

    /// The review's flood: an unknown group (field 99, START_GROUP then END_GROUP) in front of
    /// the entries no longer hides them; malformed groups are refused, as prost refuses them.
    #[test]
    fn groups_are_skipped_not_given_up_on() {
        let mut bytes = vec![0x9b, 0x06, 0x9c, 0x06];
        bytes.extend([0x12, 0x00].repeat(50));
        assert_eq!(count(&bytes, &[2], 10), Ok(11));
        assert_eq!(count(&bytes, &[2], 100), Ok(50));
        assert!(count(&[0x9b, 0x06], &[2], 10).is_err()); // never ends
        assert!(count(&[0x9b, 0x06, 0xa4, 0x06], &[2], 10).is_err()); // ends as field 100
        assert!(count(&[0x9c, 0x06], &[2], 10).is_err()); // ends, never started
        assert!(count(&[0x0e], &[2], 10).is_err()); // wire type 6
        assert!(count(&[0x02, 0x00], &[2], 10).is_err()); // field number 0
        let deep = [[0x9b, 0x06].repeat(101), [0x9c, 0x06].repeat(101)].concat();
        assert!(count(&deep, &[2], 10).is_err());
        assert!(pb::ScoreRequest::decode(&deep[..]).is_err()); // as prost
    }

    fn batch(n: usize) -> pb::RerankStreamRequest {
        pb::RerankStreamRequest {
            kind: Some(pb::rerank_stream_request::Kind::Documents(
                pb::DocumentBatch {
                    documents: vec![pb::Document::default(); n],
                },
            )),
        }
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// An unknown field of any wire type; a group holds further unknown fields.
    #[derive(Debug, Clone)]
    enum Unknown {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
        Group(Vec<(u32, Unknown)>),
    }

    fn unknown() -> impl Strategy<Value = Unknown> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(Unknown::Varint),
            any::<u64>().prop_map(Unknown::Fixed64),
            any::<u32>().prop_map(Unknown::Fixed32),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Unknown::Bytes),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            proptest::collection::vec((field_number(), inner), 0..4).prop_map(Unknown::Group)
        })
    }

    /// Numbers no crossrank message uses.
    fn field_number() -> impl Strategy<Value = u32> {
        prop_oneof![16u32..2047, 100_000u32..(1 << 29)]
    }

    fn put_unknown(out: &mut Vec<u8>, number: u32, u: &Unknown) {
        let tag = u64::from(number) << 3;
        match u {
            Unknown::Varint(v) => {
                put_varint(out, tag);
                put_varint(out, *v);
            }
            Unknown::Fixed64(v) => {
                put_varint(out, tag | 1);
                out.extend(v.to_le_bytes());
            }
            Unknown::Fixed32(v) => {
                put_varint(out, tag | 5);
                out.extend(v.to_le_bytes());
            }
            Unknown::Bytes(b) => {
                put_varint(out, tag | 2);
                put_varint(out, b.len() as u64);
                out.extend(b);
            }
            Unknown::Group(fields) => {
                put_varint(out, tag | 3);
                for (n, f) in fields {
                    put_unknown(out, *n, f);
                }
                put_varint(out, tag | 4);
            }
        }
    }

    /// A message body: `entries` of field `field` (each `entry` bytes), with unknown fields in
    /// front of, between and after them.
    fn interleave(field: u32, entries: &[Vec<u8>], unknown: &[Vec<(u32, Unknown)>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, gap) in unknown.iter().enumerate() {
            for (n, u) in gap {
                put_unknown(&mut out, *n, u);
            }
            if let Some(e) = entries.get(i) {
                put_varint(&mut out, u64::from(field) << 3 | 2);
                put_varint(&mut out, e.len() as u64);
                out.extend(e);
            }
        }
        out
    }

    fn gaps(n: usize) -> impl Strategy<Value = Vec<Vec<(u32, Unknown)>>> {
        proptest::collection::vec(
            proptest::collection::vec((field_number(), unknown()), 0..3),
            n + 1..=n + 1,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever unknown fields surround the entries, the scan counts exactly what prost
        /// decodes (capped at limit + 1).
        #[test]
        fn scan_counts_what_prost_decodes(
            (n, unknown) in (0usize..40).prop_flat_map(|n| (Just(n), gaps(n))),
            limit in 0usize..50,
        ) {
            let pair = pb::Pair { text_a: "a".into(), text_b: String::new() }.encode_to_vec();
            let bytes = interleave(2, &vec![pair; n], &unknown);
            let decoded = pb::ScoreRequest::decode(&bytes[..]).expect("well-formed");
            prop_assert_eq!(decoded.pairs.len(), n);
            prop_assert_eq!(count(&bytes, &[2], limit), Ok(n.min(limit + 1)));
        }

        /// The same one level down: documents inside a stream message's batch, unknown fields
        /// inside the batch and around it.
        #[test]
        fn nested_scan_counts_what_prost_decodes(
            (n, inner) in (0usize..40).prop_flat_map(|n| (Just(n), gaps(n))),
            outer in gaps(1),
        ) {
            let doc = pb::Document { id: "i".into(), text: "t".into() }.encode_to_vec();
            let body = interleave(1, &vec![doc; n], &inner);
            let bytes = interleave(2, &[body], &outer);
            let decoded = pb::RerankStreamRequest::decode(&bytes[..]).expect("well-formed");
            let got = match decoded.kind {
                Some(pb::rerank_stream_request::Kind::Documents(b)) => b.documents.len(),
                _ => usize::MAX,
            };
            prop_assert_eq!(got, n);
            prop_assert_eq!(count(&bytes, &[2, 1], 1000), Ok(n));
        }

        /// On arbitrary bytes (a valid message cut and spliced with noise), whenever prost
        /// decodes the message the scan saw every entry it decoded.
        #[test]
        fn scan_never_undercounts_what_prost_accepts(
            noise in proptest::collection::vec(any::<u8>(), 0..64),
            at in 0usize..200,
            n in 0usize..30,
        ) {
            let mut bytes = pb::ScoreRequest {
                model: "m".into(),
                pairs: vec![pb::Pair::default(); n],
                ..Default::default()
            }
            .encode_to_vec();
            let at = at.min(bytes.len());
            bytes.splice(at..at, noise);
            if let Ok(decoded) = pb::ScoreRequest::decode(&bytes[..]) {
                prop_assert_eq!(count(&bytes, &[2], 1000), Ok(decoded.pairs.len()));
            }
        }
    }
}
