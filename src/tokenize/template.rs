//! The special tokens of a pair, learnt once from the tokenizer's post-processor.

use tokenizers::{Encoding, Tokenizer};

use super::Encoded;

/// The special tokens a post-processor puts around a pair, `prefix A middle B suffix`, with the
/// type id of every part: what `post_process` does for BERT, RoBERTa and template processors,
/// without building an `Encoding` per pair.
#[derive(Debug)]
pub struct Template {
    /// (id, type id) of the special tokens before A, between A and B, after B.
    parts: [Vec<(u32, u32)>; 3],
    /// Type ids of A's and B's tokens.
    sides: [u32; 2],
}

impl Template {
    /// Runs the tokenizer's post-processor on two probe pairs of made-up ids and reads where it
    /// put them; `None` unless both probes show the same fixed special tokens around unchanged
    /// sides with one type id each.
    pub fn learn(tokenizer: &Tokenizer) -> Option<Self> {
        let probe = |a: usize, b: usize| Self::probe(tokenizer, a, b);
        let (one, two) = (probe(3, 5)?, probe(1, 2)?);
        (one.parts == two.parts && one.sides == two.sides).then_some(one)
    }

    fn probe(tokenizer: &Tokenizer, a_len: usize, b_len: usize) -> Option<Self> {
        const A: u32 = 4_000_000_000;
        const B: u32 = 4_100_000_000;
        let side = |base: u32, len: usize, type_id: u32| {
            let ids: Vec<u32> = (base..base + len as u32).collect();
            Encoding::new(
                ids,
                vec![type_id; len],
                vec![String::new(); len],
                vec![None; len],
                vec![(0, 0); len],
                vec![0; len],
                vec![1; len],
                Vec::new(),
                Default::default(),
            )
        };
        let out = tokenizer
            .post_process(side(A, a_len, 0), Some(side(B, b_len, 1)), true)
            .ok()?;
        let (ids, types) = (out.get_ids(), out.get_type_ids());
        let a = ids.iter().position(|&i| i == A)?;
        let b = ids.iter().position(|&i| i == B)?;
        let run = |at: usize, base: u32, len: usize| -> Option<u32> {
            let ok = (0..len).all(|k| ids.get(at + k) == Some(&(base + k as u32)));
            let t = types[at];
            (ok && types[at..at + len].iter().all(|&x| x == t)).then_some(t)
        };
        let sides = [run(a, A, a_len)?, run(b, B, b_len)?];
        let part = |r: std::ops::Range<usize>| -> Option<Vec<(u32, u32)>> {
            r.map(|k| (ids[k] < A).then(|| (ids[k], types[k])))
                .collect()
        };
        if a + a_len > b {
            return None;
        }
        let parts = [
            part(0..a)?,
            part(a + a_len..b)?,
            part(b + b_len..ids.len())?,
        ];
        Some(Self { parts, sides })
    }

    pub fn apply(&self, a: &[u32], b: &[u32], truncated: bool) -> Encoded {
        let len = a.len() + b.len() + self.parts.iter().map(Vec::len).sum::<usize>();
        let mut out = Encoded {
            ids: Vec::with_capacity(len),
            type_ids: Vec::with_capacity(len),
            truncated,
        };
        out.push_special(&self.parts[0]);
        out.push_side(a, self.sides[0]);
        out.push_special(&self.parts[1]);
        out.push_side(b, self.sides[1]);
        out.push_special(&self.parts[2]);
        out
    }
}

impl Encoded {
    fn push_special(&mut self, tokens: &[(u32, u32)]) {
        self.ids.extend(tokens.iter().map(|t| t.0));
        self.type_ids.extend(tokens.iter().map(|t| t.1));
    }

    fn push_side(&mut self, ids: &[u32], type_id: u32) {
        self.ids.extend_from_slice(ids);
        self.type_ids
            .extend(std::iter::repeat_n(type_id, ids.len()));
    }
}
