//! Choosing which of the next pairs in serving order run together.

use super::BatchLimits;

/// Of pairs with these token lengths, in serving order, the ones to batch: the first, and the
/// pairs closest to it in length that fit the budget (padded cost = longest × count ≤
/// `max_batch_tokens`, count ≤ `max_batch_pairs`, real tokens ≤ `share_tokens`). The first
/// always goes, so nothing starves. Indices ascending.
pub fn choose(lengths: &[usize], limits: &BatchLimits, share_tokens: usize) -> Vec<usize> {
    let Some(&anchor) = lengths.first() else {
        return Vec::new();
    };
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

    /// A share caps the real tokens (not the pair count): the nearest lengths that fit it.
    #[test]
    fn a_token_share_caps_the_real_tokens() {
        let lengths = [10, 30, 11, 12, 40];
        assert_eq!(choose(&lengths, &limits(1000, 8), 33), vec![0, 2, 3]);
    }
}
