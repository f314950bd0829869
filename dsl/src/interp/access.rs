//! Memory operations of a block: loads, stores and atomics over the active lanes, each
//! bounds-checked and, when the sanitizer is on, checked for races and (opt-in) for reads
//! of shared memory never written.

use std::cell::Cell;

use super::error::{AccessKind, Coord, InterpError, RaceAccess, Space};
use super::exec::{for_lanes, BlockState, Result};
use super::memory::rmw;
use super::program::*;
use super::sanitize::{Acc, Conflict, Sanitizer};
use crate::types::ScalarType;

/// A race found by the shadow check: the lane that found it, the slot, the conflict.
struct Found {
    lane: usize,
    slot: usize,
    conflict: Conflict,
}

/// Runs `check(slot, access)` for every active lane and element lane of one access, where
/// lane `i`'s element is `idx[i]`; stops at the first conflict. (A plain loop rather than
/// `for_lanes`: this is the sanitizer's hot path, and returning early is cheaper.)
#[inline(always)]
fn scan(
    mask: &[u32],
    n: usize,
    lanes: usize,
    site: SiteId,
    idx: &[Cell<u64>],
    mut check: impl FnMut(usize, Acc) -> Option<Conflict>,
) -> Option<Found> {
    let full = mask.len() == n;
    for (k, &m) in mask.iter().enumerate() {
        let i = if full { k } else { m as usize };
        let me = Acc::new(i, site);
        let base = idx[i].get() as usize * lanes;
        for slot in base..base + lanes {
            if let Some(conflict) = check(slot, me) {
                return Some(Found {
                    lane: i,
                    slot,
                    conflict,
                });
            }
        }
    }
    None
}

impl<'p> BlockState<'p> {
    /// The sanitizer's checks for one access (`kind`) of shared scalar slot `slot` of
    /// `mem` by thread `lane`, outside the lane-parallel paths (ldmatrix, cp.async).
    pub(super) fn check_shared_slot(
        &mut self,
        mem: MemId,
        slot: usize,
        kind: AccessKind,
        lane: usize,
        site: SiteId,
    ) -> Result<()> {
        let prog = self.prog;
        let info = &prog.mems[mem as usize];
        let MemKind::Shared { offset } = info.kind else {
            return Ok(());
        };
        let element = (slot / info.lanes as usize) as u64;
        if self.san.uninit_shared {
            if kind == AccessKind::Read && !self.san.written[offset + slot] {
                return Err(InterpError::UninitSharedRead {
                    kernel: prog.kernel.clone(),
                    buffer: info.name.clone(),
                    index: element,
                    thread: self.thread(lane),
                    block: Coord(self.block),
                    site: prog.site(site),
                });
            }
            if kind == AccessKind::Write {
                self.san.written[offset + slot] = true;
            }
        }
        if self.san.races {
            let (epoch, me) = (self.san.epoch, Acc::new(lane, site));
            if let Some(conflict) = self.san.shared[offset + slot].access(epoch, kind, me) {
                let found = Found {
                    lane,
                    slot,
                    conflict,
                };
                return Err(self.race(mem, Space::Shared, kind, site, found));
            }
        }
        Ok(())
    }

    pub(super) fn out_of_bounds(
        &self,
        mem: MemId,
        access: AccessKind,
        i: usize,
        index: u64,
        site: SiteId,
    ) -> InterpError {
        let info = &self.prog.mems[mem as usize];
        InterpError::OutOfBounds {
            kernel: self.prog.kernel.clone(),
            access,
            buffer: info.name.clone(),
            index,
            len: info.len,
            thread: self.thread(i),
            block: Coord(self.block),
            site: self.prog.site(site),
        }
    }

    /// The checked element index of each active lane; the first lane out of bounds faults.
    fn check_index(
        &self,
        mem: MemId,
        index: Reg,
        access: AccessKind,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let len = self.prog.mems[mem as usize].len;
        let idx = self.col(index);
        match mask.iter().find(|&&i| idx[i as usize].get() >= len) {
            Some(&i) => {
                let index = idx[i as usize].get();
                Err(self.out_of_bounds(mem, access, i as usize, index, site))
            }
            None => Ok(()),
        }
    }

