//! GPTQ (Frantar et al.): int4 quantization that corrects each input column's rounding
//! error on the columns not yet quantized, weighted by the inverse Hessian of the layer's
//! output error on calibration activations.
//!
//! # The algorithm as implemented
//!
//! 1. [`Hessian`]: `H = 2·XᵀX / tokens` from calibration activations `X: [tokens, k]`,
//!    accumulated in f64 over any number of batches (the `1/tokens` of GPTQ's running mean
//!    changes nothing: damping is relative).
//! 2. Dead input channels (`H[i][i] = 0`, never active) get `H[i][i] = 1` and a zero
//!    weight column. Damping adds `percdamp · mean(diag H)` (default 0.01) to the diagonal.
//! 3. Act-order (optional): input channels are processed in descending `diag H` order
//!    (`perm`); the weight's rows and `H` are permuted alike, and codes are stored back
//!    at their original channel.
//! 4. `U`, the upper Cholesky factor of `H⁻¹` (`H⁻¹ = UᵀU`, see
//!    `linalg::inverse_cholesky_upper`), in f64.
//! 5. Columns in blocks of `block` (128): column `j` is quantized with its group's
//!    parameters (below), its error `e = (w − ŵ) / U[j][j]` is subtracted from the block's
//!    later columns at once (`w_c −= U[j][c]·e`), and after each block from every later
//!    column in one batch (`W[:, end..] −= E·U[block, end..]`, the "lazy batch update").
//!    The weight is updated in f32 (as the reference does); `H` and `U` are f64.
//!
//! # Group parameters
//!
//! - [`GroupDim::Oc`] (conventional): one (scale, zero) per output channel and group of
//!   `g` input channels. By default (*dynamic groups*, AutoGPTQ's `static_groups = false`)
//!   a group's parameters are computed when its first column is reached, from the current
//!   (already error-corrected) values of its `g` columns in processing order; with
//!   act-order the groups are then formed in permuted order and [`Int4Weight::g_idx`]
//!   records each input channel's group (`g_idx[perm[j]] = j / g`). The in-block columns
//!   are read with this block's corrections applied (the reference reads them before, a
//!   quirk of its lazy copy); columns past the block see the earlier blocks' corrections.
//!   With `static_groups` the parameters are computed up front from the original weight
//!   over the natural groups `i / g`, so `g_idx` stays `None` even with act-order (what
//!   MARLIN-style kernels prefer: no activation permutation).
//! - [`GroupDim::Ic`] (AdaDim's GPTQ-ic): each input column is quantized with its own
//!   parameters per group of `g` output channels, computed from the column's current
//!   values just before it is quantized. Parameters belong to the input channel, so
//!   act-order needs no `g_idx`.
//!
//! One group per channel along `Oc` computes every output channel's parameters once from
//! the whole original row (the first column reaches the only group before any update).

use super::linalg;
use super::quant::{check_input, empty_weight, GroupParams, QuantConfig, QuantError};
use super::weight::{GroupDim, Int4Weight};
use rayon::prelude::*;

/// GPTQ's settings; [`GptqConfig::new`] gives the reference defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqConfig {
    pub quant: QuantConfig,
    /// Diagonal damping as a fraction of `mean(diag H)` (GPTQ's `percdamp`, 0.01).
    pub percdamp: f64,
    /// Columns per lazy-update block (128).
    pub block: usize,
    /// Process input channels in descending `diag H` order (GPTQ's `desc_act`).
    pub act_order: bool,
    /// `Oc` only: group parameters from the original weight over natural groups (module docs).
    pub static_groups: bool,
}

impl GptqConfig {
    pub fn new(quant: QuantConfig) -> GptqConfig {
        GptqConfig {
            quant,
            percdamp: 0.01,
            block: 128,
            act_order: false,
            static_groups: false,
        }
    }
}

