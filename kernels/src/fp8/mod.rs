//! FP8 quantization and dequantization: f32 → OCP FP8 (E4M3 or E5M2) plus f32 scales, and back.
//!
//! # Scale semantics (every kernel, the host reference and the fixture use exactly this)
//!
//! For a group of values (a whole tensor, a 1×G run of a row, a 128×128 tile):
//! - `amax` = the largest `|x|` of the group, NaN ignored (IEEE maxNumber, as `fmaxf`);
//!   padding outside the matrix counts as 0;
//! - `s = amax / FMAX` (one f32 division; FMAX = 448 for E4M3, 57344 for E5M2), and `s = 1`
//!   where that is 0 (an all-zero group, or amax < ~2^-141 so the quotient underflows): every
//!   value of such a group quantizes to ±0 and dequantizes to exactly ±0;
//! - `q = satfinite_rne(x / s)`: one f32 division (not a multiplication by a reciprocal),
//!   then the FP8 cast, round to nearest even, saturating to ±FMAX, NaN stays NaN;
//! - dequantization: `y = f32(q) * s` (one f32 multiplication; exact unless it underflows).
//!
//! `s` is the *dequantization* scale (Transformer Engine's `scale_inv`, DeepSeek-V3's
//! per-group scales). A group holding ±Inf gets `s = Inf`: its finite values become ±0 and its
//! infinities NaN, which makes the overflow visible instead of hiding it.
//!
//! # Layouts
//!
//! Matrices are row-major with a leading dimension `ld` (elements between row starts) that is
//! a multiple of 4, so each row starts 16-byte aligned and the kernels move f32 data in
//! 128-bit `Vec4<f32>` accesses and FP8 data in 32-bit `Vec4<F8>` accesses; any `cols <= ld`
//! is allowed (the columns `cols..ld` are padding: read as 0, written as 0). Flat tensors are
//! padded to a multiple of 4 elements the same way. The host helpers in [`host`] pad and
//! unpad. Scales are dense row-major: `[rows, ceil(cols/G)]` for 1×G groups,
//! `[ceil(rows/128), ceil(cols/128)]` for tiles, `[cols, ceil(rows/G)]` for the transposed
//! output.
//!
//! # Per-tensor scaling and the fused variant
//!
//! Exact per-tensor (current) scaling needs the tensor's amax before the first value can be
//! cast, and a kernel cannot wait for all of its blocks (there is no grid-wide barrier
//! without a cooperative launch, and a spin on a counter deadlocks when not every block is
//! resident). So it is two launches: [`tensor::fp8_amax`], then
//! `fp8_quantize_tensor_{e4m3,e5m2}` which derives `s` from the amax on the device. The
//! single-launch variant is *delayed scaling* (Transformer Engine's recipe):
//! `fp8_quantize_delayed_{e4m3,e5m2}` casts with a scale computed from an earlier amax
//! (the previous step's) and, in the same pass, reduces this tensor's amax for the next step.
//! Values beyond the stale range saturate to ±FMAX, which is why the cast is satfinite.
//!
//! Each output format has its own kernel (a const generic cannot change a buffer's element
//! type); the shared work lives in the `#[device]` functions below.

pub mod blocks;
pub mod coat;
pub mod dequant;
pub mod gemm;
pub mod host;
pub mod library;
pub mod reference;
pub mod rows;
pub mod tensor;

use warpforge_dsl::convert::{Fp8Format, E4M3, E5M2};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Element, KernelDef};
use warpforge_macros::device;

/// Largest finite E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;
/// Largest finite E5M2 magnitude.
pub const E5M2_MAX: f32 = 57344.0;
/// Side of the square tiles of [`blocks`] (one scale per 128×128 tile).
pub const TILE: u32 = 128;

/// Largest magnitude of the four lanes (NaN ignored).
#[device]
pub fn amax4(v: Vec4<f32>) -> f32 {
    v.x.abs().max(v.y.abs()).max(v.z.abs().max(v.w.abs()))
}

/// `v` with the lanes at columns `col..col+4` that are `>= cols` replaced by 0.
#[device]
pub fn mask4(v: Vec4<f32>, col: u32, cols: u32) -> Vec4<f32> {
    Vec4::new(
        if col < cols { v.x } else { 0.0 },
        if col + 1 < cols { v.y } else { 0.0 },
        if col + 2 < cols { v.z } else { 0.0 },
        if col + 3 < cols { v.w } else { 0.0 },
    )
}

