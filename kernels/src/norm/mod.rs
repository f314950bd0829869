//! Row normalizations, forward: RMSNorm (Llama) and LayerNorm, each written once over the
//! element type `T ∈ {f32, f16, bf16}` (instances `rmsnorm_{T}`, `layernorm_{T}`).
//!
//! # Semantics (the kernels, the host reference and the tolerances use exactly this)
//!
//! Statistics are f32 whatever `T` is (inputs are widened exactly), over the `cols` values
//! of a row:
//! - `rmsnorm`: `r = rsqrt(Σx²/cols + eps)`, then Hugging Face's `LlamaRMSNorm` order:
//!   the normalized value is rounded back to `T` *before* the weight multiplies it,
//!   `y = T(γ · T(x · r))` (`self.weight * hidden_states.to(input_dtype)`; the product of two
//!   16-bit values is exact in f32, so `T × T` in PyTorch is that f32 product rounded once).
//!   For `T = f32` both roundings are f32 operations.
//! - `layernorm`: `μ = Σx/cols`, `σ² = Σ(x − μ)²/cols` (two passes, no cancellation),
//!   `r = rsqrt(σ² + eps)`, `y = T((x − μ) · r · γ + β)`: f32 arithmetic, one rounding to
//!   `T` (PyTorch's `LayerNorm` on 16-bit inputs).
//!
//! Both also write the per-row f32 statistics the backward pass reuses: `rstd[row] = r`,
//! and for LayerNorm `mean[row] = μ`.
//!
//! # Layout (the alignment contract)
//!
//! `x` and `y` are `rows` rows of `ld` elements with `ld` a multiple of 4 and `cols ≤ ld`, so
//! every row starts four-element aligned and the kernels move data as `Vec4<T>` (128-bit
//! accesses for f32, 64-bit for f16/bf16; the DSL's widest vector is four lanes). A dense
//! `[tokens, hidden]` tensor whose width is a multiple of 4 — every Llama — is already in
//! this layout (`ld = hidden`); other widths are padded by the caller
//! ([`host::padded`]). The columns `cols..ld` are never used as input (their lanes are
//! masked to 0, so garbage there cannot leak into a sum) and are written as 0. `γ` and `β`
//! hold at least `cols` values rounded up to a multiple of 4. Element indices stay below
//! 2^32.
//!
//! # Work decomposition
//!
//! `ROW_THREADS` consecutive threads (whole warps) share a row, so a block of `BLOCK`
//! threads normalizes `BLOCK / ROW_THREADS` rows: `ROW_THREADS = 32` is one warp per row
//! (short rows, reductions by shuffles only), `ROW_THREADS = BLOCK` one block per row (long
//! rows). Each thread strides over the row's `Vec4`s by `ROW_THREADS`, so a warp's accesses
//! are contiguous. Sums go through [`fn@warp_sum`] (xor shuffles), then across the row's warps
//! in shared memory ([`fn@row_sum`]). The second (and LayerNorm's third) pass re-reads the row,
//! which the first pass just brought into L1/L2 (a row of a 4096-wide bf16 tensor is 8 KiB).
//!
//! # Roofline
//!
//! Memory-bound: per element, both read `x` once from DRAM and write `y` (2·sizeof(T)
//! bytes: 4 for bf16/f16, 8 for f32); the weight (and bias) row is shared by every row and
//! stays in L2, and the statistics add 4 (LayerNorm 8) bytes per row. About 4 FLOPs per
//! element (LayerNorm 8), far below any GPU's FLOP/byte balance.
//!
//! Tunables: `BLOCK` (threads per block: 128, 256, 512) and `ROW_THREADS` (threads per row:
//! 32 … 512, at most `BLOCK`); default `BLOCK = 128, ROW_THREADS = 128` (one block of four
//! warps per row: eight `Vec4`s per thread at hidden = 4096).

pub mod backward;
mod backward_family;
mod family;
pub mod host;

pub use backward_family::kernels as backward_kernels;
pub use family::kernels;