/// What GPTQ reports besides the weight.
#[derive(Clone, Debug, PartialEq)]
pub struct GptqStats {
    /// GPTQ's own loss: `Σ (w − ŵ)² / U[j][j]² / 2` over every element.
    pub loss: f64,
    /// Input channels never active in the calibration data (their weights are zeroed).
    pub dead: usize,
}

/// The running `XᵀX` of calibration activations (module docs, step 1).
#[derive(Clone, Debug)]
pub struct Hessian {
    k: usize,
    /// Upper triangle of `Σ x xᵀ`, row-major `k × k`.
    sum: Vec<f64>,
    tokens: usize,
}

/// Tokens converted to f64 together, so that each row of the sum reads them from cache.
const TOKEN_CHUNK: usize = 64;

impl Hessian {
    pub fn new(k: usize) -> Hessian {
        Hessian {
            k,
            sum: vec![0.0; k * k],
            tokens: 0,
        }
    }

    /// Input channels.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Tokens accumulated so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Adds `x: [tokens, k]` (row-major, one token a row).
    pub fn add_batch(&mut self, x: &[f32]) -> Result<(), QuantError> {
        let k = self.k;
        if k == 0 || !x.len().is_multiple_of(k) {
            return Err(QuantError::Shape(format!(
                "calibration activations have {} values, not a multiple of k = {k}",
                x.len()
            )));
        }
        if let Some(p) = x.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::Shape(format!(
                "calibration activation {} at token {}, channel {} is not finite",
                x[p],
                p / k,
                p % k
            )));
        }
        for chunk in x.chunks(TOKEN_CHUNK * k) {
            let t = chunk.len() / k;
            // Channel-major copy: xt[i·t + s] = x[s][i], so each product is a contiguous dot.
            let mut xt = vec![0f64; k * t];
            for (s, row) in chunk.chunks_exact(k).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    xt[i * t + s] = v as f64;
                }
            }
            self.sum.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
                let xi = &xt[i * t..(i + 1) * t];
                for j in i..k {
                    row[j] += super::quant::dot_f64(xi, &xt[j * t..(j + 1) * t]);
                }
            });
        }
        self.tokens += x.len() / k;
        Ok(())
    }

    /// `H = 2·XᵀX / tokens`, the full symmetric matrix.
    pub fn matrix(&self) -> Vec<f64> {
        let k = self.k;
        let scale = 2.0 / self.tokens.max(1) as f64;
        let mut h = vec![0f64; k * k];
        for i in 0..k {
            for j in i..k {
                let v = self.sum[i * k + j] * scale;
                h[i * k + j] = v;
                h[j * k + i] = v;
            }
        }
        h
    }
}

/// GPTQ-quantizes `w: [n, k]` (`nn.Linear` layout) with the calibration Hessian.
pub fn quantize_gptq(
    w: &[f32],
    n: usize,
    k: usize,
    hessian: &Hessian,
    cfg: &GptqConfig,
) -> Result<(Int4Weight, GptqStats), QuantError> {
    quantize_gptq_with_progress(w, n, k, hessian, cfg, |_, _| {})
}

