//! The header timeout of a connection's first bytes. hyper's auto builder reads them to tell
//! HTTP/1.1 from h2c (HTTP/2's 24-byte preface) with no timeout of its own, so a connection that
//! sent nothing, or part of the preface, held a connection slot (`--http-max-connections`)
//! forever. [`Opening`] fails its reads once the header timeout passes before those bytes have
//! come; from then on hyper's HTTP/1 header timeout and HTTP/2 keepalive take over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's stream whose reads fail with `TimedOut` once its deadline passes before the
/// protocol is known.
pub struct Opening<I> {
    io: I,
    /// Running until a byte differs from the h2 preface or all of it has come; `None` after.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes of the preface read so far.
    matched: usize,
}

impl<I> Opening<I> {
    pub fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
        }
    }

    /// Follows the bytes read while the protocol is not known yet.
    fn saw(&mut self, bytes: &[u8]) {
        let rest = &H2_PREFACE[self.matched..];
        let n = bytes.len().min(rest.len());
        if bytes[..n] != rest[..n] || n == rest.len() {
            self.deadline = None;
        } else {
            self.matched += n;
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Opening<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    this.saw(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let late = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if late {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request line within --http-header-timeout-secs",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Opening<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Part of the preface, then nothing: the read fails at the deadline; a request line's
    /// first byte ends the watch, so a later stall is hyper's to time out, not this one's.
    #[tokio::test]
    async fn times_out_only_before_the_protocol_is_known() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut opening = Opening::new(server, Duration::from_millis(200));
        client.write_all(b"PRI * HT").await.unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(opening.read(&mut buf).await.unwrap(), 8);
        let err = opening.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let mut opening = Opening::new(server, Duration::from_millis(200));
        client.write_all(b"GET /hea").await.unwrap();
        assert_eq!(opening.read(&mut buf).await.unwrap(), 8);
        let stalled = tokio::time::timeout(Duration::from_secs(1), opening.read(&mut buf));
        assert!(
            stalled.await.is_err(),
            "the read ended though the watch was over"
        );

        let (mut client, server) = tokio::io::duplex(64);
        let mut opening = Opening::new(server, Duration::from_millis(200));
        client.write_all(H2_PREFACE).await.unwrap();
        let mut got = 0;
        while got < H2_PREFACE.len() {
            got += opening.read(&mut buf[got..]).await.unwrap();
        }
        assert!(
            opening.deadline.is_none(),
            "the whole preface ends the watch"
        );
    }
}
