//! The register side of the int4 GEMM ([`super::gemm`]): one packed 32-bit word (8 codes,
//! layout in [`super::layout`]) into four m16n8k16 B fragment registers with the
//! magic-number trick, and the MMAs they feed.
//!
//! `lop3(q >> 4i, 0x000F000F, magic)` (truth table 0xEA = `(a & b) | c`) ORs nibbles `i`
//! and `i + 4` into the low mantissa bits of the f16/bf16 pair `magic` (1024.0 / 128.0), so
//! each half is exactly `magic + code` with no int→float conversion; a packed subtract of
//! `magic + zero` leaves the exact integer `code − zero`, and a packed multiply by the scale
//! rounds once to `T` — `T(scale · (code − zero))`, the host reference bit for bit.

use crate::tile::*;
use warpforge_dsl::prelude::*;
use warpforge_macros::device;

/// The f16 pair (1024.0, 1024.0): a nibble OR-ed into the low mantissa bits gives 1024 + x.
#[device]
pub fn magic_f16() -> u32 {
    0x6400_6400
}

/// The bf16 pair (128.0, 128.0): 128 + x for x < 128.
#[device]
pub fn magic_bf16() -> u32 {
    0x4300_4300
}

/// `magic + 8` in f16: the symmetric zero point in the form the dequant subtracts.
#[device]
pub fn sym_zero_f16() -> u32 {
    0x6408_6408
}

/// `magic + 8` in bf16.
#[device]
pub fn sym_zero_bf16() -> u32 {
    0x4308_4308
}

#[device]
pub fn sub2_f16(a: u32, b: u32) -> u32 {
    sub_f16x2(a, b)
}

#[device]
pub fn sub2_bf16(a: u32, b: u32) -> u32 {
    sub_bf16x2(a, b)
}

#[device]
pub fn mul2_f16(a: u32, b: u32) -> u32 {
    mul_f16x2(a, b)
}

#[device]
pub fn mul2_bf16(a: u32, b: u32) -> u32 {
    mul_bf16x2(a, b)
}

/// The four B fragment registers of one packed word (layout docs): register `i` is the
/// pair of nibbles `i` and `i + 4`, each `(magic + code − (magic + zero)) · scale` with
/// `zero.i`, `scale.i` the register's zero and scale pairs. `.x, .y` are the first n8
/// half's `b0, b1`; `.z, .w` the second's.
#[device(types(T = [f16, bf16]))]
pub fn dequant_word<T: Float>(q: u32, zero: Vec4<u32>, scale: Vec4<u32>) -> Vec4<u32> {
    // lop3 truth table 0xea = (a & b) | c.
    let magic = magic::<T>();
    let x0 = lop3(q, 0x000f_000f, magic, 0xea);
    let x1 = lop3(q >> 4, 0x000f_000f, magic, 0xea);
    let x2 = lop3(q >> 8, 0x000f_000f, magic, 0xea);
    let x3 = lop3(q >> 12, 0x000f_000f, magic, 0xea);
    Vec4::new(
        mul2::<T>(sub2::<T>(x0, zero.x), scale.x),
        mul2::<T>(sub2::<T>(x1, zero.y), scale.y),
        mul2::<T>(sub2::<T>(x2, zero.z), scale.z),
        mul2::<T>(sub2::<T>(x3, zero.w), scale.w),
    )
}

/// An Oc pair word (column `g` low, `g + 8` high) as per-register pairs: the first n8
/// half's registers get the low value twice, the second's the high value.
#[device]
pub fn broadcast_halves(x: u32) -> Vec4<u32> {
    let lo = prmt(x, 0, 0x1010);
    let hi = prmt(x, 0, 0x3232);
    Vec4::new(lo, lo, hi, hi)
}

/// An Ic pair of words (k rows `2t, 2t+1` and `2t+8, 2t+9`) as per-register pairs: the
/// same for both n8 halves.
#[device]
pub fn rows_pairs(x: Vec2<u32>) -> Vec4<u32> {
    Vec4::new(x.x, x.y, x.x, x.y)
}

/// Dequantizes one word and multiplies it into the warp tile: columns `8·col ..+16` of
/// `acc` (two n8 halves) for every 16-row A fragment. Called by the whole warp.
#[device(types(T = [f16, bf16]))]
pub fn mma_word<T: Float, const BM: u32, const BN: u32, const WN: u32>(
    acc: &mut [Vec4<f32>],
    a: &[Vec4<u32>],
    q: u32,
    zero: Vec4<u32>,
    scale: Vec4<u32>,
    col: u32,
) {
    let b = dequant_word::<T>(q, zero, scale);
    let lo = Vec2::new(b.x, b.y);
    let hi = Vec2::new(b.z, b.w);
    #[unroll]
    for i in 0..BM / 16 {
        acc[i * (BN / WN / 8) + col] = mma_f32::<T>(a[i], lo, acc[i * (BN / WN / 8) + col]);
        let t = i * (BN / WN / 8) + col + 1;
        acc[t] = mma_f32::<T>(a[i], hi, acc[t]);
    }
}

/// One Oc word: its zero and scale pair words (columns `g`, `g + 8`) broadcast per
/// register, then [`mma_word`]. Called by the whole warp.
#[device(types(T = [f16, bf16]))]
pub fn mma_oc_word<T: Float, const BM: u32, const BN: u32, const WN: u32>(
    acc: &mut [Vec4<f32>],
    a: &[Vec4<u32>],
    q: u32,
    zero: u32,
    scale: u32,
    col: u32,
) {
    let z = broadcast_halves(zero);
    let s = broadcast_halves(scale);
    mma_word::<T, BM, BN, WN>(acc, a, q, z, s, col);
}

/// One Ic word: its scale (and zero) pairs from word `p` of the stage's parameter rows,
/// then [`mma_word`]. Called by the whole warp.
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn mma_ic_word<T: Float, const BM: u32, const BN: u32, const BK: u32, const WN: u32>(
    acc: &mut [Vec4<f32>],
    a: &[Vec4<u32>],
    s_tile: &[Vec2<u32>],
    z_tile: &[Vec2<u32>],
    q: u32,
    p: u32,
    asym: u32,
    sym: u32,
    col: u32,
) {
    let scale = rows_pairs(s_tile[p]);
    let zero = if asym != 0 {
        rows_pairs(z_tile[p])
    } else {
        Vec4::new(sym, sym, sym, sym)
    };
    mma_word::<T, BM, BN, WN>(acc, a, q, zero, scale, col);
}
