//! Choosing which of the next pairs in serving order run together.

use std::collections::HashMap;

use super::BatchLimits;

/// Of pairs with these token lengths, in serving order, the ones to batch: the first, and the
/// pairs closest to it in length that fit the budget (padded cost = longest × count ≤
/// `max_batch_tokens`, count ≤ `max_batch_pairs`, real tokens ≤ `share_tokens`). The first
/// always goes, so nothing starves. Indices ascending.
#[cfg(test)]
pub fn choose(lengths: &[usize], limits: &BatchLimits, share_tokens: usize) -> Vec<usize> {
    let groups = vec![0; lengths.len()];
    choose_shared(lengths, &groups, limits, share_tokens)
}

/// `choose` over pairs of several queues (`groups[i]` is pair i's): each queue takes at most
/// as many pairs as it has among the first `max_batch_pairs` in serving order, so the batch
/// keeps the queues' fair shares while the pairs of each are grouped by length.
pub fn choose_shared(
    lengths: &[usize],
    groups: &[usize],
    limits: &BatchLimits,
    share_tokens: usize,
) -> Vec<usize> {
    let Some(&anchor) = lengths.first() else {
        return Vec::new();
    };
    let mut quota: HashMap<usize, usize> = HashMap::new();
    for &g in groups.iter().take(limits.max_batch_pairs.max(1)) {
        *quota.entry(g).or_default() += 1;
    }
    // The first always goes, whatever its queue's share.
    if let Some(n) = quota.get_mut(&groups[0]) {
        *n = n.saturating_sub(1);
    }
    let mut order: Vec<usize> = (1..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i].abs_diff(anchor), i));
    let mut chosen = vec![0];
    let (mut longest, mut real) = (anchor, anchor);
    for i in order {
        if chosen.len() >= limits.max_batch_pairs {
            break;
        }
        let len = lengths[i];
        if longest.max(len) * (chosen.len() + 1) > limits.max_batch_tokens
            || real + len > share_tokens
        {
            continue;
        }
        match quota.get_mut(&groups[i]) {
            Some(n) if *n > 0 => *n -= 1,
            _ => continue,
        }
        longest = longest.max(len);
        real += len;
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(tokens: usize, pairs: usize) -> BatchLimits {
        BatchLimits {
            max_batch_tokens: tokens,
            max_batch_pairs: pairs,
            ..Default::default()
        }
    }

    /// The first pair always goes; its company is the pairs nearest in length, within the
    /// padded-token budget and the pair cap.
    #[test]
    fn first_plus_nearest_lengths_within_budget() {
        let lengths = [10, 100, 12, 9, 50, 11];
        assert_eq!(
            choose(&lengths, &limits(1000, 3), usize::MAX),
            vec![0, 3, 5]
        );
        // Budget 120 padded tokens: 100 fits alone, a second pair of <= 60 tokens would not.
        assert_eq!(choose(&[100, 12, 50], &limits(120, 8), usize::MAX), vec![0]);
        // A pair longer than the whole budget still runs (alone) rather than starving.
        assert_eq!(choose(&[500, 5], &limits(100, 8), usize::MAX), vec![0]);
        assert!(choose(&[], &limits(100, 8), usize::MAX).is_empty());
    }

    /// With several queues, each takes no more than its pairs among the first batch's worth in
    /// serving order: queue 0's short pairs beyond its share are passed over, however near in
    /// length, and queue 1's long pairs fill its own share.
    #[test]
    fn several_queues_keep_their_shares_of_the_batch() {
        let lengths = [10, 50, 10, 50, 11, 12, 13, 10];
        let groups = [0, 1, 0, 1, 0, 0, 0, 0];
        // The first 4 in order: two of each queue.
        assert_eq!(
            choose_shared(&lengths, &groups, &limits(1000, 4), usize::MAX),
            vec![0, 1, 2, 3]
        );
        // One queue alone groups by length, as `choose`.
        assert_eq!(
            choose_shared(&[10, 50, 50, 11, 12], &[0; 5], &limits(1000, 3), usize::MAX),
            vec![0, 3, 4]
        );
    }

    /// A share caps the real tokens (not the pair count): the nearest lengths that fit it.
    #[test]
    fn a_token_share_caps_the_real_tokens() {
        let lengths = [10, 30, 11, 12, 40];
        assert_eq!(choose(&lengths, &limits(1000, 8), 33), vec![0, 2, 3]);
    }
}
