//! Problem shapes of the attention kernels and the host reference: naive softmax attention
//! in f64 with an explicit mask, over the same packed varlen layouts as the kernel.

use crate::check::Problem;
use warpforge_dsl::prelude::Float;

/// A packed batch of sequences for attention: sequence `b` has `q_lens[b]` query rows and
/// `k_lens[b]` keys; `heads` query heads share `kv_heads` K/V heads (`heads % kv_heads ==
/// 0`); `causal` masks bottom-right (row i of a sequence sees keys j ≤ i + k_len − q_len).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
    pub q_lens: Vec<usize>,
    pub k_lens: Vec<usize>,
}

/// Why a shape cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AttnError {
    #[error("attention shape: {0}")]
    Shape(String),
    #[error(transparent)]
    Kernel(Box<warpforge_dsl::Error>),
    #[error(transparent)]
    Device(Box<warpforge_dsl::backend::DeviceError>),
}

impl From<warpforge_dsl::Error> for AttnError {
    fn from(e: warpforge_dsl::Error) -> AttnError {
        AttnError::Kernel(Box::new(e))
    }
}

impl From<warpforge_dsl::backend::DeviceError> for AttnError {
    fn from(e: warpforge_dsl::backend::DeviceError) -> AttnError {
        AttnError::Device(Box::new(e))
    }
}

impl AttnShape {
    /// Self-attention over sequences of the given lengths (q_len = k_len).
    pub fn square(
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
        lens: &[usize],
    ) -> AttnShape {
        AttnShape {
            heads,
            kv_heads,
            head_dim,
            causal,
            q_lens: lens.to_vec(),
            k_lens: lens.to_vec(),
        }
    }

    /// Checks what the kernel relies on; the message says what to change.
    pub fn validate(&self) -> Result<(), AttnError> {
        let bad = |m: String| Err(AttnError::Shape(m));
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "heads ({}) must be a positive multiple of kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        if !super::HEAD_DIMS.contains(&self.head_dim) {
            return bad(format!(
                "head_dim {} is not supported; use one of {:?}",
                self.head_dim,
                super::HEAD_DIMS
            ));
        }
        if self.q_lens.is_empty() || self.q_lens.len() != self.k_lens.len() {
            return bad(format!(
                "q_lens ({}) and k_lens ({}) must list the same, non-zero number of sequences",
                self.q_lens.len(),
                self.k_lens.len()
            ));
        }
        let too_big =
            |n: usize| n * self.heads.max(self.kv_heads) * self.head_dim > u32::MAX as usize;
        if too_big(self.total_q()) || too_big(self.total_k()) {
            return bad("the packed tensors exceed 2^32 elements (u32 indexing)".into());
        }
        Ok(())
    }

    pub fn sequences(&self) -> usize {
        self.q_lens.len()
    }

    pub fn total_q(&self) -> usize {
        self.q_lens.iter().sum()
    }

    pub fn total_k(&self) -> usize {
        self.k_lens.iter().sum()
    }

    /// `[0, q_0, q_0 + q_1, …]`, the u32 prefix sums the kernel reads.
    pub fn cu_seqlens_q(&self) -> Vec<u32> {
        prefix_sums(&self.q_lens)
    }

    pub fn cu_seqlens_k(&self) -> Vec<u32> {
        prefix_sums(&self.k_lens)
    }

    /// The usual softmax scale 1/√head_dim.
    pub fn default_scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// Whether row `i` of sequence `b` sees key `j` (the explicit mask).
    pub fn visible(&self, b: usize, i: usize, j: usize) -> bool {
        let (q_len, k_len) = (self.q_lens[b], self.k_lens[b]);
        j < k_len && (!self.causal || j as i64 <= i as i64 + k_len as i64 - q_len as i64)
    }

    /// As a check problem: dims `[heads, kv_heads, head_dim, causal, n, q_lens.., k_lens..]`.
    pub fn to_problem(&self) -> Problem {
        let name = format!(
            "h{}/{}-d{}{}-q{:?}-k{:?}",
            self.heads,
            self.kv_heads,
            self.head_dim,
            if self.causal { "-causal" } else { "" },
            self.q_lens,
            self.k_lens
        )
        .replace(' ', "");
        let mut dims = vec![
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.causal as usize,
            self.sequences(),
        ];
        dims.extend(&self.q_lens);
        dims.extend(&self.k_lens);
        Problem::new(name, dims)
    }

    /// The shape [`to_problem`](Self::to_problem) encoded.
    pub fn from_problem(p: &Problem) -> Result<AttnShape, AttnError> {
        let d = &p.dims;
        let n = *d
            .get(4)
            .ok_or_else(|| AttnError::Shape(format!("problem {}: too few dims", p.name)))?;
        if d.len() != 5 + 2 * n {
            return Err(AttnError::Shape(format!(
                "problem {}: want 5 + 2·{n} dims, got {}",
                p.name,
                d.len()
            )));
        }
        Ok(AttnShape {
            heads: d[0],
            kv_heads: d[1],
            head_dim: d[2],
            causal: d[3] != 0,
            q_lens: d[5..5 + n].to_vec(),
            k_lens: d[5 + n..].to_vec(),
        })
    }
}

