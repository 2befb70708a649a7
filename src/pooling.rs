//! A chunked document's score from its windows' scores: the pool over the windows' raw logits
//! (per label), the activation applied after, so `max` commutes with a monotone activation. The
//! best window is the one with the highest first logit (the first such, in document order).
//! Windows are kept until the last one arrives and pooled in document order, so a document's
//! score does not depend on the order its windows were scored in.

use crate::activation::Activation;
use crate::tokenize::Span;

/// How window scores become a document's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    #[default]
    Max,
    Mean,
}

/// A pooled document: its scores (activation applied) and the window that scored highest.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    pub scores: Vec<f32>,
    pub best: Span,
}

/// One document's windows as their logits arrive.
#[derive(Debug)]
pub struct DocPool {
    spans: Vec<Span>,
    logits: Vec<Option<Vec<f32>>>,
    left: usize,
}

impl DocPool {
    pub fn new(spans: Vec<Span>) -> Self {
        let n = spans.len();
        Self {
            spans,
            logits: vec![None; n],
            left: n,
        }
    }

    /// The document's windows.
    pub fn windows(&self) -> usize {
        self.spans.len()
    }

    /// Records window `k`'s raw logits; true once every window has arrived.
    pub fn add(&mut self, k: usize, logits: Vec<f32>) -> bool {
        if let Some(slot) = self.logits.get_mut(k) {
            if slot.replace(logits).is_none() {
                self.left -= 1;
            }
        }
        self.left == 0
    }

    /// The pooled scores; `None` while a window is missing.
    pub fn finish(&self, pooling: Pooling, activation: Activation) -> Option<Pooled> {
        let rows: Vec<&Vec<f32>> = self
            .logits
            .iter()
            .map(Option::as_ref)
            .collect::<Option<_>>()?;
        let (raw, best) = pool(&rows, pooling)?;
        Some(Pooled {
            scores: activation.apply(&raw),
            best: self.spans[best],
        })
    }
}

/// The pool of `rows` (one row of logits per window, in document order) and the index of the
/// best row; `None` for no rows.
pub fn pool(rows: &[&Vec<f32>], pooling: Pooling) -> Option<(Vec<f32>, usize)> {
    let first = rows.first()?;
    let labels = first.len();
    let mut best = 0;
    for (k, row) in rows.iter().enumerate() {
        if row.first() > rows[best].first() {
            best = k;
        }
    }
    let column = |j: usize| {
        rows.iter()
            .map(move |r| r.get(j).copied().unwrap_or(f32::NAN))
    };
    let raw = (0..labels)
        .map(|j| match pooling {
            Pooling::Max => column(j).fold(f32::NEG_INFINITY, f32::max),
            Pooling::Mean => column(j).sum::<f32>() / rows.len() as f32,
        })
        .collect();
    Some((raw, best))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(k: u32) -> Span {
        Span {
            index: k,
            start: k * 10,
            end: k * 10 + 10,
        }
    }

    #[test]
    fn max_and_mean_over_windows_in_any_arrival_order() {
        let mut doc = DocPool::new((0..3).map(span).collect());
        assert!(!doc.add(2, vec![1.0]));
        assert!(doc.finish(Pooling::Max, Activation::Identity).is_none());
        assert!(!doc.add(0, vec![-2.0]));
        assert!(doc.add(1, vec![4.0]));
        let max = doc.finish(Pooling::Max, Activation::Identity).unwrap();
        assert_eq!(max.scores, vec![4.0]);
        assert_eq!(max.best, span(1));
        let mean = doc.finish(Pooling::Mean, Activation::Identity).unwrap();
        assert_eq!(mean.scores, vec![1.0]);
        assert_eq!(mean.best, span(1));
    }

    /// The activation comes after the pool: the mean of sigmoids is not the sigmoid of the mean.
    #[test]
    fn the_activation_is_applied_to_the_pooled_logits() {
        let mut doc = DocPool::new(vec![span(0), span(1)]);
        doc.add(0, vec![0.0]);
        doc.add(1, vec![2.0]);
        let mean = doc.finish(Pooling::Mean, Activation::Sigmoid).unwrap();
        let expected = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((mean.scores[0] - expected).abs() < 1e-7);
    }

    /// Labels are pooled one by one; the best window follows the first label, the first of
    /// equals winning.
    #[test]
    fn labels_pool_separately_and_ties_keep_the_first_window() {
        let rows = [vec![1.0, 5.0], vec![1.0, 7.0], vec![0.5, 9.0]];
        let refs: Vec<&Vec<f32>> = rows.iter().collect();
        let (max, best) = pool(&refs, Pooling::Max).unwrap();
        assert_eq!(max, vec![1.0, 9.0]);
        assert_eq!(best, 0);
        assert!(pool(&[], Pooling::Max).is_none());
    }
}
