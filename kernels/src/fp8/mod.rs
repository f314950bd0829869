//! FP8 quantization and dequantization: f32/f16/bf16 → OCP FP8 (E4M3 or E5M2) plus f32
//! scales, and back.
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
//! a multiple of 4, so each row starts aligned to four elements and the kernels move f32 data
//! in 128-bit `Vec4<f32>` accesses, f16/bf16 data in 64-bit `Vec4<T>` accesses (the DSL's
//! widest vector is four lanes) and FP8 data in 32-bit `Vec4<F8>` accesses; any `cols <= ld`
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
//! resident). So it is two launches: `fp8_amax_{T}`, then
//! `fp8_quantize_tensor_{T}_{Q}` which derives `s` from the amax on the device. The
//! single-launch variant is *delayed scaling* (Transformer Engine's recipe):
//! `fp8_quantize_delayed_{T}_{Q}` casts with a scale computed from an earlier amax
//! (the previous step's) and, in the same pass, reduces this tensor's amax for the next step.
//! Values beyond the stale range saturate to ±FMAX, which is why the cast is satfinite.
//!
//! # Element types
//!
//! Each kernel is written once, generic over the high-precision type `T ∈ {f32, f16, bf16}`
//! (input of the quantizers and `fp8_amax`, output of the dequantizer) and the format
//! `Q ∈ {E4M3, E5M2}`; the macros expand it into one kernel per combination, named
//! `fp8_quantize_rows_f16_e4m3` (input type, then format) and `fp8_dequantize_e4m3_bf16`
//! (format, then output type). An f16/bf16 input is converted exactly to f32 on load
//! ([`widen4`](fn@widen4_f32)): every f16 and bf16 value is an f32 value, so the codes and scales are those
//! of the f32 path on the widened tensor. Dequantizing to f16/bf16 is `y = T(f32(q) * s)`:
//! the f32 product, then one round-to-nearest-even conversion. [`Fp8Float`] and [`Fp8Type`]
//! find the instances from host code.

pub use family::kernels;

pub mod blocks;
pub mod coat;
pub mod dequant;
mod family;
pub mod gemm;
pub mod host;
pub mod launch;
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

/// Four lanes of any input format, converted exactly to f32 (every f16 and bf16 value is an
/// f32 value, so the f32 formulas apply unchanged to the widened input).
#[device(types(T = [f32, f16, bf16]))]
pub fn widen4<T: Float>(v: Vec4<T>) -> Vec4<f32> {
    Vec4::new(v.x.to_f32(), v.y.to_f32(), v.z.to_f32(), v.w.to_f32())
}

/// Four f32 lanes rounded to the output format (RNE; the identity for f32).
#[device(types(T = [f32, f16, bf16]))]
pub fn narrow4<T: Float>(v: Vec4<f32>) -> Vec4<T> {
    Vec4::new(
        T::from_f32(v.x),
        T::from_f32(v.y),
        T::from_f32(v.z),
        T::from_f32(v.w),
    )
}

/// Satfinite round-to-nearest-even cast of four lanes to the FP8 format `Q`.
#[device(types(Q = [F8E4M3, F8E5M2]))]
pub fn cast4<Q: Fp8>(v: Vec4<f32>) -> Vec4<Q> {
    Vec4::new(
        Q::from_f32(v.x),
        Q::from_f32(v.y),
        Q::from_f32(v.z),
        Q::from_f32(v.w),
    )
}

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

/// The kernels of one (high-precision type, FP8 format) pair: quantizers from `T` to the
/// format and the dequantizer back to `T`, so host code can be written once for all pairs.
#[derive(Clone, Copy)]
pub struct Fp8Kernels {
    pub quantize_tensor: fn() -> &'static KernelDef,
    pub quantize_delayed: fn() -> &'static KernelDef,
    pub quantize_rows: fn() -> &'static KernelDef,
    pub quantize_rows_t: fn() -> &'static KernelDef,
    pub quantize_blocks: fn() -> &'static KernelDef,
    pub dequantize: fn() -> &'static KernelDef,
}

/// The table entry of the instances with suffixes `_{T}_{Q}` (quantizers) and `_{Q}_{T}`
/// (the dequantizer), named in [`Fp8Kernels`] field order.
macro_rules! fp8_kernels {
    ($tensor:ident, $delayed:ident, $rows:ident, $rows_t:ident, $blocks:ident, $deq:ident) => {
        Fp8Kernels {
            quantize_tensor: tensor::$tensor::def,
            quantize_delayed: tensor::$delayed::def,
            quantize_rows: rows::$rows::def,
            quantize_rows_t: rows::$rows_t::def,
            quantize_blocks: blocks::$blocks::def,
            dequantize: dequant::$deq::def,
        }
    };
}