fn prefix_sums(lens: &[usize]) -> Vec<u32> {
    let mut out = vec![0u32];
    for &n in lens {
        out.push(out.last().unwrap() + n as u32);
    }
    out
}

/// The reference result: O `[total_q, heads, head_dim]` and LSE `[heads, total_q]`
/// (natural log of Σ exp(scale·q·k) over the visible keys; −∞ and O = 0 where none).
#[derive(Clone, Debug, PartialEq)]
pub struct AttnOutput {
    pub o: Vec<f64>,
    pub lse: Vec<f64>,
}

/// Naive attention in f64 on the packed inputs (Q `[total_q, heads, d]`, K/V `[total_k,
/// kv_heads, d]`): per (sequence, head, row) the scores of the visible keys, their softmax
/// (max subtracted) and the weighted sum of V.
pub fn reference<T: Float>(shape: &AttnShape, q: &[T], k: &[T], v: &[T], scale: f32) -> AttnOutput {
    reference_masked(shape, q, k, v, scale, |b, i, j| shape.visible(b, i, j))
}

/// [`fn@reference`] with an explicit mask: `visible(b, i, j)` says whether row `i` of sequence
/// `b` sees key `j` (`j < k_lens[b]`); tests use it to prove a wrong mask is caught.
pub fn reference_masked<T: Float>(
    shape: &AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    scale: f32,
    visible: impl Fn(usize, usize, usize) -> bool,
) -> AttnOutput {
    let (h_n, kv_n, d) = (shape.heads, shape.kv_heads, shape.head_dim);
    let (total_q, group) = (shape.total_q(), h_n / kv_n);
    let (cu_q, cu_k) = (shape.cu_seqlens_q(), shape.cu_seqlens_k());
    let f = |x: T| x.to_f32() as f64;
    let mut out = AttnOutput {
        o: vec![0.0; total_q * h_n * d],
        lse: vec![f64::NEG_INFINITY; h_n * total_q],
    };
    for b in 0..shape.sequences() {
        let (q0, k0) = (cu_q[b] as usize, cu_k[b] as usize);
        for h in 0..h_n {
            let kvh = h / group;
            for i in 0..shape.q_lens[b] {
                let qrow = &q[((q0 + i) * h_n + h) * d..][..d];
                let scores: Vec<(usize, f64)> = (0..shape.k_lens[b])
                    .filter(|&j| visible(b, i, j))
                    .map(|j| {
                        let krow = &k[((k0 + j) * kv_n + kvh) * d..][..d];
                        let dot: f64 = qrow.iter().zip(krow).map(|(&a, &c)| f(a) * f(c)).sum();
                        (j, dot * scale as f64)
                    })
                    .collect();
                if scores.is_empty() {
                    continue;
                }
                let max = scores.iter().fold(f64::NEG_INFINITY, |m, s| m.max(s.1));
                let sum: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
                out.lse[h * total_q + q0 + i] = max + sum.ln();
                let orow = &mut out.o[((q0 + i) * h_n + h) * d..][..d];
                for &(j, s) in &scores {
                    let p = (s - max).exp() / sum;
                    let vrow = &v[((k0 + j) * kv_n + kvh) * d..][..d];
                    for (o, &x) in orow.iter_mut().zip(vrow) {
                        *o += p * f(x);
                    }
                }
            }
        }
    }
    out
}

