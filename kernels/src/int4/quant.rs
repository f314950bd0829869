//! Round-to-nearest (RTN) int4 quantization of an f32 weight, and the group parameters
//! every quantizer here shares (GPTQ computes its parameters with the same functions).
//!
//! # The input and the output
//!
//! The input is PyTorch's `nn.Linear` weight `W: [n, k]` row-major (`n` output channels,
//! `k` input channels); the output is an [`Int4Weight`], whose codes are stored transposed
//! (`[k, n]`, see [`super::weight`]).
//!
//! # Group parameters (one (scale, zero) per group, 4 bits, codes `0..=15`)
//!
//! - **Asymmetric** (AdaDim's `pseudo_quantize_tensor`, also AWQ's): over the group's values,
//!   `s = max(max − min, 1e−5) / 15`, then `s` is rounded to f16 (checkpoints store f16
//!   scales, and the kernels read them), `z = clamp(−round(min / s), 0, 15)`.
//! - **Symmetric** (MARLIN's `2·max|w| / 15`, which is also GPTQ's `(xmax − xmin) / 15` with
//!   `xmin = −xmax`): `s = max(2·max|w|, 1e−5) / 15`, rounded to f16, `z = 8`.
//!
//! A value is coded `q = clamp(round(w / s) + z, 0, 15)` and dequantizes to `(q − z)·s`.
//! `round` is round-half-to-even (`torch.round`), and `w / s` is computed in f32 with the
//! f16-rounded `s`, so a reference written the same way reproduces the codes exactly.
//! Inside the representable range `[−z·s, (15 − z)·s]` the error is at most `s / 2`; the
//! symmetric code range is `[−8s, 7s]`, so `+max|w|` (= `7.5s`) is clipped to `7s`, as
//! MARLIN's packer does.
//!
//! A scale past f16's largest finite value (65504) is an error: such a weight cannot be
//! stored in a checkpoint or read by the kernels.

use super::weight::{GroupDim, Int4Error, Int4Weight};
use half::f16;
use rayon::prelude::*;
use thiserror::Error;

/// How many values share one (scale, zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSize {
    /// `g` consecutive channels of the grouped dimension (32, 64 and 128 are usual; any
    /// positive size works, the last group may be short).
    Size(usize),
    /// One group per channel: the whole grouped dimension (`k` for `Oc`, `n` for `Ic`).
    PerChannel,
}

impl GroupSize {
    /// The group size along a grouped dimension of `len` channels.
    pub fn resolve(self, len: usize) -> usize {
        match self {
            GroupSize::Size(g) => g.min(len),
            GroupSize::PerChannel => len,
        }
    }
}

/// What RTN and GPTQ share: group size, grouped dimension, symmetric or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantConfig {
    pub group: GroupSize,
    pub dim: GroupDim,
    pub sym: bool,
}

impl QuantConfig {
    pub fn new(group: GroupSize, dim: GroupDim, sym: bool) -> QuantConfig {
        QuantConfig { group, dim, sym }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum QuantError {
    #[error("int4 quantize: {0}")]
    Shape(String),
    #[error("int4 quantize: group size must be positive (use GroupSize::PerChannel for one group per channel)")]
    ZeroGroup,
    #[error("int4 quantize: weight value {value} at [{o}, {i}] is not finite")]
    NotFinite { o: usize, i: usize, value: f32 },
    #[error("int4 quantize: a group's scale {scale} is past f16's range (65504): the weight's range is too wide to store as an f16-scaled int4 checkpoint")]
    ScaleOverflow { scale: f32 },
    #[error(transparent)]
    Weight(#[from] Int4Error),
}

/// One group's (scale, zero).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupParams {
    pub scale: f32,
    pub zero: u8,
}

/// The smallest range a group is given (AdaDim's clamp), so an all-equal group still has a
/// positive scale.
const MIN_RANGE: f32 = 1e-5;

impl GroupParams {
    /// The parameters of a group of values (module docs: the formulas).
    pub fn of(values: impl Iterator<Item = f32>, sym: bool) -> Result<GroupParams, QuantError> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            return Err(QuantError::Shape("a quantization group is empty".into()));
        }
        GroupParams::from_range(lo, hi, sym)
    }

    /// The parameters of a group whose values span `[lo, hi]`.
    pub fn from_range(lo: f32, hi: f32, sym: bool) -> Result<GroupParams, QuantError> {
        let range = if sym {
            2.0 * lo.abs().max(hi.abs())
        } else {
            hi - lo
        };
        let scale = f16_scale(range.max(MIN_RANGE) / 15.0)?;
        let zero = if sym {
            8
        } else {
            (-(lo / scale).round_ties_even()).clamp(0.0, 15.0) as u8
        };
        Ok(GroupParams { scale, zero })
    }

