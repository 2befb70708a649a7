//! The read side of a ScoreStream, without its transport: requests are taken from the client's
//! stream and handled concurrently, at most `max_stream_in_flight` at once; beyond, the stream
//! is not read (the transport's flow control then pushes back on the client). Reading also stops
//! at the client's half-close, a read error, the idle timeout or shutdown; the requests taken are
//! always finished first.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

use super::Engine;

/// Why a stream stopped reading.
#[derive(Debug)]
pub enum StreamEnd<E> {
    HalfClosed,
    /// The server is shutting down.
    Draining,
    /// No message for this long while nothing was in flight.
    Idle(Duration),
    /// Reading the n+1-th message failed.
    ReadFailed {
        received: usize,
        error: E,
    },
}

/// Runs `handle` on every message of `inbound`, as concurrent tasks bounded by the engine's
/// `max_stream_in_flight`; returns once reading stopped and every task finished.
pub async fn run_bounded<T, E, F, Fut>(
    engine: &Engine,
    mut inbound: impl Stream<Item = Result<T, E>> + Unpin,
    mut handle: F,
) -> StreamEnd<E>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = engine.limits.max_stream_in_flight;
    let idle = Duration::from_secs(engine.limits.stream_idle_timeout_secs);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut received = 0usize;
    let end = loop {
        tokio::select! {
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = engine.draining() => break StreamEnd::Draining,
            () = tokio::time::sleep(idle), if in_flight.is_empty() => break StreamEnd::Idle(idle),
            m = inbound.next(), if in_flight.len() < limit => match m {
                None => break StreamEnd::HalfClosed,
                Some(Err(error)) => break StreamEnd::ReadFailed { received, error },
                Some(Ok(message)) => {
                    received += 1;
                    in_flight.spawn(handle(message));
                }
            },
        }
    };
    while in_flight.join_next().await.is_some() {}
    end
}
