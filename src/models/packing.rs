//! Moving a right-padded batch to the packed layout (real tokens only) and back, and attention
//! over packed tokens.
//!
//! The dense layers run on [T, D] (T real tokens, sequence after sequence), so padding costs
//! them nothing. Attention needs sequences side by side: on the CPU, sequences of similar length
//! are grouped (padding within a group at most [`GROUP_PADDING`] of its tokens) and each group is
//! one attention call; on accelerators the whole padded batch is one masked call.

use tch::{Device, Tensor};

use crate::device::upload;
use crate::error::Result;

/// Largest fraction of padded positions within one CPU attention group.
const GROUP_PADDING: f64 = 0.1;

pub struct Packing {
    rows: i64,
    width: i64,
    /// Flat indices of the real tokens in [B·S]; `None` when there is no padding at all.
    keep: Option<Tensor>,
    /// Packed row of each sequence's first token [B].
    firsts: Tensor,
    /// Key mask [B, 1, 1, S], true where attended; `None` without padding.
    keys: Option<Tensor>,
    attention: Attention,
}

enum Attention {
    /// One call over the padded batch, masked by [`Packing::keys`].
    Padded,
    /// One call per group of sequences of similar length.
    Grouped(Vec<Group>),
}

/// Sequences attending together, padded to the longest of them.
struct Group {
    rows: i64,
    width: i64,
    /// Their packed rows [Tg], and where those rows sit in the group's padded [rows·width]
    /// (the identity when there is no mask).
    src: Tensor,
    dst: Tensor,
    /// Key mask [rows, 1, 1, width]; `None` when all have the same length.
    mask: Option<Tensor>,
}

impl Packing {
    /// For sequences of `lengths` right-padded to `width` on `device`. Every index and mask is
    /// built here on the host from the lengths the batcher knows and copied to the device
    /// without waiting for it: the forward never reads the device back.
    pub fn new(lengths: &[i64], width: i64, device: Device) -> Result<Self> {
        let rows = lengths.len() as i64;
        let padded = lengths.iter().any(|&n| n != width);
        let keep = match padded {
            true => {
                let flat: Vec<i64> = (0..rows)
                    .zip(lengths)
                    .flat_map(|(row, &n)| row * width..row * width + n)
                    .collect();
                Some(upload(Tensor::f_from_slice(&flat)?, device)?)
            }
            false => None,
        };
        let keys = match padded {
            true => {
                let mask: Vec<bool> = lengths
                    .iter()
                    .flat_map(|&n| (0..width).map(move |c| c < n))
                    .collect();
                let mask = Tensor::f_from_slice(&mask)?.f_view([rows, 1, 1, width])?;
                Some(upload(mask, device)?)
            }
            false => None,
        };
        let firsts: Vec<i64> = lengths
            .iter()
            .scan(0, |start, &n| {
                let first = *start;
                *start += n;
                Some(first)
            })
            .collect();
        let attention = if device == Device::Cpu {
            Attention::Grouped(groups(lengths)?)
        } else {
            Attention::Padded
        };
        Ok(Self {
            rows,
            width,
            keep,
            firsts: upload(Tensor::f_from_slice(&firsts)?, device)?,
            keys,
            attention,
        })
    }

    /// [B·S, D] → [T, D].
    pub fn pack(&self, padded: &Tensor) -> Result<Tensor> {
        match &self.keep {
            Some(keep) => Ok(padded.f_index_select(0, keep)?),
            None => Ok(padded.shallow_clone()),
        }
    }

    /// [T, D] → [B, S, D], zeros at padded positions.
    pub fn unpack(&self, packed: &Tensor) -> Result<Tensor> {
        let padded = match &self.keep {
            Some(keep) => scatter(packed, keep, self.rows * self.width)?,
            None => packed.shallow_clone(),
        };
        Ok(padded.f_view([self.rows, self.width, -1])?)
    }

