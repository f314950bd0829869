//! Warp-level tensor-core MMA: `mma.sync.aligned.m16n8k16.row.col` with f16/bf16 inputs
//! and f32 or f16 accumulators, and `mma.sync.aligned.m16n8k32.row.col.f32` with FP8
//! (E4M3/E5M2) inputs.
//!
//! The warp's 32 lanes each hold a piece of A, B and C; the operation gathers the pieces
//! into whole matrices, computes D = A·B + C, and gives each lane its piece of D, following
//! PTX ISA 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type" and
//! "Matrix Fragments for mma.m16n8k32" (the `.e4m3`/`.e5m2` layout, the same as the 8-bit
//! integer one).
//!
//! Accumulation model: every product of two inputs is exact in f64; the K products of a dot
//! product are summed in f64 in k order, C is added, and the sum is rounded once to the
//! accumulator type (f32, or f16 to nearest even for `mma_m16n8k16_f16_f16`). PTX does not
//! specify the tensor core's internal precision or order (hardware truncates some
//! intermediate bits), so results agree with a GPU exactly when the sums are exact (small
//! integers, as the tests use) and within a small tolerance otherwise.

use half::{bf16, f16};

use super::error::{Coord, InterpError, Lanes};
use super::exec::{BlockState, Result};
use super::half2;
use super::program::{Reg, SiteId};
use crate::convert::{E4M3, E5M2};
use crate::typed::Intrinsic;
use crate::types::ScalarType;

const WARP: usize = 32;
const M: usize = 16;
const N: usize = 8;
/// The largest K (m16n8k32).
const K_MAX: usize = 32;

/// The MMA variants: input type, K, and accumulator type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MmaKind {
    /// m16n8k16, f16 inputs, f32 accumulators.
    F16F32,
    /// m16n8k16, bf16 inputs, f32 accumulators.
    Bf16F32,
    /// m16n8k16, f16 inputs, f16 accumulators (two per register).
    F16F16,
    /// m16n8k32, E4M3 inputs (four per register), f32 accumulators.
    E4m3F32,
    /// m16n8k32, E5M2 inputs, f32 accumulators.
    E5m2F32,
}

impl MmaKind {
    pub fn of(intrinsic: Intrinsic) -> Option<MmaKind> {
        Some(match intrinsic {
            Intrinsic::MmaF16F32 => MmaKind::F16F32,
            Intrinsic::MmaBf16F32 => MmaKind::Bf16F32,
            Intrinsic::MmaF16F16 => MmaKind::F16F16,
            Intrinsic::MmaE4m3F32 => MmaKind::E4m3F32,
            Intrinsic::MmaE5m2F32 => MmaKind::E5m2F32,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            MmaKind::F16F32 => "mma_m16n8k16_f16_f32",
            MmaKind::Bf16F32 => "mma_m16n8k16_bf16_f32",
            MmaKind::F16F16 => "mma_m16n8k16_f16_f16",
            MmaKind::E4m3F32 => "mma_m16n8k32_e4m3_f32",
            MmaKind::E5m2F32 => "mma_m16n8k32_e5m2_f32",
        }
    }

    fn fp8(self) -> bool {
        matches!(self, MmaKind::E4m3F32 | MmaKind::E5m2F32)
    }

    fn k(self) -> usize {
        if self.fp8() {
            32
        } else {
            16
        }
    }

    /// Registers of the C and D fragments: 4 f32, or 2 packed f16 pairs.
    pub fn acc_regs(self) -> u8 {
        if self == MmaKind::F16F16 {
            2
        } else {
            4
        }
    }

    /// Input elements per 32-bit register.
    fn per_reg(self) -> usize {
        if self.fp8() {
            4
        } else {
            2
        }
    }

    /// The value of one input element's bits (16 or 8 of them).
    fn input(self, bits: u32) -> f64 {
        match self {
            MmaKind::Bf16F32 => bf16::from_bits(bits as u16).to_f64(),
            MmaKind::E4m3F32 => E4M3.decode(bits as u8) as f64,
            MmaKind::E5m2F32 => E5M2.decode(bits as u8) as f64,
            _ => f16::from_bits(bits as u16).to_f64(),
        }
    }
}

/// Where element `i` of lane `lane`'s A fragment sits (elements in register order, the
/// lowest bits first). 16-bit inputs, i in 0..8: row g (+8 for a2,a3,a6,a7), column
/// 2t + i%2 (+8 for a4..a7). FP8, i in 0..16: row g (+8 for a4..a7, a12..a15), column
/// 4t + i%4 (+16 for a8..a15).
fn a_position(kind: MmaKind, lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    if kind.fp8() {
        (g + 8 * ((i >> 2) & 1), 4 * t + (i & 3) + 16 * (i >> 3))
    } else {
        (g + 8 * ((i >> 1) & 1), 2 * t + (i & 1) + 8 * (i >> 2))
    }
}

/// Element `i` of the B fragment: 16-bit, i in 0..4: row 2t + i%2 (+8 for b2,b3); FP8,
/// i in 0..8: row 4t + i%4 (+16 for b4..b7); column g.
fn b_position(kind: MmaKind, lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    if kind.fp8() {
        (4 * t + (i & 3) + 16 * (i >> 2), g)
    } else {
        (2 * t + (i & 1) + 8 * (i >> 1), g)
    }
}

/// Element `i` (0..4) of the C/D fragment: C[row][col] (c0,c1: row g; c2,c3: row g + 8;
/// columns 2t, 2t + 1). With f16 accumulators c0,c1 share register 0 and c2,c3 register 1.
fn c_position(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * (i >> 1), 2 * t + (i & 1))
}