/// [`quantize_gptq`], calling `progress(columns_done, k)` after each block of columns
/// (for a progress bar on large layers).
pub fn quantize_gptq_with_progress(
    w: &[f32],
    n: usize,
    k: usize,
    hessian: &Hessian,
    cfg: &GptqConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Int4Weight, GptqStats), QuantError> {
    check_input(w, n, k, &cfg.quant)?;
    if hessian.k() != k || hessian.tokens() == 0 {
        return Err(QuantError::Shape(format!(
            "the Hessian is for k = {} from {} tokens; the weight has k = {k} (and at least one calibration token is needed)",
            hessian.k(),
            hessian.tokens()
        )));
    }
    // `partial_cmp`: a NaN percdamp is refused too.
    let damp_ok = cfg.percdamp.partial_cmp(&0.0).is_some_and(|o| o.is_ge());
    if cfg.block == 0 || !damp_ok {
        return Err(QuantError::Shape(format!(
            "GPTQ block = {} must be positive and percdamp = {} non-negative",
            cfg.block, cfg.percdamp
        )));
    }
    let mut h = hessian.matrix();
    // Rows of `wt` are input channels (GPTQ's columns), each of length n.
    let mut wt = transpose(w, n, k);
    let dead = zero_dead_channels(&mut h, &mut wt, k, n);
    damp(&mut h, k, cfg.percdamp);
    let perm = order(&h, k, cfg.act_order);
    let h = permute_sym(h, &perm, k);
    let static_params = static_group_params(&wt, n, k, cfg)?;
    let mut wp: Vec<f32> = perm
        .iter()
        .flat_map(|&c| wt[c * n..(c + 1) * n].to_vec())
        .collect();
    drop(wt);
    let u = linalg::inverse_cholesky_upper(h, k).map_err(|row| {
        QuantError::Shape(format!(
            "the damped Hessian is not positive definite (pivot {row}): raise percdamp or add calibration tokens"
        ))
    })?;

    let mut q = empty_weight(n, k, &cfg.quant);
    if let Some(sp) = &static_params {
        sp.iter()
            .enumerate()
            .for_each(|(p, &params)| q.set_params(p, params));
    }
    if cfg.quant.dim == GroupDim::Oc && cfg.act_order && static_params.is_none() {
        q.g_idx = Some(vec![0; k]);
    }
    let mut loss = 0f64;
    let mut err = vec![0f32; cfg.block.min(k) * n];
    let mut col_params = vec![
        GroupParams {
            scale: 1.0,
            zero: 8
        };
        n
    ];
    for start in (0..k).step_by(cfg.block) {
        let end = (start + cfg.block).min(k);
        for j in start..end {
            let d = u[j * k + j];
            params_for_column(
                &mut q,
                &mut col_params,
                &wp,
                j,
                perm[j],
                static_params.as_deref(),
                cfg,
            )?;
            let e = &mut err[(j - start) * n..(j - start + 1) * n];
            let codes = &mut q.codes[perm[j] * n..(perm[j] + 1) * n];
            loss += quantize_column(&wp[j * n..(j + 1) * n], &col_params, d, codes, e);
            // In-block correction of the later columns of this block.
            let tail = &mut wp[(j + 1) * n..];
            for c in j + 1..end {
                let f = u[j * k + c] as f32;
                axpy_f32(&mut tail[(c - j - 1) * n..(c - j) * n], -f, e);
            }
        }
        lazy_update(
            &mut wp[end * n..],
            &err[..(end - start) * n],
            &u,
            k,
            n,
            start,
            end,
        );
        progress(end, k);
    }
    q.validate()?;
    Ok((q, GptqStats { loss, dead }))
}

/// Codes one column (`row`, one value per output channel) with `params`, writing its
/// scaled errors `(w − ŵ) / d` to `e`; returns its share of GPTQ's loss.
fn quantize_column(
    row: &[f32],
    params: &[GroupParams],
    d: f64,
    codes: &mut [u8],
    e: &mut [f32],
) -> f64 {
    let mut loss = 0f64;
    for o in 0..row.len() {
        codes[o] = params[o].code(row[o]);
        let scaled = (row[o] - params[o].value(codes[o])) as f64 / d;
        loss += scaled * scaled / 2.0;
        e[o] = scaled as f32;
    }
    loss
}

