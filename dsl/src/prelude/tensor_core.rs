//! Warp-level tensor-core intrinsics (PTX `mma.sync`) and the 16-bit pair packing their
//! fragments use. Fragments are PTX registers: a u32 holds two f16/bf16, the element with
//! the lower column (or row) index in bits 0..16.

use super::{bf16, f16, KernelValue, Slice, Vec2, Vec4, F8E4M3, F8E5M2};

/// Packs two f16 into one u32 register (`lo` in bits 0..16, `hi` in 16..32), the layout of
/// an `.f16x2` register and of an MMA A/B fragment register.
pub fn pack_f16x2(lo: f16, hi: f16) -> u32 {
    lo.to_bits() as u32 | (hi.to_bits() as u32) << 16
}

/// Packs two bf16 into one u32 register (`lo` in bits 0..16, `hi` in 16..32).
pub fn pack_bf16x2(lo: bf16, hi: bf16) -> u32 {
    lo.to_bits() as u32 | (hi.to_bits() as u32) << 16
}

/// The two f16 of a packed register: `.x` from bits 0..16, `.y` from 16..32.
pub fn unpack_f16x2(x: u32) -> Vec2<f16> {
    Vec2::new(f16::from_bits(x as u16), f16::from_bits((x >> 16) as u16))
}

/// The two bf16 of a packed register: `.x` from bits 0..16, `.y` from 16..32.
pub fn unpack_bf16x2(x: u32) -> Vec2<bf16> {
    Vec2::new(bf16::from_bits(x as u16), bf16::from_bits((x >> 16) as u16))
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`: D = A·B + C for a 16×16 f16 A
/// (row-major), a 16×8 f16 B (column-major) and 16×8 f32 C/D, one warp together. Every lane
/// of the warp must call it (a divergent call is an error on the interpreter and undefined
/// on the GPU). Needs sm_80.
///
/// Fragments (PTX ISA 9.7.14.5.8, with `g = lane_id() / 4`, `t = lane_id() % 4`):
/// `a.x` = `A[g][2t..2t+2]`, `a.y` = `A[g+8][2t..]`, `a.z` = `A[g][2t+8..]`, `a.w` = `A[g+8][2t+8..]`;
/// `b.x` = `B[2t..2t+2][g]`, `b.y` = `B[2t+8..2t+10][g]`;
/// `c.x, c.y` = `C[g][2t]`, `C[g][2t+1]`; `c.z, c.w` = `C[g+8][2t]`, `C[g+8][2t+1]` (D likewise).
pub fn mma_m16n8k16_f16_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    let _ = (a, b, c);
    unreachable!(
        "mma_m16n8k16_f16_f32() is a warp-level intrinsic, only meaningful inside a kernel"
    )
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`: as [`mma_m16n8k16_f16_f32`] with
/// bf16 A and B. Needs sm_80.
pub fn mma_m16n8k16_bf16_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    let _ = (a, b, c);
    unreachable!(
        "mma_m16n8k16_bf16_f32() is a warp-level intrinsic, only meaningful inside a kernel"
    )
}

/// `mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16`: D = A·B + C as
/// [`mma_m16n8k16_f16_f32`], with f16 accumulators, two per u32 register (low half first).
/// Needs sm_80.
///
/// Fragments (PTX ISA 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with floating point
/// type", `g = lane_id() / 4`, `t = lane_id() % 4`): `a`, `b` as for
/// [`mma_m16n8k16_f16_f32`]; `c.x` = {`C[g][2t]`, `C[g][2t+1]`}, `c.y` = {`C[g+8][2t]`,
/// `C[g+8][2t+1]`} (D likewise). The interpreter sums the exact products in f64 in k order,
/// adds C and rounds once to f16 (nearest even); PTX leaves the internal precision open.
pub fn mma_m16n8k16_f16_f16(a: Vec4<u32>, b: Vec2<u32>, c: Vec2<u32>) -> Vec2<u32> {
    let _ = (a, b, c);
    unreachable!(
        "mma_m16n8k16_f16_f16() is a warp-level intrinsic, only meaningful inside a kernel"
    )
}

