//! The per-request knobs of truncation besides the model's maximum length: caps on each
//! document's and each query's tokens (`max_tokens_per_doc`, `max_query_tokens`) and the side
//! tokens are dropped from (TEI's `truncation_direction`). Both are what the `tokenizers` crate does when a pair's second
//! encoding is cut to the cap first (`Encoding::truncate(cap, 0, direction)`) and the pair is then
//! truncated longest-first with that direction: each side keeps a prefix (right) or a suffix
//! (left) of the length [`super::longest_first`] gives it.

use tokenizers::Encoding;

/// How the texts of one request are cut; the default cuts only at the model's maximum length,
/// from the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Each document (the second text of a pair) keeps at most this many tokens before pairing.
    pub doc_tokens: Option<usize>,
    /// Each query (the first text of a pair) keeps at most this many tokens before pairing.
    pub query_tokens: Option<usize>,
    /// Tokens are dropped from the start of a text instead of its end.
    pub left: bool,
}

impl Cut {
    /// The length a side of `len` tokens has before longest-first truncation: cut to its cap.
    pub fn capped(self, len: usize, is_document: bool) -> usize {
        let cap = match is_document {
            true => self.doc_tokens,
            false => self.query_tokens,
        };
        cap.map_or(len, |cap| len.min(cap))
    }

    /// The `n` tokens of `ids` this cut keeps.
    pub fn slice(self, ids: &[u32], n: usize) -> &[u32] {
        let n = n.min(ids.len());
        match self.left {
            false => &ids[..n],
            true => &ids[ids.len() - n..],
        }
    }

    /// `ids` cut in place to the `n` tokens this cut keeps.
    pub fn keep(self, ids: &mut Vec<u32>, n: usize) {
        if n >= ids.len() {
            return;
        }
        match self.left {
            false => ids.truncate(n),
            true => drop(ids.drain(..ids.len() - n)),
        }
    }

    /// The `n` tokens of `e` this cut keeps (a copy), without the overflow pieces
    /// `Encoding::truncate` builds.
    pub fn encoding(self, e: &Encoding, n: usize) -> Encoding {
        let n = n.min(e.len());
        match self.left {
            false => range(e, 0..n),
            true => range(e, e.len() - n..e.len()),
        }
    }
}

/// The tokens `r` of `e` (a copy, every per-token field alike, without overflow pieces).
pub fn range(e: &Encoding, r: std::ops::Range<usize>) -> Encoding {
    Encoding::new(
        e.get_ids()[r.clone()].to_vec(),
        e.get_type_ids()[r.clone()].to_vec(),
        e.get_tokens()[r.clone()].to_vec(),
        e.get_word_ids()[r.clone()].to_vec(),
        e.get_offsets()[r.clone()].to_vec(),
        e.get_special_tokens_mask()[r.clone()].to_vec(),
        e.get_attention_mask()[r].to_vec(),
        Vec::new(),
        Default::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_keeps_a_prefix_or_a_suffix() {
        let right = Cut::default();
        let left = Cut {
            left: true,
            ..Cut::default()
        };
        let ids = [1, 2, 3, 4, 5];
        assert_eq!(right.slice(&ids, 2), &[1, 2]);
        assert_eq!(left.slice(&ids, 2), &[4, 5]);
        assert_eq!(left.slice(&ids, 9), &ids);
        let mut v = ids.to_vec();
        left.keep(&mut v, 3);
        assert_eq!(v, [3, 4, 5]);
        let mut v = ids.to_vec();
        right.keep(&mut v, 3);
        assert_eq!(v, [1, 2, 3]);
        right.keep(&mut v, 7);
        assert_eq!(v, [1, 2, 3]);
    }

    /// The crate's encodings (tokenizers without a learnt template) are cut like bare ids, every
    /// per-token field alike, and with no overflow pieces.
    #[test]
    fn an_encoding_is_cut_like_its_ids() {
        let n = 5;
        let e = Encoding::new(
            (10..15).collect(),
            vec![1; n],
            (0..n).map(|i| format!("t{i}")).collect(),
            (0..n as u32).map(Some).collect(),
            (0..n).map(|i| (i, i + 1)).collect(),
            vec![0; n],
            vec![1; n],
            Vec::new(),
            Default::default(),
        );
        let left = Cut {
            left: true,
            ..Cut::default()
        };
        let cut = left.encoding(&e, 2);
        assert_eq!(cut.get_ids(), &[13, 14]);
        assert_eq!(cut.get_tokens(), &["t3", "t4"]);
        assert_eq!(cut.get_offsets(), &[(3, 4), (4, 5)]);
        assert_eq!(cut.get_type_ids(), &[1, 1]);
        assert!(cut.get_overflowing().is_empty());
        let cut = Cut::default().encoding(&e, 2);
        assert_eq!(cut.get_ids(), &[10, 11]);
        assert_eq!(Cut::default().encoding(&e, 9).get_ids(), e.get_ids());
    }

    #[test]
    fn each_side_has_its_own_cap() {
        let cut = Cut {
            doc_tokens: Some(4),
            ..Cut::default()
        };
        assert_eq!(cut.capped(10, true), 4);
        assert_eq!(cut.capped(3, true), 3);
        assert_eq!(cut.capped(10, false), 10);
        let cut = Cut {
            query_tokens: Some(2),
            ..Cut::default()
        };
        assert_eq!(cut.capped(10, false), 2);
        assert_eq!(cut.capped(10, true), 10);
        assert_eq!(Cut::default().capped(10, true), 10);
    }
}