/// The three operands of one warp's MMA.
struct Operands {
    k: usize,
    a: [[f64; K_MAX]; M],
    b: [[f64; N]; K_MAX],
    c: [[f64; N]; M],
}

impl Operands {
    /// D = A·B + C, each element summed in f64 (in k order, then C).
    fn product(&self) -> [[f64; N]; M] {
        let mut d = [[0f64; N]; M];
        for (i, row) in d.iter_mut().enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                let dot: f64 = (0..self.k).map(|k| self.a[i][k] * self.b[k][j]).sum();
                *out = dot + self.c[i][j];
            }
        }
        d
    }
}

impl BlockState<'_> {
    /// One MMA per warp of the active lanes. `regs` = [dst, a, b, c], each the first of
    /// consecutive registers (acc, 4, 2, acc; see [`MmaKind::acc_regs`]).
    pub(super) fn mma(
        &mut self,
        kind: MmaKind,
        regs: [Reg; 4],
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let name = kind.name();
        self.check_warps(mask, name, site)?;
        self.check_complete_warps(mask, name, site)?;
        for chunk in mask.chunks(WARP) {
            let base = chunk[0] as usize;
            let operands = self.gather(kind, regs, base);
            self.scatter(kind, regs[0], base, &operands.product());
        }
        Ok(())
    }

    /// Every warp with an active lane must have all 32 lanes active (none exited, none past
    /// the end of the block): each lane holds a part of the operands.
    pub(super) fn check_complete_warps(
        &self,
        mask: &[u32],
        name: &'static str,
        site: SiteId,
    ) -> Result<()> {
        let mut at = 0;
        while at < mask.len() {
            let warp = mask[at] as usize / WARP;
            let count = mask[at..]
                .iter()
                .take_while(|&&i| i as usize / WARP == warp)
                .count();
            if count != WARP {
                let present = Lanes::of(mask[at..at + count].iter().map(|&i| i as usize));
                return Err(InterpError::IncompleteWarp {
                    kernel: self.prog.kernel.clone(),
                    block: Coord(self.block),
                    warp: warp as u32,
                    collective: name,
                    missing: Lanes(!present.0),
                    site: self.prog.site(site),
                });
            }
            at += count;
        }
        Ok(())
    }

    fn gather(&self, kind: MmaKind, regs: [Reg; 4], base: usize) -> Operands {
        let [_, a, b, c] = regs;
        let mut ops = Operands {
            k: kind.k(),
            a: [[0.0; K_MAX]; M],
            b: [[0.0; N]; K_MAX],
            c: [[0.0; N]; M],
        };
        let per = kind.per_reg();
        let width = 32 / per;
        let element = |reg: Reg, i: usize, lane: usize| {
            let bits = self.col(reg + (i / per) as u32)[base + lane].get() as u32;
            kind.input(bits >> (width * (i % per)))
        };
        for lane in 0..WARP {
            for i in 0..4 * per {
                let (row, col) = a_position(kind, lane, i);
                ops.a[row][col] = element(a, i, lane);
            }
            for i in 0..2 * per {
                let (row, col) = b_position(kind, lane, i);
                ops.b[row][col] = element(b, i, lane);
            }
            for i in 0..4 {
                let (row, col) = c_position(lane, i);
                ops.c[row][col] = self.accumulator(kind, c, i, base + lane);
            }
        }
        ops
    }

    /// Accumulator element `i` (0..4) of thread `at` from the C registers starting at `c`.
    fn accumulator(&self, kind: MmaKind, c: Reg, i: usize, at: usize) -> f64 {
        if kind == MmaKind::F16F16 {
            let pair = self.col(c + (i / 2) as u32)[at].get() as u32;
            f16::from_bits((pair >> (16 * (i % 2))) as u16).to_f64()
        } else {
            f32::from_bits(self.col(c + i as u32)[at].get() as u32) as f64
        }
    }

    /// Rounds D once to the accumulator type and hands each lane its fragment.
    fn scatter(&self, kind: MmaKind, dst: Reg, base: usize, d: &[[f64; N]; M]) {
        for lane in 0..WARP {
            let at = |i: usize| {
                let (row, col) = c_position(lane, i);
                d[row][col]
            };
            if kind == MmaKind::F16F16 {
                for r in 0..2 {
                    let lo = half2::round_f64(ScalarType::F16, at(2 * r)) as u64;
                    let hi = half2::round_f64(ScalarType::F16, at(2 * r + 1)) as u64;
                    self.col(dst + r as u32)[base + lane].set(lo | hi << 16);
                }
            } else {
                for i in 0..4 {
                    let v = at(i) as f32;
                    self.col(dst + i as u32)[base + lane].set(v.to_bits() as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each fragment covers its matrix exactly once over the warp.
    #[test]
    fn fragments_tile_their_matrices() {
        for kind in [MmaKind::F16F32, MmaKind::E4m3F32] {
            let k = kind.k();
            let mut a = [[0u32; K_MAX]; M];
            let mut b = [[0u32; N]; K_MAX];
            let mut c = [[0u32; N]; M];
            for lane in 0..WARP {
                for i in 0..4 * kind.per_reg() {
                    let (row, col) = a_position(kind, lane, i);
                    a[row][col] += 1;
                }
                for i in 0..2 * kind.per_reg() {
                    let (row, col) = b_position(kind, lane, i);
                    b[row][col] += 1;
                }
                for i in 0..4 {
                    let (row, col) = c_position(lane, i);
                    c[row][col] += 1;
                }
            }
            assert!(a.iter().all(|r| r[..k].iter().all(|&n| n == 1)), "{kind:?}");
            assert!(b[..k].iter().flatten().all(|&n| n == 1), "{kind:?}");
            assert!(c.iter().flatten().all(|&n| n == 1));
        }
        // Spot checks against the PTX figures: lane 5 is group 1, thread 1.
        let f16 = MmaKind::F16F32;
        assert_eq!(a_position(f16, 5, 6), (9, 10));
        assert_eq!(b_position(f16, 5, 2), (10, 1));
        assert_eq!(c_position(5, 2), (9, 2));
        let fp8 = MmaKind::E4m3F32;
        assert_eq!(a_position(fp8, 5, 13), (9, 21));
        assert_eq!(b_position(fp8, 5, 6), (22, 1));
    }
}
