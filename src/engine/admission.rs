//! Admission by cost: the bytes of text being tokenized at once, across all models, are bounded,
//! so a burst of large requests is refused at once instead of piling up CPU work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::ServeError;

/// A budget of bytes shared by every request; each holds its share while it is tokenized.
#[derive(Debug)]
pub struct ByteBudget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

/// A request's share of the budget, given back when dropped.
#[must_use]
pub struct Held {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Takes `bytes`, or refuses with RESOURCE_EXHAUSTED when they do not fit beside what other
    /// requests hold. A request alone always fits its own bytes (its size is bounded by the
    /// message limit), so only concurrent load is refused.
    pub fn take(&self, bytes: usize) -> Result<Held, ServeError> {
        let fits = |used: usize| (used == 0 || used + bytes <= self.limit).then_some(used + bytes);
        match self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fits)
        {
            Ok(_) => Ok(Held {
                used: self.used.clone(),
                bytes,
            }),
            Err(used) => Err(ServeError::Overloaded(format!(
                "the server is tokenizing {used} bytes of other requests; {bytes} more exceeds \
                 max_tokenizing_bytes {}",
                self.limit
            ))),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit_beside_others_and_gives_back_on_drop() {
        let budget = ByteBudget::new(100);
        let a = budget.take(70).unwrap();
        let err = budget.take(40).err().unwrap();
        assert!(
            matches!(&err, ServeError::Overloaded(m) if m.contains("70 bytes") && m.contains("40 more") && m.contains("100")),
            "{err:?}"
        );
        let b = budget.take(30).unwrap();
        assert_eq!(budget.used(), 100);
        drop((a, b));
        assert_eq!(budget.used(), 0);
        // Alone, a request larger than the budget still runs.
        let big = budget.take(500).unwrap();
        assert!(budget.take(1).is_err());
        drop(big);
    }
}