/// The exact LSE merge in f64 (the host reference of `attn_merge`): parts are (O `[rows,
/// heads, d]`, LSE `[heads, rows]`) pairs over disjoint key sets; −∞ parts weigh 0, all −∞
/// gives O = 0, LSE = −∞.
pub fn merge_reference(
    parts: &[AttnOutput],
    rows: usize,
    heads: usize,
    head_dim: usize,
) -> AttnOutput {
    let mut out = AttnOutput {
        o: vec![0.0; rows * heads * head_dim],
        lse: vec![f64::NEG_INFINITY; heads * rows],
    };
    for r in 0..rows {
        for h in 0..heads {
            let at = h * rows + r;
            let max = parts
                .iter()
                .fold(f64::NEG_INFINITY, |m, p| m.max(p.lse[at]));
            if max == f64::NEG_INFINITY {
                continue;
            }
            let total: f64 = parts.iter().map(|p| (p.lse[at] - max).exp()).sum();
            out.lse[at] = max + total.ln();
            let o = &mut out.o[(r * heads + h) * head_dim..][..head_dim];
            for p in parts.iter().filter(|p| p.lse[at] > f64::NEG_INFINITY) {
                let w = (p.lse[at] - out.lse[at]).exp();
                for (x, &y) in o
                    .iter_mut()
                    .zip(&p.o[(r * heads + h) * head_dim..][..head_dim])
                {
                    *x += w * y;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn problems_round_trip() {
        let s = AttnShape {
            heads: 6,
            kv_heads: 2,
            head_dim: 64,
            causal: true,
            q_lens: vec![3, 1],
            k_lens: vec![5, 0],
        };
        assert_eq!(AttnShape::from_problem(&s.to_problem()).unwrap(), s);
        assert_eq!(s.cu_seqlens_k(), vec![0, 5, 5]);
        assert!(s.validate().is_ok());
        let bad = AttnShape { kv_heads: 4, ..s };
        assert!(bad.validate().is_err());
    }

    /// One query, two keys with scores 0 and ln 3 (scale 1): weights 1/4, 3/4.
    #[test]
    fn reference_weights_by_softmax_and_masks_bottom_right() {
        let d = 64;
        let mut q = vec![f16::ZERO; 2 * d];
        let mut k = vec![f16::ZERO; 2 * d];
        let mut v = vec![f16::ZERO; 2 * d];
        q[0] = f16::from_f32(1.0);
        q[d] = f16::from_f32(1.0);
        k[d] = f16::from_f32(3f32.ln());
        v[0] = f16::from_f32(4.0);
        v[d] = f16::from_f32(8.0);
        let mut s = AttnShape::square(1, 1, d, false, &[2]);
        s.q_lens = vec![1];
        let got = reference(&s, &q[..d], &k, &v, 1.0);
        let ln3 = f16::from_f32(3f32.ln()).to_f32() as f64;
        let w = ln3.exp() / (1.0 + ln3.exp());
        assert!((got.o[0] - (4.0 * (1.0 - w) + 8.0 * w)).abs() < 1e-12);
        assert!((got.lse[0] - (1.0 + ln3.exp()).ln()).abs() < 1e-12);
        // Causal, q_len 2 over k_len 1: row 0 sees key j ≤ 0 + 1 − 2 = −1 (nothing), row 1
        // sees key 0.
        let s = AttnShape {
            causal: true,
            q_lens: vec![2],
            k_lens: vec![1],
            ..s
        };
        let got = reference(&s, &q, &k[..d], &v[..d], 1.0);
        assert_eq!(got.lse[0], f64::NEG_INFINITY);
        assert_eq!(got.o[0], 0.0);
        assert_eq!(got.o[d], 4.0);
        assert_eq!(got.lse[1], 0.0);
    }
}
