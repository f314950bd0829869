//! Element-wise layers of a Llama block: the SwiGLU activation, forward and backward, and
//! the residual add, each written once over `T ∈ {f32, f16, bf16}` (instances
//! `swiglu_{T}`, `swiglu_bwd_{T}`, `add_{T}`).
//!
//! # Semantics (PyTorch's, rounding for rounding)
//!
//! All arithmetic is f32 on values widened exactly from `T`; results are rounded to `T`
//! (round to nearest even) where PyTorch materializes a `T` tensor:
//! - `swiglu`: `y = T(a · u)` with `a = T(g / (1 + exp(−g)))` — Hugging Face's
//!   `act_fn(gate_proj(x)) * up_proj(x)`: `F.silu` writes a `T` tensor, then the product.
//! - `swiglu_bwd`: autograd of the same graph: `du = T(dy · a)`, `da = T(dy · u)`,
//!   `dg = T(da · s · (1 + g · (1 − s)))` with `s = 1 / (1 + exp(−g))` (ATen's
//!   `silu_backward`).
//! - `add`: `acc = T(acc + x)`, the residual connection (`residual + hidden_states`).
//! - `bias_add`: `y = T(x + b)` per row, `x` the f32 output of a GEMM and `b` a `T` bias
//!   (`[cols]`): one rounding, as cuBLAS's epilogue adds the bias to the f32 accumulator
//!   (Qwen2's q/k/v projections, `nn.Linear` with a bias).
//!
//! # Layout
//!
//! SwiGLU reads the fused gate/up projection: `gate_up` is `[rows, 2·cols]`, row `r` holding
//! the `cols` gate values then the `cols` up values (the output of one GEMM against the
//! gate and up weights stacked, as vLLM fuses them); `y` is `[rows, cols]`. The backward
//! reads `gate_up` and `dy` and writes `d_gate_up` in the same layout as `gate_up`. `cols`
//! must be a multiple of 4 (every Llama's intermediate size is) and `add`'s length too:
//! the kernels move `Vec4<T>`s (16 bytes for f32, 8 for f16/bf16). Element indices stay
//! below 2^32.
//!
//! # Work decomposition and roofline
//!
//! A thread handles `VECS` `Vec4`s, `BLOCK` apart (so each of its loads is part of a
//! contiguous warp-wide access). Memory-bound, with a few FLOPs and one `exp` per element:
//! per output element `swiglu` moves 3·sizeof(T) bytes (gate, up, y), `swiglu_bwd`
//! 5·sizeof(T) (gate, up, dy in; dgate, dup out), `add` 3·sizeof(T) (acc read and
//! written, x read) and `bias_add` 4 + sizeof(T) (the bias row stays in L1/L2). Tunables: `BLOCK` ∈ {128, 256, 512} threads, `VECS` ∈ {1, 2, 4};
//! default 256 × 2.

mod family;
pub mod host;

pub use family::kernels;