/// A high-precision element type the FP8 kernels read (quantize) and write (dequantize):
/// `f32`, `f16`, `bf16`. Every value of each is exactly an f32, so quantizing a `T` tensor
/// gives the codes and scales of quantizing its f32 widening.
pub trait Fp8Float: Element + FloatFormat {
    /// `f32`, `f16` or `bf16`: the kernel name suffix.
    const NAME: &'static str;
    /// `fp8_amax_{T}`.
    const AMAX: fn() -> &'static KernelDef;
    /// Its kernels for E4M3 and E5M2, indexed by [`Fp8Type::INDEX`].
    const KERNELS: [Fp8Kernels; 2];
}

impl Fp8Float for f32 {
    const NAME: &'static str = "f32";
    const AMAX: fn() -> &'static KernelDef = tensor::fp8_amax_f32::def;
    const KERNELS: [Fp8Kernels; 2] = [
        fp8_kernels!(
            fp8_quantize_tensor_f32_e4m3,
            fp8_quantize_delayed_f32_e4m3,
            fp8_quantize_rows_f32_e4m3,
            fp8_quantize_rows_t_f32_e4m3,
            fp8_quantize_blocks_f32_e4m3,
            fp8_dequantize_e4m3_f32
        ),
        fp8_kernels!(
            fp8_quantize_tensor_f32_e5m2,
            fp8_quantize_delayed_f32_e5m2,
            fp8_quantize_rows_f32_e5m2,
            fp8_quantize_rows_t_f32_e5m2,
            fp8_quantize_blocks_f32_e5m2,
            fp8_dequantize_e5m2_f32
        ),
    ];
}

impl Fp8Float for f16 {
    const NAME: &'static str = "f16";
    const AMAX: fn() -> &'static KernelDef = tensor::fp8_amax_f16::def;
    const KERNELS: [Fp8Kernels; 2] = [
        fp8_kernels!(
            fp8_quantize_tensor_f16_e4m3,
            fp8_quantize_delayed_f16_e4m3,
            fp8_quantize_rows_f16_e4m3,
            fp8_quantize_rows_t_f16_e4m3,
            fp8_quantize_blocks_f16_e4m3,
            fp8_dequantize_e4m3_f16
        ),
        fp8_kernels!(
            fp8_quantize_tensor_f16_e5m2,
            fp8_quantize_delayed_f16_e5m2,
            fp8_quantize_rows_f16_e5m2,
            fp8_quantize_rows_t_f16_e5m2,
            fp8_quantize_blocks_f16_e5m2,
            fp8_dequantize_e5m2_f16
        ),
    ];
}

impl Fp8Float for bf16 {
    const NAME: &'static str = "bf16";
    const AMAX: fn() -> &'static KernelDef = tensor::fp8_amax_bf16::def;
    const KERNELS: [Fp8Kernels; 2] = [
        fp8_kernels!(
            fp8_quantize_tensor_bf16_e4m3,
            fp8_quantize_delayed_bf16_e4m3,
            fp8_quantize_rows_bf16_e4m3,
            fp8_quantize_rows_t_bf16_e4m3,
            fp8_quantize_blocks_bf16_e4m3,
            fp8_dequantize_e4m3_bf16
        ),
        fp8_kernels!(
            fp8_quantize_tensor_bf16_e5m2,
            fp8_quantize_delayed_bf16_e5m2,
            fp8_quantize_rows_bf16_e5m2,
            fp8_quantize_rows_t_bf16_e5m2,
            fp8_quantize_blocks_bf16_e5m2,
            fp8_dequantize_e5m2_bf16
        ),
    ];
}

/// An FP8 element type: [`F8E4M3`] or [`F8E5M2`].
pub trait Fp8Type: Element {
    /// `e4m3` or `e5m2`.
    const NAME: &'static str;
    /// Its encoding, with the exact host conversions.
    const FORMAT: Fp8Format;
    /// Largest finite magnitude.
    const MAX: f32;
    /// Its column in [`Fp8Float::KERNELS`].
    const INDEX: usize;
    /// The raw code.
    fn code(self) -> u8;
    /// Its kernels paired with the high-precision type `T`.
    fn kernels<T: Fp8Float>() -> Fp8Kernels {
        T::KERNELS[Self::INDEX]
    }
}

impl Fp8Type for F8E4M3 {
    const NAME: &'static str = "e4m3";
    const FORMAT: Fp8Format = E4M3;
    const MAX: f32 = E4M3_MAX;
    const INDEX: usize = 0;
    fn code(self) -> u8 {
        F8E4M3::to_bits(&self)
    }
}

impl Fp8Type for F8E5M2 {
    const NAME: &'static str = "e5m2";
    const FORMAT: Fp8Format = E5M2;
    const MAX: f32 = E5M2_MAX;
    const INDEX: usize = 1;
    fn code(self) -> u8 {
        F8E5M2::to_bits(&self)
    }
}

