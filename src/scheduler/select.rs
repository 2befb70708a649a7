//! Choosing which queued pairs run together.

use std::collections::VecDeque;

use super::{BatchLimits, Job};

/// Removes pairs whose caller has gone away (receiver dropped: cancelled or failed request).
pub fn drop_abandoned(jobs: &mut VecDeque<Job>, tokens: &mut usize) {
    jobs.retain(|j| {
        let alive = !j.sink.tx.is_closed();
        if !alive {
            *tokens -= j.encoded.len();
        }
        alive
    });
}

/// Takes the oldest pair and the pairs closest to it in length that fit the budget
/// (padded cost = longest × count ≤ `max_batch_tokens`, count ≤ `max_batch_pairs`, real
/// tokens ≤ `share_tokens`). The oldest pair always goes, so nothing starves.
pub fn take_batch(jobs: &mut VecDeque<Job>, limits: &BatchLimits, share_tokens: usize) -> Vec<Job> {
    let anchor = jobs[0].encoded.len();
    let mut order: Vec<usize> = (1..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].encoded.len().abs_diff(anchor), i));
    let mut chosen = vec![0];
    let (mut longest, mut real) = (anchor, anchor);
    for i in order {
        if chosen.len() >= limits.max_batch_pairs {
            break;
        }
        let len = jobs[i].encoded.len();
        if longest.max(len) * (chosen.len() + 1) > limits.max_batch_tokens
            || real + len > share_tokens
        {
            continue;
        }
        longest = longest.max(len);
        real += len;
        chosen.push(i);
    }
    chosen.sort_unstable();
    let mut batch = Vec::with_capacity(chosen.len());
    for &i in chosen.iter().rev() {
        batch.push(
            jobs.remove(i)
                .expect("chosen indices are in range. This is a bug."),
        );
    }
    batch.reverse();
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(
        lengths: &[usize],
    ) -> (
        VecDeque<Job>,
        tokio::sync::mpsc::UnboundedReceiver<crate::scheduler::PairResult>,
    ) {
        let (jobs, rx) = crate::scheduler::test_jobs(lengths);
        (jobs.into(), rx)
    }

    fn limits(tokens: usize, pairs: usize) -> BatchLimits {
        BatchLimits {
            max_batch_tokens: tokens,
            max_batch_pairs: pairs,
            ..Default::default()
        }
    }

    /// The oldest pair always goes; its company is the pairs nearest in length, within the
    /// padded-token budget and the pair cap; the rest stays queued in order.
    #[test]
    fn oldest_plus_nearest_lengths_within_budget() {
        let (mut jobs, _rx) = queue(&[10, 100, 12, 9, 50, 11]);
        let batch = take_batch(&mut jobs, &limits(1000, 3), usize::MAX);
        assert_eq!(
            batch.iter().map(|j| j.index).collect::<Vec<_>>(),
            vec![0, 3, 5]
        );
        assert_eq!(
            jobs.iter().map(|j| j.index).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        // Budget 120 padded tokens: 100 fits alone, a second pair of <= 60 tokens would not.
        let batch = take_batch(&mut jobs, &limits(120, 8), usize::MAX);
        assert_eq!(batch.iter().map(|j| j.index).collect::<Vec<_>>(), vec![1]);
        // A pair longer than the whole budget still runs (alone) rather than starving.
        let (mut jobs, _rx) = queue(&[500, 5]);
        assert_eq!(take_batch(&mut jobs, &limits(100, 8), usize::MAX).len(), 1);
    }

    /// A share caps the real tokens (not the pair count): the nearest lengths that fit it.
    #[test]
    fn a_token_share_caps_the_real_tokens() {
        let (mut jobs, _rx) = queue(&[10, 30, 11, 12, 40]);
        let batch = take_batch(&mut jobs, &limits(1000, 8), 33);
        assert_eq!(
            batch.iter().map(|j| j.index).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
    }

    #[test]
    fn abandoned_pairs_are_dropped_with_their_tokens() {
        let (mut jobs, rx) = queue(&[3, 4]);
        let mut tokens = 7;
        drop(rx);
        drop_abandoned(&mut jobs, &mut tokens);
        assert!(jobs.is_empty());
        assert_eq!(tokens, 0);
    }
}
