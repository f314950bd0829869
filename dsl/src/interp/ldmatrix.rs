//! `ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16` (PTX ISA 9.7.14.5.15,
//! "Warp-level matrix load instruction: ldmatrix").
//!
//! Threads 0–7 give the addresses of the 8 rows of matrix 0, threads 8–15 those of matrix
//! 1, and so on (for `.x1` and `.x2` the other threads' addresses are ignored); a row is 8
//! consecutive 16-bit elements, 16-byte aligned. Each thread then receives, per matrix, one
//! 32-bit register: row `lane / 4`, elements `2 * (lane % 4)` and `+ 1` (low half first);
//! with `.trans`, the same positions of the transposed matrix (column `lane / 4`, rows
//! `2 * (lane % 4)` and `+ 1`).
//!
//! The instruction moves `.b16` units whatever the data: a tile of 8-bit (FP8) elements
//! has 16 of them per 16-byte row, two per unit, the lower-addressed one in the low byte.

use super::error::{AccessKind, Coord, InterpError};
use super::exec::{BlockState, Result};
use super::program::{MatrixLoad, MemKind};

const WARP: usize = 32;
/// 16-bit units per matrix row (and rows per matrix).
const ROW: usize = 8;

impl BlockState<'_> {
    pub(super) fn ldmatrix(&mut self, load: MatrixLoad, mask: &[u32]) -> Result<()> {
        let name = match (load.count, load.trans) {
            (1, false) => "ldmatrix_x1",
            (2, false) => "ldmatrix_x2",
            (_, false) => "ldmatrix_x4",
            (1, true) => "ldmatrix_x1_trans",
            (2, true) => "ldmatrix_x2_trans",
            (_, true) => "ldmatrix_x4_trans",
        };
        self.check_warps(mask, name, load.site)?;
        self.check_complete_warps(mask, name, load.site)?;
        for chunk in mask.chunks(WARP) {
            let rows = self.read_rows(&load, chunk[0] as usize, name)?;
            self.deal_rows(&load, chunk[0] as usize, &rows);
        }
        Ok(())
    }

    /// The rows the warp starting at thread `base` addresses: `rows[8m + r]` is row `r` of
    /// matrix `m`, as its eight 16-bit units.
    fn read_rows(
        &mut self,
        load: &MatrixLoad,
        base: usize,
        name: &'static str,
    ) -> Result<Vec<[u16; ROW]>> {
        let prog = self.prog;
        let info = &prog.mems[load.mem as usize];
        let MemKind::Shared { offset: at } = info.kind else {
            return Err(InterpError::unsupported(
                &prog.kernel,
                format!("{name} from `{}`, which is not shared memory", info.name),
            ));
        };
        // Elements per 16-bit unit (1, or 2 for 8-bit types) and per row.
        let per_unit = 2 / info.elem.size_bytes().clamp(1, 2);
        let row_len = (ROW * per_unit) as u64;
        let mut rows = Vec::with_capacity(ROW * load.count as usize);
        for src in 0..ROW * load.count as usize {
            let thread = base + src;
            let start = self.col(load.offset)[thread].get();
            if !start.is_multiple_of(row_len) {
                return Err(InterpError::MisalignedMatrixRow {
                    kernel: prog.kernel.clone(),
                    block: Coord(self.block),
                    thread: self.thread(thread),
                    collective: name,
                    buffer: info.name.clone(),
                    offset: start,
                    site: prog.site(load.site),
                });
            }
            let last = start + row_len - 1;
            if last >= info.len {
                let index = start.max(info.len);
                let (mem, site) = (load.mem, load.site);
                return Err(self.out_of_bounds(mem, AccessKind::Read, thread, index, site));
            }
            let mut row = [0u16; ROW];
            for c in 0..row_len as usize {
                let element = start as usize + c;
                self.check_shared_slot(load.mem, element, AccessKind::Read, thread, load.site)?;
                let bits = self.shared[at + element] as u16;
                row[c / per_unit] |= bits << (16 / per_unit * (c % per_unit));
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Gives each lane of the warp at `base` its register of every matrix.
    fn deal_rows(&self, load: &MatrixLoad, base: usize, rows: &[[u16; ROW]]) {
        for lane in 0..WARP {
            let (g, t) = (lane / 4, lane % 4);
            for m in 0..load.count as usize {
                let matrix = &rows[m * ROW..(m + 1) * ROW];
                let (lo, hi) = if load.trans {
                    (matrix[2 * t][g], matrix[2 * t + 1][g])
                } else {
                    (matrix[g][2 * t], matrix[g][2 * t + 1])
                };
                let bits = lo as u64 | (hi as u64) << 16;
                self.col(load.dst + m as u32)[base + lane].set(bits);
            }
        }
    }
}
