//! Warp-level tensor-core MMA, `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{..}.f32`.
//!
//! The warp's 32 lanes each hold a piece of A, B and C; the operation gathers the pieces
//! into whole matrices, computes D = A·B + C, and gives each lane its piece of D, following
//! PTX ISA 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type".
//!
//! Accumulation model: every product of two f16 (or two bf16) values is exact in f64; the
//! 16 products of a dot product are summed in f64 in k order, C is added, and the sum is
//! rounded once to f32. PTX does not specify the tensor core's internal precision or order
//! (hardware truncates some intermediate bits), so results agree with a GPU exactly when the
//! sums are exact (small integers, as the tests use) and within a small tolerance otherwise.

use half::{bf16, f16};

use super::error::{Coord, InterpError, Lanes};
use super::exec::{BlockState, Result};
use super::program::{Reg, SiteId};
use crate::types::ScalarType;

const WARP: usize = 32;
const M: usize = 16;
const N: usize = 8;
const K: usize = 16;

/// Where register `reg` (0..4) of lane `lane`'s A fragment sits: its low half is
/// A[row][col], its high half A[row][col + 1]. (a0,a1: row g; a2,a3: row g + 8; a4..a7:
/// the same rows, columns + 8; columns 2t, 2t + 1.)
fn a_position(lane: usize, reg: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * (reg & 1), 2 * t + 8 * (reg >> 1))
}

/// Register `reg` (0..2) of the B fragment: low half B[row][col], high half B[row + 1][col]
/// (b0,b1: rows 2t, 2t + 1; b2,b3: rows + 8; column g).
fn b_position(lane: usize, reg: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (2 * t + 8 * reg, g)
}

/// Element `reg` (0..4) of the C/D fragment: C[row][col] (c0,c1: row g; c2,c3: row g + 8;
/// columns 2t, 2t + 1).
fn c_position(lane: usize, reg: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * (reg >> 1), 2 * t + (reg & 1))
}

fn half_value(input: ScalarType, bits: u16) -> f64 {
    match input {
        ScalarType::BF16 => bf16::from_bits(bits).to_f64(),
        _ => f16::from_bits(bits).to_f64(),
    }
}

/// The three operands of one warp's MMA.
struct Operands {
    a: [[f64; K]; M],
    b: [[f64; N]; K],
    c: [[f64; N]; M],
}

impl Operands {
    /// D = A·B + C, each element summed in f64 and rounded once to f32.
    fn product(&self) -> [[f32; N]; M] {
        let mut d = [[0f32; N]; M];
        for (i, row) in d.iter_mut().enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                let dot: f64 = (0..K).map(|k| self.a[i][k] * self.b[k][j]).sum();
                *out = (dot + self.c[i][j]) as f32;
            }
        }
        d
    }
}

impl BlockState<'_> {
    /// One MMA per warp of the active lanes. `regs` = [dst, a, b, c], each the first of
    /// consecutive registers (4, 4, 2, 4).
    pub(super) fn mma(
        &mut self,
        input: ScalarType,
        regs: [Reg; 4],
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let name = match input {
            ScalarType::BF16 => "mma_m16n8k16_bf16_f32",
            _ => "mma_m16n8k16_f16_f32",
        };
        self.check_warps(mask, name, site)?;
        self.check_complete_warps(mask, name, site)?;
        for chunk in mask.chunks(WARP) {
            let base = chunk[0] as usize;
            let operands = self.gather(input, regs, base);
            self.scatter(regs[0], base, &operands.product());
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

    fn gather(&self, input: ScalarType, regs: [Reg; 4], base: usize) -> Operands {
        let [_, a, b, c] = regs;
        let mut ops = Operands {
            a: [[0.0; K]; M],
            b: [[0.0; N]; K],
            c: [[0.0; N]; M],
        };
        let halves = |bits: u64| {
            let (lo, hi) = (bits as u16, (bits >> 16) as u16);
            (half_value(input, lo), half_value(input, hi))
        };
        for lane in 0..WARP {
            let i = base + lane;
            for r in 0..4 {
                let (row, col) = a_position(lane, r);
                let (lo, hi) = halves(self.col(a + r as u32)[i].get());
                ops.a[row][col] = lo;
                ops.a[row][col + 1] = hi;
                let (row, col) = c_position(lane, r);
                ops.c[row][col] = f32::from_bits(self.col(c + r as u32)[i].get() as u32) as f64;
            }
            for r in 0..2 {
                let (row, col) = b_position(lane, r);
                let (lo, hi) = halves(self.col(b + r as u32)[i].get());
                ops.b[row][col] = lo;
                ops.b[row + 1][col] = hi;
            }
        }
        ops
    }

    fn scatter(&self, dst: Reg, base: usize, d: &[[f32; N]; M]) {
        for lane in 0..WARP {
            for r in 0..4 {
                let (row, col) = c_position(lane, r);
                self.col(dst + r as u32)[base + lane].set(d[row][col].to_bits() as u64);
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
        let mut a = [[0u32; K]; M];
        let mut b = [[0u32; N]; K];
        let mut c = [[0u32; N]; M];
        for lane in 0..WARP {
            for r in 0..4 {
                let (row, col) = a_position(lane, r);
                a[row][col] += 1;
                a[row][col + 1] += 1;
                let (row, col) = c_position(lane, r);
                c[row][col] += 1;
            }
            for r in 0..2 {
                let (row, col) = b_position(lane, r);
                b[row][col] += 1;
                b[row + 1][col] += 1;
            }
        }
        assert!(a.iter().flatten().all(|&n| n == 1));
        assert!(b.iter().flatten().all(|&n| n == 1));
        assert!(c.iter().flatten().all(|&n| n == 1));
        // Spot checks against the PTX figures: lane 5 is group 1, thread 1.
        assert_eq!(a_position(5, 3), (9, 10));
        assert_eq!(b_position(5, 1), (10, 1));
        assert_eq!(c_position(5, 2), (9, 2));
    }
}
