//! Receiving request bodies. A message whose bytes stall costs the server what it has received
//! so far, however long the client waits; so each request message must arrive whole before the
//! call's deadline (`grpc-timeout`), or in calls without one within `--default-timeout-secs` of
//! its first byte, and a unary call's whole body (to its END_STREAM) likewise; and the
//! messages being received count against one server-wide budget (`--max-receiving-mib`), each
//! with its declared length from its 5-byte header on (tonic reserves that much when it reads the
//! header) until it is whole. Either limit ends the call with a precise status; dropping the body
//! then resets the HTTP/2 stream and frees what it held.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Frame, SizeHint};
use prost::bytes::Bytes;
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::Status;

/// Bytes of request messages being received, over every call of the server.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes, or none when that would pass the limit.
    pub fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    pub fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes held now (for tests and metrics).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Wraps every request body of a server in [`Receiving`].
#[derive(Clone)]
pub struct ReceiveLayer {
    pub budget: Arc<Budget>,
    pub default_timeout: Duration,
}

impl<S> tower::Layer<S> for ReceiveLayer {
    type Service = ReceiveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReceiveService {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ReceiveService<S> {
    inner: S,
    limits: ReceiveLayer,
}

impl<S: tower::Service<http::Request<Body>>> tower::Service<http::Request<Body>>
    for ReceiveService<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::api::deadline::parse_timeout);
        // The call's own deadline, a little early, as its handler answers it.
        let at =
            timeout.and_then(|t| Instant::now().checked_add(crate::api::deadline::less_margin(t)));
        let limit = match (timeout, at) {
            (Some(t), Some(at)) => Limit::Call(t, at),
            _ => Limit::PerMessage(self.limits.default_timeout),
        };
        // Only the streaming RPCs may keep their request open between messages.
        let whole = !STREAMING_REQUESTS.contains(&req.uri().path());
        let budget = self.limits.budget.clone();
        self.inner
            .call(req.map(|body| Body::new(Receiving::new(body, budget, limit, whole))))
    }
}

/// The methods whose requests are streams (every other call's body must end after its message).
const STREAMING_REQUESTS: [&str; 3] = [
    "/crossrank.v1.CrossEncoder/ScoreStream",
    "/crossrank.v1.CrossEncoder/RerankStream",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// When a message being received must be whole.
#[derive(Clone, Copy)]
enum Limit {
    /// By the call's deadline (its `grpc-timeout`, and that instant).
    Call(Duration, Instant),
    /// Within this long of its first byte (`--default-timeout-secs`).
    PerMessage(Duration),
}

impl Limit {
    fn deadline(self) -> Instant {
        match self {
            Limit::Call(_, at) => at,
            Limit::PerMessage(t) => Instant::now().checked_add(t).unwrap_or_else(far_future),
        }
    }
}

/// A day from now: what an unrepresentable instant is taken as.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// A request body whose messages are framed as gRPC sends them (a flag byte, a 4-byte
/// big-endian length, the message), held to the deadline and the budget message by message.
pub struct Receiving {
    inner: Body,
    budget: Arc<Budget>,
    limit: Limit,
    /// Whether the whole body, to its END_STREAM, is held to the limit (unary requests).
    whole: bool,
    frame: Framing,
    /// Bytes of the message being received, taken from the budget.
    held: usize,
    /// When the message being received must be whole.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Receiving {
    fn new(inner: Body, budget: Arc<Budget>, limit: Limit, whole: bool) -> Self {
        Self {
            inner,
            budget,
            limit,
            whole,
            frame: Framing::default(),
            held: 0,
            deadline: None,
        }
    }

    /// Accounts for `data`: what completes messages is given back, the start of an unfinished
    /// one is taken from the budget and starts its clock.
    fn receive(&mut self, data: &[u8]) -> Result<(), Status> {
        let completed = self.frame.advance(data);
        let pending = self.frame.charge();
        if pending > self.held && !self.budget.take(pending - self.held) {
            return Err(Status::resource_exhausted(format!(
                "the server is receiving {} MiB of request messages, its limit \
                 (--max-receiving-mib {}); this message of {} bytes was refused; retry later or \
                 send smaller messages",
                self.budget.used() >> 20,
                self.budget.limit >> 20,
                pending
            )));
        }
        if pending < self.held {
            self.budget.give(self.held - pending);
        }
        self.held = pending;
        if self.whole {
            self.arm(); // once, for the whole body
        } else if pending == 0 {
            self.deadline = None;
        } else if completed || self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(self.limit.deadline())));
        }
        Ok(())
    }

    /// Starts the clock if it is not running.
    fn arm(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(self.limit.deadline())));
        }
    }

    fn expired(&self) -> Status {
        let within =
            match self.limit {
                Limit::Call(t, _) => format!(
                    "by the call's deadline (grpc-timeout {:.3} s)",
                    t.as_secs_f64()
                ),
                Limit::PerMessage(t) => {
                    format!(
                "within {:.3} s of {} (--default-timeout-secs; the call sent no grpc-timeout)",
                t.as_secs_f64(),
                if self.whole { "the call's start" } else { "its first byte" }
            )
                }
            };
        if self.held == 0 {
            return Status::deadline_exceeded(format!(
                "the request did not end {within}: a unary call's body must end (END_STREAM) \
                 after its message; the call was ended"
            ));
        }
        Status::deadline_exceeded(format!(
            "a request message was not received whole {within}; {} of its {} bytes arrived; the \
             call was ended and its bytes freed",
            self.frame
                .declared()
                .map_or(0, |n| n - self.frame.remaining),
            self.frame.declared().map_or("?".into(), |n| n.to_string())
        ))
    }
}