/// The dequantization scale of a group with largest magnitude `amax` (see the module doc).
#[device]
pub fn scale_of(amax: f32, fmax: f32) -> f32 {
    let s = amax / fmax;
    if s == 0.0 {
        1.0
    } else {
        s
    }
}

/// Max of `v` over aligned sets of `LANES` consecutive lanes (a power of two <= 32); every
/// lane of a set gets the set's max.
#[device]
pub fn lanes_max<const LANES: u32>(v: f32) -> f32 {
    let mut m = v;
    #[unroll]
    for k in 0..5u32 {
        let mask = 16u32 >> k;
        if mask < LANES {
            m = m.max(warp_shfl_xor(m, mask));
        }
    }
    m
}

/// Max of `v` over the block's `BLOCK` threads (a multiple of 32); every thread gets it.
/// `scratch` is shared memory with at least `BLOCK / 32` elements.
#[device]
pub fn block_max<const BLOCK: u32>(v: f32, scratch: &mut [f32]) -> f32 {
    let lane = thread_idx_x() % 32;
    let warp = thread_idx_x() / 32;
    let per_warp = lanes_max::<32>(v);
    if lane == 0 {
        scratch[warp] = per_warp;
    }
    sync_threads();
    let mine = if lane < BLOCK / 32 {
        scratch[lane]
    } else {
        0.0
    };
    let total = lanes_max::<32>(mine);
    // Keeps a later reuse of `scratch` from racing with the reads above.
    sync_threads();
    total
}

/// The kernels of one output format, so host code can be written once for both.
#[derive(Clone, Copy)]
pub struct Fp8Kernels {
    pub quantize_tensor: fn() -> &'static KernelDef,
    pub quantize_delayed: fn() -> &'static KernelDef,
    pub quantize_rows: fn() -> &'static KernelDef,
    pub quantize_rows_t: fn() -> &'static KernelDef,
    pub quantize_blocks: fn() -> &'static KernelDef,
    pub dequantize: fn() -> &'static KernelDef,
}

/// An FP8 element type: [`F8E4M3`] or [`F8E5M2`].
pub trait Fp8Type: Element {
    /// `e4m3` or `e5m2`.
    const NAME: &'static str;
    /// Its encoding, with the exact host conversions.
    const FORMAT: Fp8Format;
    /// Largest finite magnitude.
    const MAX: f32;
    /// Its kernels.
    const KERNELS: Fp8Kernels;
    /// The raw code.
    fn code(self) -> u8;
}

impl Fp8Type for F8E4M3 {
    const NAME: &'static str = "e4m3";
    const FORMAT: Fp8Format = E4M3;
    const MAX: f32 = E4M3_MAX;
    const KERNELS: Fp8Kernels = Fp8Kernels {
        quantize_tensor: tensor::fp8_quantize_tensor_e4m3::def,
        quantize_delayed: tensor::fp8_quantize_delayed_e4m3::def,
        quantize_rows: rows::fp8_quantize_rows_e4m3::def,
        quantize_rows_t: rows::fp8_quantize_rows_t_e4m3::def,
        quantize_blocks: blocks::fp8_quantize_blocks_e4m3::def,
        dequantize: dequant::fp8_dequantize_e4m3::def,
    };
    fn code(self) -> u8 {
        F8E4M3::to_bits(&self)
    }
}

impl Fp8Type for F8E5M2 {
    const NAME: &'static str = "e5m2";
    const FORMAT: Fp8Format = E5M2;
    const MAX: f32 = E5M2_MAX;
    const KERNELS: Fp8Kernels = Fp8Kernels {
        quantize_tensor: tensor::fp8_quantize_tensor_e5m2::def,
        quantize_delayed: tensor::fp8_quantize_delayed_e5m2::def,
        quantize_rows: rows::fp8_quantize_rows_e5m2::def,
        quantize_rows_t: rows::fp8_quantize_rows_t_e5m2::def,
        quantize_blocks: blocks::fp8_quantize_blocks_e5m2::def,
        dequantize: dequant::fp8_dequantize_e5m2::def,
    };
    fn code(self) -> u8 {
        F8E5M2::to_bits(&self)
    }
}