use crate::fp8::{mask4, narrow4_bf16, narrow4_f16, narrow4_f32};
use crate::fp8::{widen4_bf16, widen4_f16, widen4_f32};
use crate::reduce::warp_sum;
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Sum of `v` over the `ROW_THREADS` threads that share a row (aligned groups of whole
/// warps); every thread of the group gets the same total, added in the same order.
/// `scratch` is shared memory with `BLOCK / 32` elements; every thread of the block must
/// call this (it has barriers when a row spans several warps), and it ends with a barrier,
/// so `scratch` can be reused at once.
#[device]
pub fn row_sum<const BLOCK: u32, const ROW_THREADS: u32>(v: f32, scratch: &mut [f32]) -> f32 {
    let mut total = warp_sum(v);
    if ROW_THREADS > 32 {
        let warp = thread_idx_x() / 32;
        if thread_idx_x() % 32 == 0 {
            scratch[warp] = total;
        }
        sync_threads();
        let first = warp / (ROW_THREADS / 32) * (ROW_THREADS / 32);
        total = 0.0;
        #[unroll]
        for w in 0..ROW_THREADS / 32 {
            total += scratch[first + w];
        }
        sync_threads();
    }
    total
}

/// Vec4 `v` of a row (at index `at` of the tensor), widened to f32, the lanes at columns
/// `>= cols` zeroed.
#[device(types(T = [f32, f16, bf16]))]
pub fn load_row4<T: Float>(x: &[Vec4<T>], at: u32, v: u32, cols: u32) -> Vec4<f32> {
    mask4(widen4::<T>(x[at]), v * 4, cols)
}

/// `v · s`, lane by lane.
#[device]
pub fn scale4(v: Vec4<f32>, s: f32) -> Vec4<f32> {
    Vec4::new(v.x * s, v.y * s, v.z * s, v.w * s)
}

/// `a · b`, lane by lane.
#[device]
pub fn mul4(a: Vec4<f32>, b: Vec4<f32>) -> Vec4<f32> {
    Vec4::new(a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w)
}

/// `(v − m) · s`, lane by lane.
#[device]
pub fn center4(v: Vec4<f32>, m: f32, s: f32) -> Vec4<f32> {
    Vec4::new((v.x - m) * s, (v.y - m) * s, (v.z - m) * s, (v.w - m) * s)
}

/// `a · b + c`, lane by lane (a multiplication, then an addition: no fused rounding).
#[device]
pub fn affine4(a: Vec4<f32>, b: Vec4<f32>, c: Vec4<f32>) -> Vec4<f32> {
    Vec4::new(
        a.x * b.x + c.x,
        a.y * b.y + c.y,
        a.z * b.z + c.z,
        a.w * b.w + c.w,
    )
}

/// Sum of the four lanes.
#[device]
pub fn sum4(v: Vec4<f32>) -> f32 {
    v.x + v.y + v.z + v.w
}

/// Sum of the squares of the four lanes.
#[device]
pub fn sum_sq4(v: Vec4<f32>) -> f32 {
    v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w
}

#[kernel(block = (BLOCK),
         tune(BLOCK = [128, 256, 512], ROW_THREADS = [32, 64, 128, 256, 512]),
         constraint = ROW_THREADS <= BLOCK,
         default(BLOCK = 128, ROW_THREADS = 128), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm<T: Float, const BLOCK: u32, const ROW_THREADS: u32>(
    x: &[Vec4<T>],
    weight: &[Vec4<T>],
    y: &mut [Vec4<T>],
    rstd: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
    eps: f32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let row = block_idx_x() * (BLOCK / ROW_THREADS) + thread_idx_x() / ROW_THREADS;
    let t = thread_idx_x() % ROW_THREADS;
    // Threads of a row past the end run no iterations but still reach the barriers.
    let vecs = if row < rows { (cols + 3) / 4 } else { 0 };
    let base = row * (ld / 4);
    let mut ss = 0.0f32;
    let mut v = t;
    while v < vecs {
        ss += sum_sq4(load_row4::<T>(x, base + v, v, cols));
        v += ROW_THREADS;
    }
    let r = rsqrt(row_sum::<BLOCK, ROW_THREADS>(ss, &mut scratch) / cols as f32 + eps);
    if row < rows && t == 0 {
        rstd[row] = r;
    }
    let mut v2 = t;
    while v2 < vecs {
        let a = load_row4::<T>(x, base + v2, v2, cols);
        // Hugging Face's order: normalized value rounded to T, then times the weight.
        let normed = widen4::<T>(narrow4::<T>(scale4(a, r)));
        let out = mul4(normed, widen4::<T>(weight[v2]));
        y[base + v2] = narrow4::<T>(mask4(out, v2 * 4, cols));
        v2 += ROW_THREADS;
    }
}

#[kernel(block = (BLOCK),
         tune(BLOCK = [128, 256, 512], ROW_THREADS = [32, 64, 128, 256, 512]),
         constraint = ROW_THREADS <= BLOCK,
         default(BLOCK = 128, ROW_THREADS = 128), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn layernorm<T: Float, const BLOCK: u32, const ROW_THREADS: u32>(
    x: &[Vec4<T>],
    weight: &[Vec4<T>],
    bias: &[Vec4<T>],
    y: &mut [Vec4<T>],
    mean: &mut [f32],
    rstd: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
    eps: f32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let row = block_idx_x() * (BLOCK / ROW_THREADS) + thread_idx_x() / ROW_THREADS;
    let t = thread_idx_x() % ROW_THREADS;
    let vecs = if row < rows { (cols + 3) / 4 } else { 0 };
    let base = row * (ld / 4);
    let mut s = 0.0f32;
    let mut v = t;
    while v < vecs {
        s += sum4(load_row4::<T>(x, base + v, v, cols));
        v += ROW_THREADS;
    }
    let mu = row_sum::<BLOCK, ROW_THREADS>(s, &mut scratch) / cols as f32;
    // Second pass: squares of the centered values (the padding lanes masked after centering).
    let mut ss = 0.0f32;
    let mut v2 = t;
    while v2 < vecs {
        let d = mask4(
            center4(load_row4::<T>(x, base + v2, v2, cols), mu, 1.0),
            v2 * 4,
            cols,
        );
        ss += sum_sq4(d);
        v2 += ROW_THREADS;
    }
    let r = rsqrt(row_sum::<BLOCK, ROW_THREADS>(ss, &mut scratch) / cols as f32 + eps);
    if row < rows && t == 0 {
        mean[row] = mu;
        rstd[row] = r;
    }
    let mut v3 = t;
    while v3 < vecs {
        let normed = center4(load_row4::<T>(x, base + v3, v3, cols), mu, r);
        let out = affine4(normed, widen4::<T>(weight[v3]), widen4::<T>(bias[v3]));
        y[base + v3] = narrow4::<T>(mask4(out, v3 * 4, cols));
        v3 += ROW_THREADS;
    }
}

#[cfg(test)]
mod tests;

// LayerNorm's backward (declared last: the forward kernels above keep their source lines).
pub mod layernorm_backward;
mod layernorm_family;
pub use layernorm_family::kernels as layernorm_backward_kernels;