    /// The code of `w`: `clamp(round(w / s) + z, 0, 15)`.
    pub fn code(self, w: f32) -> u8 {
        ((w / self.scale).round_ties_even() + self.zero as f32).clamp(0.0, 15.0) as u8
    }

    /// The value a code stands for: `(q − z)·s`.
    pub fn value(self, code: u8) -> f32 {
        (code as i32 - self.zero as i32) as f32 * self.scale
    }
}

/// `s` rounded to the nearest f16 (ties to even), as a checkpoint stores it.
fn f16_scale(s: f32) -> Result<f32, QuantError> {
    let rounded = f16::from_f32(s).to_f32();
    if !rounded.is_finite() {
        return Err(QuantError::ScaleOverflow { scale: s });
    }
    // A positive range over 15 is at least 6.7e-7, above f16's smallest subnormal: never 0.
    Ok(rounded)
}

/// Checks `w.len() == n·k`, every value finite, and a positive group size.
pub(crate) fn check_input(
    w: &[f32],
    n: usize,
    k: usize,
    cfg: &QuantConfig,
) -> Result<(), QuantError> {
    if n == 0 || k == 0 || w.len() != n * k {
        return Err(QuantError::Shape(format!(
            "weight has {} values, expected n·k = {n}·{k} (nn.Linear layout [n, k]) with n, k > 0",
            w.len()
        )));
    }
    if cfg.group == GroupSize::Size(0) {
        return Err(QuantError::ZeroGroup);
    }
    if let Some(p) = w.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NotFinite {
            o: p / k,
            i: p % k,
            value: w[p],
        });
    }
    Ok(())
}

/// An [`Int4Weight`] with every code, scale and zero still 0, shaped for `cfg`.
pub(crate) fn empty_weight(n: usize, k: usize, cfg: &QuantConfig) -> Int4Weight {
    let (group, params) = match cfg.dim {
        GroupDim::Oc => {
            let g = cfg.group.resolve(k);
            (g, k.div_ceil(g) * n)
        }
        GroupDim::Ic => {
            let g = cfg.group.resolve(n);
            (g, k * n.div_ceil(g))
        }
    };
    Int4Weight {
        k,
        n,
        group,
        dim: cfg.dim,
        codes: vec![0; k * n],
        scales: vec![0.0; params],
        zeros: vec![0; params],
        g_idx: None,
    }
}

impl Int4Weight {
    /// Stores one group's parameters at `scales`/`zeros` index `p`.
    pub(crate) fn set_params(&mut self, p: usize, params: GroupParams) {
        self.scales[p] = params.scale;
        self.zeros[p] = params.zero;
    }

    /// The parameters at `scales`/`zeros` index `p`.
    pub fn params_at(&self, p: usize) -> GroupParams {
        GroupParams {
            scale: self.scales[p],
            zero: self.zeros[p],
        }
    }

    /// The dequantized weight in `nn.Linear` layout `[n, k]` (the transpose of
    /// [`Int4Weight::dequantize`]), for comparing with the input of a quantizer.
    pub fn dequantize_nk(&self) -> Vec<f32> {
        let wt = self.dequantize();
        let mut w = vec![0f32; self.n * self.k];
        for i in 0..self.k {
            for o in 0..self.n {
                w[o * self.k + i] = wt[i * self.n + o];
            }
        }
        w
    }
}

/// Round-to-nearest quantization of `w: [n, k]` (`nn.Linear` layout) with `cfg`'s groups.
pub fn quantize_rtn(
    w: &[f32],
    n: usize,
    k: usize,
    cfg: &QuantConfig,
) -> Result<Int4Weight, QuantError> {
    check_input(w, n, k, cfg)?;
    let mut q = empty_weight(n, k, cfg);
    let g = q.group;
    match cfg.dim {
        GroupDim::Oc => {
            for o in 0..n {
                let row = &w[o * k..(o + 1) * k];
                for (gi, chunk) in row.chunks(g).enumerate() {
                    let params = GroupParams::of(chunk.iter().copied(), cfg.sym)?;
                    q.set_params(gi * n + o, params);
                    for (j, &v) in chunk.iter().enumerate() {
                        q.codes[(gi * g + j) * n + o] = params.code(v);
                    }
                }
            }
        }
        GroupDim::Ic => {
            let groups = n.div_ceil(g);
            for i in 0..k {
                for gi in 0..groups {
                    let outs = gi * g..((gi + 1) * g).min(n);
                    let params = GroupParams::of(outs.clone().map(|o| w[o * k + i]), cfg.sym)?;
                    q.set_params(i * groups + gi, params);
                    for o in outs {
                        q.codes[i * n + o] = params.code(w[o * k + i]);
                    }
                }
            }
        }
    }
    q.validate()?;
    Ok(q)
}