    /// Bounds, then the sanitizer's checks, for one access of the active lanes.
    fn check_access(
        &mut self,
        mem: MemId,
        index: Reg,
        kind: AccessKind,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        self.check_index(mem, index, kind, site, mask)?;
        if self.san.uninit_shared {
            self.check_written(mem, index, kind, site, mask)?;
        }
        if self.san.races {
            self.check_races(mem, index, kind, site, mask)?;
        }
        Ok(())
    }

    fn check_races(
        &mut self,
        mem: MemId,
        index: Reg,
        kind: AccessKind,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let prog = self.prog;
        let info = &prog.mems[mem as usize];
        let lanes = info.lanes as usize;
        let c = prog.column(index);
        let idx = &self.regs[c * self.n..(c + 1) * self.n];
        let san: &mut Sanitizer = &mut self.san;
        let epoch = san.epoch;
        let (found, space) = match info.kind {
            MemKind::Shared { offset } => {
                let words = &mut san.shared[offset..];
                let found = scan(mask, self.n, lanes, site, idx, |s, me| {
                    words.get_mut(s)?.access(epoch, kind, me)
                });
                (found, Space::Shared)
            }
            // Read-only buffers cannot race.
            MemKind::Global { arg } if info.writable => {
                let found = scan(mask, self.n, lanes, site, idx, |s, me| {
                    san.global_word(arg, s)?.access(epoch, kind, me)
                });
                (found, Space::Global)
            }
            _ => return Ok(()),
        };
        match found {
            Some(f) => Err(self.race(mem, space, kind, site, f)),
            None => Ok(()),
        }
    }

    fn race(
        &self,
        mem: MemId,
        space: Space,
        kind: AccessKind,
        site: SiteId,
        f: Found,
    ) -> InterpError {
        let info = &self.prog.mems[mem as usize];
        let earlier = f.conflict.earlier;
        InterpError::Race {
            kernel: self.prog.kernel.clone(),
            block: Coord(self.block),
            space,
            buffer: info.name.clone(),
            index: (f.slot / info.lanes as usize) as u64,
            first: Box::new(RaceAccess {
                thread: self.thread(earlier.thread() as usize),
                kind: f.conflict.kind,
                site: self.prog.site(earlier.site()),
            }),
            second: Box::new(RaceAccess {
                thread: self.thread(f.lane),
                kind,
                site: self.prog.site(site),
            }),
        }
    }

    /// Opt-in: a shared read (or atomic) of a slot no thread of the block has written is an
    /// error; a write (or atomic) marks the slot written.
    fn check_written(
        &mut self,
        mem: MemId,
        index: Reg,
        kind: AccessKind,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let info = &self.prog.mems[mem as usize];
        let MemKind::Shared { offset } = info.kind else {
            return Ok(());
        };
        let lanes = info.lanes as usize;
        let c = self.prog.column(index);
        let idx = &self.regs[c * self.n..(c + 1) * self.n];
        for &i in mask {
            let element = idx[i as usize].get();
            for l in 0..lanes {
                let slot = offset + element as usize * lanes + l;
                if kind != AccessKind::Write && !self.san.written[slot] {
                    return Err(InterpError::UninitSharedRead {
                        kernel: self.prog.kernel.clone(),
                        buffer: info.name.clone(),
                        index: element,
                        thread: self.thread(i as usize),
                        block: Coord(self.block),
                        site: self.prog.site(site),
                    });
                }
            }
        }
        if kind != AccessKind::Read {
            for &i in mask {
                let at = offset + idx[i as usize].get() as usize * lanes;
                self.san.written[at..at + lanes].fill(true);
            }
        }
        Ok(())
    }