impl http_body::Body for Receiving {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.whole {
            this.arm();
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(status) = this.receive(data) {
                        return Poll::Ready(Some(Err(status)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                match expired {
                    true => Poll::Ready(Some(Err(this.expired()))),
                    false => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

/// Where a body is in gRPC's message framing.
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    /// Header bytes received of the current message (5: the header is whole).
    have: usize,
    /// Message bytes still to come once the header is whole.
    remaining: usize,
}

impl Framing {
    /// Consumes `data`; returns whether a message was completed.
    fn advance(&mut self, mut data: &[u8]) -> bool {
        let mut completed = false;
        while !data.is_empty() {
            let k = if self.have < 5 {
                let k = (5 - self.have).min(data.len());
                self.header[self.have..self.have + k].copy_from_slice(&data[..k]);
                self.have += k;
                if self.have == 5 {
                    self.remaining = self.declared().unwrap_or(0);
                }
                k
            } else {
                let k = self.remaining.min(data.len());
                self.remaining -= k;
                k
            };
            data = &data[k..];
            if self.have == 5 && self.remaining == 0 {
                (self.have, completed) = (0, true);
            }
        }
        completed
    }

    /// What the unfinished message costs the receiver: its header bytes so far, then (as tonic
    /// reserves it on reading the header) the header and its declared length.
    fn charge(&self) -> usize {
        match self.declared() {
            Some(len) => 5 + len,
            None => self.have,
        }
    }

    /// The current message's length, once its header is whole.
    fn declared(&self) -> Option<usize> {
        let len = <[u8; 4]>::try_from(&self.header[1..5]).ok()?;
        (self.have == 5).then(|| u32::from_be_bytes(len) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend(len.to_be_bytes());
        m.extend(std::iter::repeat_n(7, len as usize));
        m
    }

    /// Messages split anywhere: the charge is the unfinished message's header bytes, then its
    /// whole declared length; nothing once it is whole.
    #[test]
    fn framing_charges_the_unfinished_message() {
        let bytes = [message(3), message(0), message(10)].concat();
        for cut in 0..bytes.len() {
            let mut f = Framing::default();
            f.advance(&bytes[..cut]);
            let expected = match cut {
                0 | 8 | 13 => 0,
                c @ 1..=4 => c,
                5..=7 => 8,
                c @ 9..=12 => c - 8,
                c if c < 18 => c - 13,
                _ => 15,
            };
            assert_eq!(f.charge(), expected, "cut at {cut}");
            f.advance(&bytes[cut..]);
            assert_eq!(f.charge(), 0, "cut at {cut}");
        }
    }

    #[test]
    fn budget_refuses_past_its_limit_and_takes_back() {
        let b = Budget::new(10);
        assert!(b.take(6) && !b.take(5) && b.take(4));
        b.give(10);
        assert_eq!(b.used(), 0);
    }
}
