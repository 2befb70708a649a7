//! When a request's tokenization must stop: its caller went away or its deadline passed. The
//! signal is checked before every pair, and within a chat template's render at every output and
//! every step of a `range` loop (src/tokenize/render.rs), so an expired request stops within one
//! step of whatever it was doing (see docs/hardening/templates.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A request's cancellation: a flag its owner raises, and a deadline. Cheap to check (an atomic
/// load and, with a deadline, a clock read) and to clone.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    /// Raised when the request's future is dropped (client gone, server shutting down).
    flag: Option<Arc<AtomicBool>>,
    deadline: Option<Instant>,
}

impl StopSignal {
    pub fn new(flag: Arc<AtomicBool>, deadline: Option<Instant>) -> Self {
        Self {
            flag: Some(flag),
            deadline,
        }
    }

    /// A signal that is raised at `deadline`.
    pub fn at(deadline: Instant) -> Self {
        Self {
            flag: None,
            deadline: Some(deadline),
        }
    }

    /// A signal already raised.
    pub fn raised() -> Self {
        Self::new(Arc::new(AtomicBool::new(true)), None)
    }

    pub fn is_raised(&self) -> bool {
        self.flag
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