    pub(super) fn load(
        &mut self,
        mem: MemId,
        index: Reg,
        dst: Reg,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        self.check_access(mem, index, AccessKind::Read, site, mask)?;
        let info = &self.prog.mems[mem as usize];
        let lanes = info.lanes as usize;
        let idx = self.col(index);
        // `move` closures keep the loop's values in registers (by-reference captures made
        // LLVM reload them around every store through a `Cell`).
        for l in 0..lanes {
            let d = self.col(dst + l as u32);
            let slot = move |i: usize| idx[i].get() as usize * lanes + l;
            match info.kind {
                MemKind::Global { arg } => {
                    let (buf, size) = (&self.globals[arg], info.elem.size_bytes());
                    let is_bool = info.elem == ScalarType::Bool;
                    for_lanes(mask, self.n, move |i| {
                        let v = buf.read(slot(i) * size, size);
                        d[i].set(if is_bool { (v != 0) as u64 } else { v });
                    });
                }
                MemKind::Shared { offset } => {
                    let sh = &self.shared[offset..];
                    for_lanes(mask, self.n, move |i| d[i].set(sh[slot(i)]));
                }
                MemKind::Local { offset } => {
                    let stride = self.prog.local_slots;
                    let lo = &self.local[offset..];
                    for_lanes(mask, self.n, move |i| d[i].set(lo[i * stride + slot(i)]));
                }
            }
        }
        Ok(())
    }

    pub(super) fn store(
        &mut self,
        mem: MemId,
        index: Reg,
        src: Reg,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        self.check_access(mem, index, AccessKind::Write, site, mask)?;
        let prog = self.prog;
        let info = &prog.mems[mem as usize];
        let lanes = info.lanes as usize;
        let n = self.n;
        let cols = |r: Reg| {
            let c = prog.column(r);
            &self.regs[c * n..(c + 1) * n]
        };
        let idx = cols(index);
        for l in 0..lanes {
            let s = cols(src + l as u32);
            let slot = move |i: usize| idx[i].get() as usize * lanes + l;
            match info.kind {
                MemKind::Global { arg } => {
                    let (buf, size) = (&self.globals[arg], info.elem.size_bytes());
                    for_lanes(mask, n, move |i| {
                        buf.write(slot(i) * size, size, s[i].get())
                    });
                }
                MemKind::Shared { offset } => {
                    let sh = &mut self.shared[offset..];
                    for_lanes(mask, n, |i| sh[slot(i)] = s[i].get());
                }
                MemKind::Local { offset } => {
                    let stride = prog.local_slots;
                    let lo = &mut self.local[offset..];
                    for_lanes(mask, n, |i| lo[i * stride + slot(i)] = s[i].get());
                }
            }
        }
        Ok(())
    }

    /// Atomics run lane by lane in lane order (within a block, the hardware order of a
    /// warp's conflicting atomics is unspecified; any order is a valid execution).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn atomic(
        &mut self,
        op: crate::typed::AtomicOp,
        mem: MemId,
        index: Reg,
        args: [Reg; 2],
        dst: Reg,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        self.check_access(mem, index, AccessKind::Atomic, site, mask)?;
        let prog = self.prog;
        let info = &prog.mems[mem as usize];
        let (ty, n) = (info.elem, self.n);
        let cols = |r: Reg| {
            let c = prog.column(r);
            &self.regs[c * n..(c + 1) * n]
        };
        let (idx, a0, a1, d) = (cols(index), cols(args[0]), cols(args[1]), cols(dst));
        for &i in mask {
            let i = i as usize;
            let (k, operands) = (idx[i].get() as usize, [a0[i].get(), a1[i].get()]);
            let slot = match info.kind {
                MemKind::Global { arg } => {
                    d[i].set(self.globals[arg].atomic(k * ty.size_bytes(), ty, op, operands));
                    continue;
                }
                MemKind::Shared { offset } => &mut self.shared[offset + k],
                MemKind::Local { offset } => &mut self.local[i * prog.local_slots + offset + k],
            };
            d[i].set(*slot);
            *slot = rmw(op, ty, *slot, operands).0;
        }
        Ok(())
    }
}
