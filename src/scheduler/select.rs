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
/// (padded cost = longest × count ≤ `max_batch_tokens`, count ≤ `max_batch_pairs`).
/// The oldest pair always goes, so nothing starves.
pub fn take_batch(jobs: &mut VecDeque<Job>, limits: &BatchLimits) -> Vec<Job> {
    let anchor = jobs[0].encoded.len();
    let mut order: Vec<usize> = (1..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].encoded.len().abs_diff(anchor), i));
    let mut chosen = vec![0];
    let mut longest = anchor;
    for i in order {
        if chosen.len() >= limits.max_batch_pairs {
            break;
        }
        let len = jobs[i].encoded.len();
        if longest.max(len) * (chosen.len() + 1) > limits.max_batch_tokens {
            continue;
        }
        longest = longest.max(len);
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