/// `mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32`: D = A·B + C for a 16×32 FP8 E4M3
/// A (row-major), a 32×8 E4M3 B (column-major) and 16×8 f32 C/D, one warp together. Each
/// u32 packs four FP8 values, the lowest k in bits 0..8. Needs sm_89.
///
/// Fragments (PTX ISA 9.7.14.5.8, "Matrix Fragments for mma.m16n8k32", `.e4m3`/`.e5m2`,
/// `g = lane_id() / 4`, `t = lane_id() % 4`): `a.x` = `A[g][4t..4t+4]`, `a.y` =
/// `A[g+8][4t..]`, `a.z` = `A[g][4t+16..]`, `a.w` = `A[g+8][4t+16..]`; `b.x` = `B[4t..4t+4][g]`,
/// `b.y` = `B[4t+16..4t+20][g]`; `c` as for [`mma_m16n8k16_f16_f32`]. The interpreter decodes
/// the FP8 values exactly, sums the products in f64 in k order, adds C and rounds once to
/// f32.
pub fn mma_m16n8k32_e4m3_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    let _ = (a, b, c);
    unreachable!(
        "mma_m16n8k32_e4m3_f32() is a warp-level intrinsic, only meaningful inside a kernel"
    )
}

/// `mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32`: as [`mma_m16n8k32_e4m3_f32`] with
/// E5M2 inputs. Needs sm_89.
pub fn mma_m16n8k32_e5m2_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    let _ = (a, b, c);
    unreachable!(
        "mma_m16n8k32_e5m2_f32() is a warp-level intrinsic, only meaningful inside a kernel"
    )
}