    /// Each sequence's first row of packed `x` [T, D]: [B, D].
    pub fn firsts(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_index_select(0, &self.firsts)?)
    }

    /// Attention for each sequence's first token only: `query` [B, H] against packed keys and
    /// values `kv` [T, 2H]; returns the context [B, H]. The cost is linear in the tokens, so
    /// the padded layout is used on every device.
    pub fn first_attention(
        &self,
        query: &Tensor,
        kv: &Tensor,
        heads: i64,
        head_dim: i64,
    ) -> Result<Tensor> {
        let kv = self.unpack(kv)?;
        let split = |i: i64| -> Result<Tensor> {
            Ok(kv
                .f_narrow(2, i * heads * head_dim, heads * head_dim)?
                .f_view([self.rows, self.width, heads, head_dim])?
                .f_transpose(1, 2)?)
        };
        let q = query.f_view([self.rows, heads, 1, head_dim])?;
        let ctx = Tensor::f_scaled_dot_product_attention(
            &q,
            &split(0)?,
            &split(1)?,
            self.keys.as_ref(),
            0.0,
            false,
            None,
            false,
        )?;
        Ok(ctx.f_reshape([self.rows, heads * head_dim])?)
    }

    /// Scaled dot-product attention of packed `qkv` [T, 3H] (query, key and value side by
    /// side); returns the context [T, H].
    pub fn attention(&self, qkv: &Tensor, heads: i64, head_dim: i64) -> Result<Tensor> {
        match &self.attention {
            Attention::Padded => {
                let padded = self.unpack(qkv)?;
                self.pack(&attend(&padded, self.keys.as_ref(), heads, head_dim)?)
            }
            Attention::Grouped(groups) => {
                let (t, _) = qkv.size2()?;
                let mut ctx = qkv.f_new_zeros([t, heads * head_dim], (qkv.kind(), qkv.device()))?;
                for g in groups {
                    let rows = qkv.f_index_select(0, &g.src)?;
                    // Without a mask every member has the group's width: the gathered rows
                    // already are the padded layout.
                    let out = match &g.mask {
                        None => {
                            attend(&rows.f_view([g.rows, g.width, -1])?, None, heads, head_dim)?
                        }
                        Some(mask) => {
                            let padded = scatter(&rows, &g.dst, g.rows * g.width)?
                                .f_view([g.rows, g.width, -1])?;
                            attend(&padded, Some(mask), heads, head_dim)?
                                .f_index_select(0, &g.dst)?
                        }
                    };
                    let _ = ctx.f_index_copy_(0, &g.src, &out)?;
                }
                Ok(ctx)
            }
        }
    }
}

/// [N, S, 3H] → context [N·S, H].
fn attend(x: &Tensor, mask: Option<&Tensor>, heads: i64, head_dim: i64) -> Result<Tensor> {
    let (n, s, _) = x.size3()?;
    let parts = x
        .f_view([n, s, 3, heads, head_dim])?
        .f_permute([2, 0, 3, 1, 4])?;
    let part = |i: i64| parts.f_select(0, i);
    let ctx = Tensor::f_scaled_dot_product_attention(
        &part(0)?,
        &part(1)?,
        &part(2)?,
        mask,
        0.0,
        false,
        None,
        false,
    )?;
    Ok(ctx
        .f_transpose(1, 2)?
        .f_reshape([n * s, heads * head_dim])?)
}

/// Rows of `x` placed at `index` of a zero tensor with `len` rows.
fn scatter(x: &Tensor, index: &Tensor, len: i64) -> Result<Tensor> {
    let (_, d) = x.size2()?;
    Ok(x.f_new_zeros([len, d], (x.kind(), x.device()))?
        .f_index_copy(0, index, x)?)
}

/// Groups sequences by length, shortest first, each group as large as its padding allows.
fn groups(lengths: &[i64]) -> Result<Vec<Group>> {
    let mut offsets = Vec::with_capacity(lengths.len());
    let mut total = 0;
    for &n in lengths {
        offsets.push(total);
        total += n;
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        let mut sum = lengths[order[start]];
        while end < order.len() {
            let (longest, count) = (lengths[order[end]], (end - start + 1) as i64);
            let padded = longest * count;
            if (padded - sum - longest) as f64 > GROUP_PADDING * padded as f64 {
                break;
            }
            sum += longest;
            end += 1;
        }
        out.push(group(&order[start..end], lengths, &offsets)?);
        start = end;
    }
    Ok(out)
}

fn group(members: &[usize], lengths: &[i64], offsets: &[i64]) -> Result<Group> {
    let width = members.iter().map(|&i| lengths[i]).max().unwrap_or(0);
    let (mut src, mut dst, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (row, &i) in members.iter().enumerate() {
        let row = row as i64;
        src.extend(offsets[i]..offsets[i] + lengths[i]);
        dst.extend(row * width..row * width + lengths[i]);
        mask.extend((0..width).map(|c| c < lengths[i]));
    }
    let rows = members.len() as i64;
    let same = members.iter().all(|&i| lengths[i] == width);
    let mask = if same {
        None
    } else {
        Some(Tensor::f_from_slice(&mask)?.f_view([rows, 1, 1, width])?)
    };
    Ok(Group {
        rows,
        width,
        src: Tensor::f_from_slice(&src)?,
        dst: Tensor::f_from_slice(&dst)?,
        mask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_every_token_once_with_bounded_padding() {
        let lengths = [5, 100, 7, 98, 6, 50, 5, 1];
        let gs = groups(&lengths).unwrap();
        let mut seen: Vec<i64> = gs
            .iter()
            .flat_map(|g| Vec::<i64>::try_from(&g.src).unwrap())
            .collect();
        seen.sort_unstable();
        let total: i64 = lengths.iter().sum();
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        for g in &gs {
            let real = g.src.size()[0];
            let padded = g.rows * g.width;
            assert!(
                g.rows == 1 || (padded - real) as f64 <= GROUP_PADDING * padded as f64,
                "{} of {padded} padded",
                padded - real
            );
        }
        assert!(gs.len() < lengths.len(), "similar lengths share a group");
    }
}