/// The generic kernels of this module, each expanded per type: quantizers as
/// `{generic}_{T}_{Q}`, the dequantizer as `{generic}_{Q}_{T}`, the amax as `{generic}_{T}`.
pub const QUANTIZERS: [&str; 5] = [
    "fp8_quantize_tensor",
    "fp8_quantize_delayed",
    "fp8_quantize_rows",
    "fp8_quantize_rows_t",
    "fp8_quantize_blocks",
];

/// What an instance name of this module's generic kernels stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp8Instance {
    /// The generic kernel: `fp8_amax`, one of [`QUANTIZERS`], or `fp8_dequantize`.
    pub generic: &'static str,
    /// `f32`, `f16` or `bf16`: the input (amax, quantizers) or output (dequantizer) type.
    pub float: &'static str,
    /// `e4m3` or `e5m2`; `None` for `fp8_amax`.
    pub format: Option<&'static str>,
}

/// Parses an instance name (`fp8_quantize_rows_bf16_e5m2`, `fp8_dequantize_e4m3_f16`,
/// `fp8_amax_f32`); `None` for any other name (the FP8 GEMM and COAT kernels included).
pub fn instance_of(name: &str) -> Option<Fp8Instance> {
    const FLOATS: [&str; 3] = [f32::NAME, f16::NAME, bf16::NAME];
    const FORMATS: [&str; 2] = [F8E4M3::NAME, F8E5M2::NAME];
    for float in FLOATS {
        if name.strip_suffix(float).and_then(|s| s.strip_suffix('_')) == Some("fp8_amax") {
            let generic = "fp8_amax";
            return Some(Fp8Instance {
                generic,
                float,
                format: None,
            });
        }
        for format in FORMATS {
            let found = |generic: &'static str, suffix: String| {
                (name.strip_suffix(&suffix) == Some(generic)).then_some(Fp8Instance {
                    generic,
                    float,
                    format: Some(format),
                })
            };
            let quantizer = QUANTIZERS
                .iter()
                .find_map(|&g| found(g, format!("_{float}_{format}")));
            if let Some(hit) =
                quantizer.or_else(|| found("fp8_dequantize", format!("_{format}_{float}")))
            {
                return Some(hit);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_parse_back_to_their_types() {
        let rows = instance_of("fp8_quantize_rows_bf16_e5m2").unwrap();
        assert_eq!(
            (rows.generic, rows.float, rows.format),
            ("fp8_quantize_rows", "bf16", Some("e5m2"))
        );
        let rows_t = instance_of("fp8_quantize_rows_t_f16_e4m3").unwrap();
        assert_eq!(rows_t.generic, "fp8_quantize_rows_t");
        let deq = instance_of("fp8_dequantize_e4m3_f16").unwrap();
        assert_eq!((deq.float, deq.format), ("f16", Some("e4m3")));
        assert_eq!(instance_of("fp8_amax_f32").unwrap().format, None);
        for other in [
            "fp8_amax",
            "fp8_quantize_rows_e4m3",
            "fp8_dequantize_f16_e4m3",
            "fp8_quantize_rows_e4m3_f16",
            "fp8_gemm_e4m3_f32",
            "fp8_gemm_e4m3_bf16",
            "coat_dre_quantize",
        ] {
            assert_eq!(instance_of(other), None, "{other}");
        }
    }

    #[test]
    fn every_table_entry_is_the_instance_of_its_types() {
        fn check<T: Fp8Float, F: Fp8Type>() {
            let k = F::kernels::<T>();
            let (t, q) = (T::NAME, F::NAME);
            assert_eq!(
                (k.quantize_tensor)().name,
                format!("fp8_quantize_tensor_{t}_{q}")
            );
            assert_eq!(
                (k.quantize_delayed)().name,
                format!("fp8_quantize_delayed_{t}_{q}")
            );
            assert_eq!(
                (k.quantize_rows)().name,
                format!("fp8_quantize_rows_{t}_{q}")
            );
            assert_eq!(
                (k.quantize_rows_t)().name,
                format!("fp8_quantize_rows_t_{t}_{q}")
            );
            assert_eq!(
                (k.quantize_blocks)().name,
                format!("fp8_quantize_blocks_{t}_{q}")
            );
            assert_eq!((k.dequantize)().name, format!("fp8_dequantize_{q}_{t}"));
            assert_eq!(T::AMAX().name, format!("fp8_amax_{t}"));
        }
        check::<f32, F8E4M3>();
        check::<f32, F8E5M2>();
        check::<f16, F8E4M3>();
        check::<f16, F8E5M2>();
        check::<bf16, F8E4M3>();
        check::<bf16, F8E5M2>();
    }
}