/// Sets `col_params` (one per output channel) for the column at processing position `j`
/// (original channel `c`), storing new parameters in `q` (module docs: group parameters).
fn params_for_column(
    q: &mut Int4Weight,
    col_params: &mut [GroupParams],
    wp: &[f32],
    j: usize,
    c: usize,
    static_params: Option<&[GroupParams]>,
    cfg: &GptqConfig,
) -> Result<(), QuantError> {
    let (n, k, g) = (q.n, q.k, q.group);
    match cfg.quant.dim {
        GroupDim::Oc => {
            if let Some(sp) = static_params {
                let group = c / g;
                col_params.copy_from_slice(&sp[group * n..(group + 1) * n]);
            } else if j.is_multiple_of(g) {
                let (mut lo, mut hi) = (vec![f32::INFINITY; n], vec![f32::NEG_INFINITY; n]);
                for row in wp[j * n..(j + g).min(k) * n].chunks_exact(n) {
                    for o in 0..n {
                        lo[o] = lo[o].min(row[o]);
                        hi[o] = hi[o].max(row[o]);
                    }
                }
                for o in 0..n {
                    col_params[o] = GroupParams::from_range(lo[o], hi[o], cfg.quant.sym)?;
                    q.set_params((j / g) * n + o, col_params[o]);
                }
            }
            if let Some(g_idx) = &mut q.g_idx {
                g_idx[c] = (j / g) as u32;
            }
        }
        GroupDim::Ic => {
            let row = &wp[j * n..(j + 1) * n];
            for (gi, outs) in row.chunks(g).enumerate() {
                let p = GroupParams::of(outs.iter().copied(), cfg.quant.sym)?;
                col_params[gi * g..gi * g + outs.len()].fill(p);
                q.set_params(c * n.div_ceil(g) + gi, p);
            }
        }
    }
    Ok(())
}

/// `Oc` with static groups: every (natural group, output channel)'s parameters from the
/// original weight `wt` (`[k, n]`), `[groups, n]`.
fn static_group_params(
    wt: &[f32],
    n: usize,
    k: usize,
    cfg: &GptqConfig,
) -> Result<Option<Vec<GroupParams>>, QuantError> {
    if !cfg.static_groups || cfg.quant.dim != GroupDim::Oc {
        return Ok(None);
    }
    let g = cfg.quant.group.resolve(k);
    let mut params = Vec::with_capacity(k.div_ceil(g) * n);
    for rows in wt.chunks(g * n) {
        for o in 0..n {
            params.push(GroupParams::of(
                rows.iter().skip(o).step_by(n).copied(),
                cfg.quant.sym,
            )?);
        }
    }
    Ok(Some(params))
}

/// `W[:, end..] −= E · U[start..end, end..]`: rows of `rest` are the columns after the
/// block, `err` the block's scaled errors; parallel over columns, chunked along `n` so a
/// slice of `err` stays in cache.
fn lazy_update(
    rest: &mut [f32],
    err: &[f32],
    u: &[f64],
    k: usize,
    n: usize,
    start: usize,
    end: usize,
) {
    const N_CHUNK: usize = 512;
    rest.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
        let c = end + r;
        let coef: Vec<f32> = (start..end).map(|p| -(u[p * k + c] as f32)).collect();
        for o0 in (0..n).step_by(N_CHUNK) {
            let o1 = (o0 + N_CHUNK).min(n);
            for (p, &f) in coef.iter().enumerate() {
                axpy_f32(&mut row[o0..o1], f, &err[p * n + o0..p * n + o1]);
            }
        }
    });
}

fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn transpose(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut wt = vec![0f32; n * k];
    for o in 0..n {
        for i in 0..k {
            wt[i * n + o] = w[o * k + i];
        }
    }
    wt
}

/// Channels with `H[i][i] = 0`: diagonal set to 1, weights zeroed. Returns their count.
fn zero_dead_channels(h: &mut [f64], wt: &mut [f32], k: usize, n: usize) -> usize {
    let mut dead = 0;
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = 1.0;
            wt[i * n..(i + 1) * n].fill(0.0);
            dead += 1;
        }
    }
    dead
}

fn damp(h: &mut [f64], k: usize, percdamp: f64) {
    let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for i in 0..k {
        h[i * k + i] += percdamp * mean;
    }
}

