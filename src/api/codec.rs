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
    LoadModelRequest,
    UnloadModelRequest,
    UnloadModelResponse
);

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
            let limit = max_entries();
            // tonic hands the decoder one contiguous buffer holding the whole message.
            let whole = buf.chunk().len() == buf.remaining();
            // Malformed bytes (`None`) are left to prost, which fails as it does for any call;
            // the scan stops past the limit, so prost never decodes more than `limit` entries.
            let counted = if whole {
                count(buf.chunk(), path, limit)
            } else {
                None
            };
            if counted.is_some_and(|n| n > limit) {
                return Err(Status::invalid_argument(format!(
                    "`{field}` has more than {limit} entries (max_pairs_per_request); the \
                     message was refused before decoding"
                )));
            }
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Occurrences of the field at `path` in the protobuf bytes `buf`, counting at most `limit + 1`;
/// `None` when the bytes are not well-formed protobuf.
fn count(mut buf: &[u8], path: &[u32], limit: usize) -> Option<usize> {
    let (&field, rest) = path.split_first()?;
    let mut n = 0;
    while !buf.is_empty() && n <= limit {
        let key = varint(&mut buf)?;
        let (number, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                varint(&mut buf)?;
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                buf = buf.get(width..)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let body = buf.get(..len)?;
                buf = &buf[len..];
                if number == field {
                    n += if rest.is_empty() {
                        1
                    } else {
                        count(body, rest, limit - n)?
                    };
                }
            }
            _ => return None,
        }
    }
    Some(n)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_entries_at_their_path_without_decoding() {
        let req = pb::ScoreRequest {
            model: "m".into(),
            pairs: vec![pb::Pair::default(); 5],
            request_id: "r".into(),
            ..Default::default()
        };
        assert_eq!(count(&req.encode_to_vec(), &[2], 100), Some(5));
        assert_eq!(count(&req.encode_to_vec(), &[2], 3), Some(4)); // stops past the limit
        let batch = |n| pb::RerankStreamRequest {
            kind: Some(pb::rerank_stream_request::Kind::Documents(
                pb::DocumentBatch {
                    documents: vec![pb::Document::default(); n],
                },
            )),
        };
        assert_eq!(count(&batch(7).encode_to_vec(), &[2, 1], 100), Some(7));
        let bytes = req.encode_to_vec();
        assert_eq!(count(&bytes[..bytes.len() - 1], &[2], 100), None);
        assert_eq!(count(&[0x0b], &[2], 100), None); // group wire type
    }
}
