//! A gRPC codec that sends hand-made bytes, for messages no well-behaved client would build
//! (floods of empty entries, undecodable frames), and decodes the server's answers normally.

use std::marker::PhantomData;

use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

pub struct Raw<R>(PhantomData<R>);

impl<R> Default for Raw<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct RawEncoder;
pub struct RawDecoder<R>(PhantomData<R>);

impl<R: Message + Default + Send + 'static> Codec for Raw<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder<R> {
        RawDecoder(PhantomData)
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: Message + Default> Decoder for RawDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// A client for raw calls on `channel`, with no message size limits of its own.
pub async fn client(
    channel: tonic::transport::Channel,
) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    grpc
}

pub fn path(method: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(method)
}

/// One unary call of `method` with the hand-made message `bytes`, on a ready `grpc`.
pub async fn unary<R: Message + Default + Send + 'static>(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &'static str,
    bytes: Vec<u8>,
) -> Result<R, Status> {
    grpc.ready().await.unwrap();
    let call = grpc.unary::<_, R, _>(tonic::Request::new(bytes), path(method), Raw::default());
    call.await.map(tonic::Response::into_inner)
}
