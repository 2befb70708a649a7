//! Ordering scored documents, as `CrossEncoder.rank` does.

use crate::tokenize::Span;

/// One ranked document.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Position in the request.
    pub index: usize,
    pub id: String,
    pub score: f32,
    /// Present only when the caller asked for documents back.
    pub text: Option<String>,
    /// With chunking: the window that scored highest.
    pub best_chunk: Option<Span>,
}

/// Best first; equal scores keep input order (stable). Scores below `min_score` are dropped,
/// then the best `top_n` kept (0 = all).
pub fn rank(
    scores: &[f32],
    documents: &[(String, String)],
    best_chunks: &[Option<Span>],
    top_n: usize,
    min_score: Option<f32>,
    return_documents: bool,
) -> Vec<Ranked> {
    let mut order: Vec<usize> = (0..scores.len())
        .filter(|&i| min_score.is_none_or(|m| scores[i] >= m))
        .collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    if top_n > 0 {
        order.truncate(top_n);
    }
    order
        .into_iter()
        .map(|i| Ranked {
            index: i,
            id: documents[i].0.clone(),
            score: scores[i],
            text: return_documents.then(|| documents[i].1.clone()),
            best_chunk: best_chunks.get(i).copied().flatten(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("d{i}"), format!("text {i}")))
            .collect()
    }

    #[test]
    fn ties_keep_input_order_and_limits_apply() {
        let r = rank(&[0.5, 0.9, 0.5, 0.1], &docs(4), &[], 0, None, false);
        assert_eq!(
            r.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 0, 2, 3]
        );
        let r = rank(&[0.5, 0.9, 0.5, 0.1], &docs(4), &[], 2, Some(0.2), true);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(r[0].text.as_deref(), Some("text 1"));
        assert_eq!(
            rank(&[0.5, 0.1], &docs(2), &[], 0, Some(0.3), false).len(),
            1
        );
    }
}