/// The processing order: descending `diag H` (stable, so ties keep channel order) with
/// act-order, else the identity.
fn order(h: &[f64], k: usize, act_order: bool) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..k).collect();
    if act_order {
        perm.sort_by(|&a, &b| h[b * k + b].total_cmp(&h[a * k + a]));
    }
    perm
}

fn permute_sym(h: Vec<f64>, perm: &[usize], k: usize) -> Vec<f64> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return h;
    }
    let mut out = vec![0f64; k * k];
    for (i, &pi) in perm.iter().enumerate() {
        for (j, &pj) in perm.iter().enumerate() {
            out[i * k + j] = h[pi * k + pj];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int4::quant::{quantize_rtn, GroupSize};

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        }
    }

    #[test]
    fn diagonal_hessian_is_rtn() {
        // With H = c·I, U is diagonal: no error is propagated and GPTQ is RTN.
        let (n, k) = (8, 16);
        let mut r = lcg(1);
        let w: Vec<f32> = (0..n * k).map(|_| r()).collect();
        let mut hess = Hessian::new(k);
        let mut x = vec![0f32; k * k];
        (0..k).for_each(|i| x[i * k + i] = 1.0);
        hess.add_batch(&x).unwrap();
        for dim in [GroupDim::Oc, GroupDim::Ic] {
            let quant = QuantConfig::new(GroupSize::Size(4), dim, false);
            let mut cfg = GptqConfig::new(quant);
            cfg.block = 5;
            let (q, stats) = quantize_gptq(&w, n, k, &hess, &cfg).unwrap();
            assert_eq!(q, quantize_rtn(&w, n, k, &quant).unwrap());
            assert_eq!(stats.dead, 0);
        }
    }

    #[test]
    fn dead_channels_are_zeroed() {
        let (n, k) = (4, 8);
        let w = vec![0.25f32; n * k];
        let mut hess = Hessian::new(k);
        let mut r = lcg(2);
        let x: Vec<f32> = (0..32 * k)
            .map(|p| if p % k == 3 { 0.0 } else { r() })
            .collect();
        hess.add_batch(&x).unwrap();
        let cfg = GptqConfig::new(QuantConfig::new(GroupSize::PerChannel, GroupDim::Oc, true));
        let (q, stats) = quantize_gptq(&w, n, k, &hess, &cfg).unwrap();
        assert_eq!(stats.dead, 1);
        let d = q.dequantize();
        assert!((0..n).all(|o| d[3 * n + o] == 0.0));
    }

    #[test]
    fn act_order_records_permuted_groups() {
        let (n, k) = (4, 8);
        let mut r = lcg(3);
        let w: Vec<f32> = (0..n * k).map(|_| r()).collect();
        // Channel activity rises with the channel index: act-order reverses the order.
        let x: Vec<f32> = (0..64 * k).map(|p| r() * (1 + p % k) as f32).collect();
        let mut hess = Hessian::new(k);
        hess.add_batch(&x).unwrap();
        let mut cfg = GptqConfig::new(QuantConfig::new(GroupSize::Size(4), GroupDim::Oc, false));
        cfg.act_order = true;
        let (q, _) = quantize_gptq(&w, n, k, &hess, &cfg).unwrap();
        assert_eq!(q.g_idx, Some(vec![1, 1, 1, 1, 0, 0, 0, 0]));
        cfg.static_groups = true;
        let (q, _) = quantize_gptq(&w, n, k, &hess, &cfg).unwrap();
        assert_eq!(q.g_idx, None);
    }

    #[test]
    fn mismatched_hessians_are_errors() {
        let cfg = GptqConfig::new(QuantConfig::new(GroupSize::PerChannel, GroupDim::Oc, true));
        let err = quantize_gptq(&[0.0; 8], 2, 4, &Hessian::new(3), &cfg).unwrap_err();
        assert!(err.to_string().contains("Hessian is for k = 3"));
        assert!(Hessian::new(3).add_batch(&[0.0; 4]).is_err());
    }
}
