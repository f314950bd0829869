//! The MMA step over a warp tile, and the per-type MMA it is built on.

use warpforge_dsl::prelude::*;

/// One K step of a warp tile: `acc[i·NT + j] += A_i · B_j` for every 16-row A fragment `i`
/// (`BM / WM / 16` of them) and 8-column B fragment `j` (`NT = BN / WN / 8`), as
/// `mma_f32::<T>` (m16n8k16 for f16/bf16, m16n8k32 for E4M3). Called by the whole warp.
#[warpforge_macros::device(types(T = [f16, bf16, F8E4M3]))]
pub fn mma_warp_tile<
    T: MatrixElement,
    const BM: u32,
    const BN: u32,
    const WM: u32,
    const WN: u32,
>(
    acc: &mut [Vec4<f32>],
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
) {
    #[unroll]
    for i in 0..BM / WM / 16 {
        #[unroll]
        for j in 0..BN / WN / 8 {
            let t = i * (BN / WN / 8) + j;
            acc[t] = mma_f32::<T>(a[i], b[j], acc[t]);
        }
    }
}

/// The m16n8k16 MMA with f32 accumulation for f16 operands; `mma_f32::<T>` in generic code.
#[warpforge_macros::device]
pub fn mma_f32_f16(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    mma_m16n8k16_f16_f32(a, b, c)
}

/// The m16n8k16 MMA with f32 accumulation for bf16 operands.
#[warpforge_macros::device]
pub fn mma_f32_bf16(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    mma_m16n8k16_bf16_f32(a, b, c)
}

/// The m16n8k32 MMA with f32 accumulation for E4M3 operands (sm_89).
#[warpforge_macros::device]
pub fn mma_f32_e4m3(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    mma_m16n8k32_e4m3_f32(a, b, c)
}