macro_rules! half2 {
    ($($(#[$doc:meta])* fn $name:ident($op:ident, $half:ident, $($arg:ident),+);)*) => {
        $(
            $(#[$doc])*
            pub fn $name($($arg: u32),+) -> u32 {
                let args = [$($arg),+];
                let c = args.get(2).copied().unwrap_or(0);
                crate::interp::half2::packed(
                    crate::typed::Half2Op::$op,
                    crate::types::ScalarType::$half,
                    args[0],
                    args[1],
                    c,
                )
            }
        )*
    };
}

half2! {
    /// `add.rn.f16x2`: lane-wise `a + b` of two packed f16 pairs (the [`pack_f16x2`]
    /// layout), rounded to nearest even, subnormals kept, NaN results canonical (`0x7fff`).
    /// PTX ISA 9.7.4.1.
    fn add_f16x2(Add, F16, a, b);
    /// `sub.rn.f16x2`: lane-wise `a - b` (see [`add_f16x2`]). PTX ISA 9.7.4.2.
    fn sub_f16x2(Sub, F16, a, b);
    /// `mul.rn.f16x2`: lane-wise `a * b` (see [`add_f16x2`]). PTX ISA 9.7.4.3.
    fn mul_f16x2(Mul, F16, a, b);
    /// `fma.rn.f16x2`: lane-wise `a * b + c` with one rounding. PTX ISA 9.7.4.4.
    fn fma_f16x2(Fma, F16, a, b, c);
    /// `max.f16x2`: lane-wise IEEE maxNum (a NaN loses to a number; two NaNs give the
    /// canonical NaN; `+0 > -0`). sm_80. PTX ISA 9.7.4.
    fn max_f16x2(Max, F16, a, b);
    /// `min.f16x2`: lane-wise IEEE minNum (see [`max_f16x2`]). sm_80.
    fn min_f16x2(Min, F16, a, b);
    /// Lane-wise `a + b` of two packed bf16 pairs ([`pack_bf16x2`]), rounded to nearest
    /// even. Lowered to `fma.rn.bf16x2 a, 1.0, b` (`add.bf16x2` needs sm_90); sm_80.
    fn add_bf16x2(Add, BF16, a, b);
    /// Lane-wise `a - b`: `fma.rn.bf16x2 b, -1.0, a`; sm_80.
    fn sub_bf16x2(Sub, BF16, a, b);
    /// Lane-wise `a * b`: `fma.rn.bf16x2 a, b, -0.0` (the -0 addend keeps a -0 product);
    /// sm_80.
    fn mul_bf16x2(Mul, BF16, a, b);
    /// `fma.rn.bf16x2`: lane-wise `a * b + c` with one rounding; sm_80.
    fn fma_bf16x2(Fma, BF16, a, b, c);
    /// `max.bf16x2`: lane-wise maxNum (see [`max_f16x2`]); sm_80.
    fn max_bf16x2(Max, BF16, a, b);
    /// `min.bf16x2`: lane-wise minNum; sm_80.
    fn min_bf16x2(Min, BF16, a, b);
}

/// The element types `ldmatrix` loads from shared memory. It moves raw `.b16` units: a
/// matrix row is 16 bytes — 8 f16/bf16, or 16 FP8 elements, of which each lane receives 4
/// (`4 * (lane_id() % 4)` to `+ 3`, lowest in bits 0..8: the layout of an `m16n8k32` FP8
/// fragment register). FP8 tiles take only the non-`.trans` forms (a transposed load would
/// move 16-bit pairs, not elements), so FP8 operands are stored K-major.
pub trait MatrixElement: Copy + private::Sealed {}
impl MatrixElement for f16 {}
impl MatrixElement for bf16 {}
impl MatrixElement for F8E4M3 {}
impl MatrixElement for F8E5M2 {}

mod private {
    pub trait Sealed {}
    impl Sealed for super::f16 {}
    impl Sealed for super::bf16 {}
    impl Sealed for super::F8E4M3 {}
    impl Sealed for super::F8E5M2 {}
}

macro_rules! ldmatrix {
    ($($(#[$doc:meta])* fn $name:ident -> $ret:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<T: MatrixElement>(tile: &Slice<T>, offset: u32) -> $ret {
                let _ = (tile, offset);
                unreachable!(concat!(stringify!($name), "() is a warp-level intrinsic, only meaningful inside a kernel"))
            }
        )*
    };
}

ldmatrix! {
    /// `ldmatrix.sync.aligned.m8n8.x1.shared.b16` (PTX ISA 9.7.14.5.15): lanes 0–7 give, as
    /// `offset`, the element offset in `tile` of rows 0–7 of an 8×8 matrix of 16-bit
    /// elements (a multiple of 8: rows are 16-byte aligned; for FP8 tiles see
    /// [`MatrixElement`]); every lane receives row
    /// `lane_id() / 4`, elements `2 * (lane_id() % 4)` and `+ 1` packed (low first) — the
    /// layout of an MMA A/B fragment register. Every lane of the warp must call it. sm_80.
    fn ldmatrix_x1 -> u32;
    /// As [`ldmatrix_x1`] for two matrices (lanes 8–15 address matrix 1): `.x` from matrix 0,
    /// `.y` from matrix 1.
    fn ldmatrix_x2 -> Vec2<u32>;
    /// As [`ldmatrix_x1`] for four matrices (lanes 8m..8m+8 address matrix m): lane `.x..w`
    /// from matrices 0..4 — one call loads a whole m16n8k16 A fragment.
    fn ldmatrix_x4 -> Vec4<u32>;
    /// `ldmatrix...x1.trans`: each lane receives column `lane_id() / 4`, rows
    /// `2 * (lane_id() % 4)` and `+ 1`, of the addressed matrix (loads a B fragment from a
    /// row-major K×N tile).
    fn ldmatrix_x1_trans -> u32;
    /// Two matrices, transposed.
    fn ldmatrix_x2_trans -> Vec2<u32>;
    /// Four matrices, transposed.
    fn ldmatrix_x4_trans -> Vec4<u32>;
}

macro_rules! cp_async {
    ($($(#[$doc:meta])* fn $name:ident($bytes:literal);)*) => {
        $(
            $(#[$doc])*
            pub fn $name<T: KernelValue>(
                dst: &mut Slice<T>,
                dst_index: u32,
                src: &Slice<T>,
                src_index: u32,
            ) {
                let n = $bytes / std::mem::size_of::<T>();
                for k in 0..n as u32 {
                    dst[dst_index + k] = src[src_index + k];
                }
            }
        )*
    };
}

cp_async! {
    /// `cp.async.ca.shared.global` of 4 bytes: copies `src[src_index..]` (a global buffer)
    /// to `dst[dst_index..]` (a shared array) asynchronously; the data is there after the
    /// `cp_async_wait` that completes this copy's group (see [`cp_async_commit`]). Indices
    /// must be 4-byte aligned. sm_80.
    fn cp_async_4(4);
    /// `cp.async.ca.shared.global` of 8 bytes (8-byte aligned indices); see [`cp_async_4`].
    fn cp_async_8(8);
    /// `cp.async.cg.shared.global` of 16 bytes (16-byte aligned indices; bypasses L1); see
    /// [`cp_async_4`].
    fn cp_async_16(16);
}

macro_rules! cp_async_zfill {
    ($($(#[$doc:meta])* fn $name:ident($bytes:literal);)*) => {
        $(
            $(#[$doc])*
            pub fn $name<T: KernelValue>(
                dst: &mut Slice<T>,
                dst_index: u32,
                src: &Slice<T>,
                src_index: u32,
                src_bytes: u32,
            ) {
                let size = std::mem::size_of::<T>();
                let read = src_bytes as usize / size;
                for k in 0..($bytes / size) {
                    dst[dst_index + k as u32] = match k < read {
                        true => src[src_index + k as u32],
                        false => T::zero(),
                    };
                }
            }
        )*
    };
}

cp_async_zfill! {
    /// `cp.async.ca.shared.global [dst], [src], 4, src_bytes`: as [`cp_async_4`], but reads
    /// only the first `src_bytes` bytes (0 or 4, a whole number of elements) and zero-fills
    /// the rest — a predicated load: `src_bytes = 0` reads nothing (the address must still
    /// be aligned; pass an in-bounds index). sm_80.
    fn cp_async_4_zfill(4);
    /// `cp.async.ca...8, src_bytes`: see [`cp_async_4_zfill`] (`src_bytes` in 0..=8).
    fn cp_async_8_zfill(8);
    /// `cp.async.cg...16, src_bytes`: see [`cp_async_4_zfill`] (`src_bytes` in 0..=16, e.g.
    /// the valid part of a row chunk at a ragged edge).
    fn cp_async_16_zfill(16);
}

/// `cp.async.cg...16, src_bytes` under an L2 `evict_first` cache policy (`createpolicy` +
/// `.L2::cache_hint`): as [`cp_async_16_zfill`] — the same copy, the same result — with a
/// hint that the source is read once (streamed weights), so it leaves L2 before data that
/// is reused. sm_80.
pub fn cp_async_16_zfill_evict_first<T: KernelValue>(
    dst: &mut Slice<T>,
    dst_index: u32,
    src: &Slice<T>,
    src_index: u32,
    src_bytes: u32,
) {
    cp_async_16_zfill(dst, dst_index, src, src_index, src_bytes)
}

/// `cp.async.commit_group`: closes the group of this thread's `cp_async_*` copies issued
/// since the last commit. sm_80.
pub fn cp_async_commit() {}

/// `cp.async.wait_group n` (`n` a constant in 0..=7): waits until at most the `n` most
/// recently committed groups of this thread are pending; the copies of the others are then
/// visible to this thread (other threads need a `sync_threads()` after it). sm_80.
pub fn cp_async_wait(n: u32) {
    let _ = n;
}

/// `lop3.b32`: any bitwise function of three u32. `lut` (a constant 0..=255) is the
/// function applied to 0xF0, 0xCC, 0xAA: `lop3(a, b, c, 0x96)` = `a ^ b ^ c`, `0xE8` =
/// majority, `0xCA` = `a ? b : c` bitwise.
pub fn lop3(a: u32, b: u32, c: u32, lut: u32) -> u32 {
    (0..32).fold(0, |d, i| {
        let k = (a >> i & 1) << 2 | (b >> i & 1) << 1 | (c >> i & 1);
        d | (lut >> k & 1) << i
    })
}

/// `prmt.b32` (default mode): byte `i` of the result is chosen by nibble `i` of `selector`
/// from the 8 bytes `b:a` (`a` is bytes 0–3): its low 3 bits pick the byte, and bit 3 set
/// replicates that byte's sign bit instead (`0x3210` = `a`, `0x0123` = byte-swapped `a`).
pub fn prmt(a: u32, b: u32, selector: u32) -> u32 {
    let bytes = ((b as u64) << 32 | a as u64).to_le_bytes();
    let mut out = [0u8; 4];
    for (i, o) in out.iter_mut().enumerate() {
        let s = (selector >> (4 * i)) & 0xf;
        let byte = bytes[(s & 7) as usize];
        *o = if s & 8 == 0 {
            byte
        } else {
            ((byte as i8) >> 7) as u8
        };
    }
    u32::from_le_bytes(out)
}

/// `ex2.approx.f32`: 2^x, the hardware's fast approximation (PTX bounds its relative error;
/// the interpreter computes 2^x correctly rounded, so integer `x` gives exact powers of 2
/// on both).
pub fn ex2_approx(x: f32) -> f32 {
    x.exp2()
}