/// The output error of a quantized layer on activations `x: [tokens, k]`: the mean over
/// tokens and output channels of `(x·Wᵀ − x·Ŵᵀ)²` (AdaDim's MSE), accumulated in f64.
/// `w` is the original weight `[n, k]`; the product is formed from `W − Ŵ` once.
pub fn output_mse(x: &[f32], tokens: usize, w: &[f32], q: &Int4Weight) -> Result<f64, QuantError> {
    let (n, k) = (q.n, q.k);
    if w.len() != n * k || x.len() != tokens * k || tokens == 0 {
        return Err(QuantError::Shape(format!(
            "output error: weight has {} values (expected {n}·{k}), activations {} (expected {tokens}·{k}, tokens > 0)",
            w.len(),
            x.len()
        )));
    }
    let wq = q.dequantize_nk();
    let diff: Vec<f64> = w.iter().zip(&wq).map(|(a, b)| (*a - *b) as f64).collect();
    // Per-token sums in parallel, added in token order (the result does not depend on
    // the thread count).
    let per_token: Vec<f64> = x
        .par_chunks(k)
        .map(|xt| {
            let xt: Vec<f64> = xt.iter().map(|&v| v as f64).collect();
            diff.chunks_exact(k).map(|d| dot_f64(&xt, d).powi(2)).sum()
        })
        .collect();
    Ok(per_token.iter().sum::<f64>() / (tokens * n) as f64)
}

/// A dot product with 16 running sums: enough independent chains to hide the add latency
/// once vectorized (the sums are combined in a fixed order, so the result is deterministic).
pub(crate) fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_params_follow_pseudo_quantize_tensor() {
        // min −1, max 2: s = 3/15 = 0.2 (f16: 0.199951171875), z = −round(−1/s) = 5.
        let p = GroupParams::of([-1.0f32, 0.5, 2.0].into_iter(), false).unwrap();
        assert_eq!(p.scale, f16::from_f32(0.2).to_f32());
        assert_eq!(p.zero, 5);
        assert_eq!(p.code(-1.0), 0);
        assert_eq!(p.code(2.0), 15);
    }

    #[test]
    fn symmetric_params_are_marlins() {
        let p = GroupParams::of([-3.0f32, 1.0, 0.0].into_iter(), true).unwrap();
        assert_eq!(p.scale, f16::from_f32(6.0 / 15.0).to_f32());
        assert_eq!(p.zero, 8);
        // +max is 7.5 steps: clipped to code 15 (7 steps).
        let p = GroupParams::of([3.0f32, 1.0].into_iter(), true).unwrap();
        assert_eq!(p.code(3.0), 15);
        assert_eq!(p.code(-3.0), 0);
    }

    #[test]
    fn constant_groups_get_the_minimum_range() {
        let p = GroupParams::of([0.0f32; 4].into_iter(), false).unwrap();
        assert!(p.scale > 0.0);
        assert_eq!(p.value(p.code(0.0)), 0.0);
    }

    #[test]
    fn huge_ranges_are_an_error() {
        let err = GroupParams::of([-1e6f32, 1e6].into_iter(), false).unwrap_err();
        assert!(matches!(err, QuantError::ScaleOverflow { .. }));
    }

    #[test]
    fn ic_is_oc_of_the_transpose() {
        let (n, k) = (6, 10);
        let w: Vec<f32> = (0..n * k)
            .map(|x| ((x * 37 % 23) as f32 - 11.0) * 0.13)
            .collect();
        let mut wt = vec![0f32; n * k];
        for o in 0..n {
            for i in 0..k {
                wt[i * n + o] = w[o * k + i];
            }
        }
        for sym in [false, true] {
            let ic = quantize_rtn(
                &w,
                n,
                k,
                &QuantConfig::new(GroupSize::Size(4), GroupDim::Ic, sym),
            )
            .unwrap();
            let oc = quantize_rtn(
                &wt,
                k,
                n,
                &QuantConfig::new(GroupSize::Size(4), GroupDim::Oc, sym),
            )
            .unwrap();
            // Ic(W)'s dequantized [k, n] equals Oc(Wᵀ)'s dequantized in nn.Linear layout [k, n].
            assert_eq!(ic.dequantize(), oc.dequantize_nk());
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = QuantConfig::new(GroupSize::Size(0), GroupDim::Oc, false);
        assert_eq!(
            quantize_rtn(&[0.0; 4], 2, 2, &cfg).unwrap_err(),
            QuantError::ZeroGroup
        );
        let cfg = QuantConfig::new(GroupSize::PerChannel, GroupDim::Oc, false);
        assert!(matches!(
            quantize_rtn(&[0.0; 3], 2, 2, &cfg),
            Err(QuantError::Shape(_))
        ));
        let err = quantize_rtn(&[0.0, 1.0, f32::NAN, 0.0], 2, 2, &cfg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "int4 quantize: weight value NaN at [1, 0] is not finite"
        );
    }
}