use crate::fp8::{narrow4_bf16, narrow4_f16, narrow4_f32, widen4_bf16, widen4_f16, widen4_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// `v` rounded to `T` and widened back: the value PyTorch stores in a `T` tensor.
#[device(types(T = [f32, f16, bf16]))]
pub fn round_to<T: Float>(v: f32) -> f32 {
    T::from_f32(v).to_f32()
}

/// `T(T(silu(g)) · u)`: one lane of the SwiGLU forward (see the module docs).
#[device(types(T = [f32, f16, bf16]))]
pub fn swiglu_lane<T: Float>(g: f32, u: f32) -> f32 {
    let a = round_to::<T>(g / (1.0 + (-g).exp()));
    a * u
}

/// The four lanes of [`swiglu_lane`].
#[device(types(T = [f32, f16, bf16]))]
pub fn swiglu4<T: Float>(g: Vec4<f32>, u: Vec4<f32>) -> Vec4<T> {
    narrow4::<T>(Vec4::new(
        swiglu_lane::<T>(g.x, u.x),
        swiglu_lane::<T>(g.y, u.y),
        swiglu_lane::<T>(g.z, u.z),
        swiglu_lane::<T>(g.w, u.w),
    ))
}

/// dgate of one lane: `da · s · (1 + g · (1 − s))` with `da = T(dy · u)`.
#[device(types(T = [f32, f16, bf16]))]
pub fn swiglu_dgate<T: Float>(g: f32, u: f32, dy: f32) -> f32 {
    let s = 1.0 / (1.0 + (-g).exp());
    let da = round_to::<T>(dy * u);
    da * s * (1.0 + g * (1.0 - s))
}

/// dup of one lane: `dy · T(silu(g))`.
#[device(types(T = [f32, f16, bf16]))]
pub fn swiglu_dup<T: Float>(g: f32, dy: f32) -> f32 {
    dy * round_to::<T>(g / (1.0 + (-g).exp()))
}

/// Where output `Vec4` `v` (of rows `quads` wide) finds its gate values in `gate_up`
/// (rows `2·quads` wide, gate half first); its up values are `quads` further.
#[device]
pub fn gate_index(v: u32, quads: u32) -> u32 {
    v / quads * (2 * quads) + v % quads
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2), types(T = [f32, f16, bf16]))]
pub fn swiglu<T: Float, const BLOCK: u32, const VECS: u32>(
    gate_up: &[Vec4<T>],
    y: &mut [Vec4<T>],
    rows: u32,
    cols: u32,
) {
    let quads = cols / 4;
    let total = rows * quads;
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    #[unroll]
    for j in 0..VECS {
        let v = first + j * BLOCK;
        if v < total {
            let at = gate_index(v, quads);
            let g = widen4::<T>(gate_up[at]);
            let u = widen4::<T>(gate_up[at + quads]);
            y[v] = swiglu4::<T>(g, u);
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2), types(T = [f32, f16, bf16]))]
pub fn swiglu_bwd<T: Float, const BLOCK: u32, const VECS: u32>(
    gate_up: &[Vec4<T>],
    dy: &[Vec4<T>],
    d_gate_up: &mut [Vec4<T>],
    rows: u32,
    cols: u32,
) {
    let quads = cols / 4;
    let total = rows * quads;
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    #[unroll]
    for j in 0..VECS {
        let v = first + j * BLOCK;
        if v < total {
            let at = gate_index(v, quads);
            let g = widen4::<T>(gate_up[at]);
            let u = widen4::<T>(gate_up[at + quads]);
            let d = widen4::<T>(dy[v]);
            d_gate_up[at] = narrow4::<T>(Vec4::new(
                swiglu_dgate::<T>(g.x, u.x, d.x),
                swiglu_dgate::<T>(g.y, u.y, d.y),
                swiglu_dgate::<T>(g.z, u.z, d.z),
                swiglu_dgate::<T>(g.w, u.w, d.w),
            ));
            d_gate_up[at + quads] = narrow4::<T>(Vec4::new(
                swiglu_dup::<T>(g.x, d.x),
                swiglu_dup::<T>(g.y, d.y),
                swiglu_dup::<T>(g.z, d.z),
                swiglu_dup::<T>(g.w, d.w),
            ));
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2), types(T = [f32, f16, bf16]))]
pub fn add<T: Float, const BLOCK: u32, const VECS: u32>(
    acc: &mut [Vec4<T>],
    x: &[Vec4<T>],
    quads: u32,
) {
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    #[unroll]
    for j in 0..VECS {
        let v = first + j * BLOCK;
        if v < quads {
            let a = widen4::<T>(acc[v]);
            let b = widen4::<T>(x[v]);
            acc[v] = narrow4::<T>(Vec4::new(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w));
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2), types(T = [f32, f16, bf16]))]
pub fn bias_add<T: Float, const BLOCK: u32, const VECS: u32>(
    x: &[Vec4<f32>],
    bias: &[Vec4<T>],
    y: &mut [Vec4<T>],
    quads: u32,
    row_quads: u32,
) {
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    #[unroll]
    for j in 0..VECS {
        let v = first + j * BLOCK;
        if v < quads {
            let a = x[v];
            let b = widen4::<T>(bias[v % row_quads]);
            y[v] = narrow4::<T>(Vec4::new(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w));
        }
    }
}
