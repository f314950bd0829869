//! `cp.async` (PTX ISA, "Data Movement and Conversion Instructions: cp.async",
//! `cp.async.commit_group`, `cp.async.wait_group`): asynchronous copies from global to
//! shared memory.
//!
//! Each thread keeps its own copies: those issued since its last commit (the open group),
//! and its committed groups, oldest first. `cp_async_wait(n)` completes all but the `n`
//! most recent committed groups, and only then are their bytes written to shared memory —
//! the latest moment the GPU may make them visible — so a kernel that reads the
//! destination before the matching wait reads the old value, as it may on a GPU. Addresses
//! and bounds are checked when the copy is issued; the source is read at the wait.

use std::collections::VecDeque;

use super::error::{AccessKind, Coord, InterpError};
use super::exec::{BlockState, Result};
use super::program::{AsyncCopy, MemId, MemKind, Reg, SiteId};
use crate::nvrtc::copy_async_name;
use crate::types::ScalarType;

/// One issued copy: `slots` scalars of `size` bytes to scalar slot `dst_slot` of shared
/// `dst`, the first `src_slots` of them read from global argument `arg` at byte `src_byte`
/// and the rest zero (a `_zfill` copy with a short source).
#[derive(Clone, Copy, Debug)]
struct Pending {
    arg: usize,
    src_byte: usize,
    dst: MemId,
    /// Where `dst` starts in the block's shared memory.
    dst_offset: usize,
    dst_slot: usize,
    slots: usize,
    src_slots: usize,
    size: usize,
    is_bool: bool,
    site: SiteId,
}

/// The copies of one thread not yet waited for.
#[derive(Debug, Default)]
pub(super) struct ThreadCopies {
    open: Vec<Pending>,
    committed: VecDeque<Vec<Pending>>,
}

impl ThreadCopies {
    pub fn clear(&mut self) {
        self.open.clear();
        self.committed.clear();
    }
}

impl BlockState<'_> {
    /// Checks and records one copy per active lane.
    pub(super) fn copy_async(&mut self, copy: AsyncCopy, mask: &[u32]) -> Result<()> {
        let prog = self.prog;
        let (dst, src) = (&prog.mems[copy.dst as usize], &prog.mems[copy.src as usize]);
        let MemKind::Global { arg } = src.kind else {
            let what = format!(
                "{} from `{}`, which is not a global buffer",
                copy_async_name(copy.bytes, copy.src_bytes.is_some()),
                src.name
            );
            return Err(InterpError::unsupported(&prog.kernel, what));
        };
        // The resolver admits only shared destinations (arrays, or device-function
        // parameters bound to them); a hand-built program may not.
        let MemKind::Shared { offset: dst_offset } = dst.kind else {
            let what = format!(
                "{} into `{}`, which is not shared memory",
                copy_async_name(copy.bytes, copy.src_bytes.is_some()),
                dst.name
            );
            return Err(InterpError::unsupported(&prog.kernel, what));
        };
        let elem_bytes = dst.elem.size_bytes() * dst.lanes as usize;
        let elements = (copy.bytes as usize / elem_bytes) as u64;
        for &i in mask {
            let i = i as usize;
            let (d, s) = (
                self.col(copy.dst_index)[i].get(),
                self.col(copy.src_index)[i].get(),
            );
            let read = match copy.src_bytes {
                Some(n) => self.source_elements(&copy, n, i, elem_bytes)?,
                None => elements,
            };
            self.check_copy_end(copy.dst, d, elements, elements, &copy, i)?;
            self.check_copy_end(copy.src, s, elements, read, &copy, i)?;
            let lanes = dst.lanes as usize;
            self.async_copies[i].open.push(Pending {
                arg,
                src_byte: s as usize * elem_bytes,
                dst: copy.dst,
                dst_offset,
                dst_slot: d as usize * lanes,
                slots: elements as usize * lanes,
                src_slots: read as usize * lanes,
                size: dst.elem.size_bytes(),
                is_bool: dst.elem == ScalarType::Bool,
                site: copy.site,
            });
        }
        Ok(())
    }

    /// The whole elements a `_zfill` copy reads from its source, from the lane's `src_bytes`.
    fn source_elements(
        &self,
        copy: &AsyncCopy,
        src_bytes: Reg,
        thread: usize,
        elem_bytes: usize,
    ) -> Result<u64> {
        let n = self.col(src_bytes)[thread].get();
        if n > copy.bytes as u64 || !n.is_multiple_of(elem_bytes as u64) {
            return Err(InterpError::CopySourceSize {
                kernel: self.prog.kernel.clone(),
                block: Coord(self.block),
                thread: self.thread(thread),
                intrinsic: copy_async_name(copy.bytes, true),
                src_bytes: n,
                bytes: copy.bytes,
                elem_bytes,
                site: self.prog.site(copy.site),
            });
        }
        Ok(n / elem_bytes as u64)
    }

    /// Alignment of `elements` elements of `mem` from `index`, and the bounds of the first
    /// `touched` of them (a `_zfill` copy reads only part of its source).
    fn check_copy_end(
        &self,
        mem: MemId,
        index: u64,
        elements: u64,
        touched: u64,
        copy: &AsyncCopy,
        thread: usize,
    ) -> Result<()> {
        let info = &self.prog.mems[mem as usize];
        if !index.is_multiple_of(elements) {
            return Err(InterpError::MisalignedCopy {
                kernel: self.prog.kernel.clone(),
                block: Coord(self.block),
                thread: self.thread(thread),
                intrinsic: copy_async_name(copy.bytes, copy.src_bytes.is_some()),
                buffer: info.name.clone(),
                index,
                bytes: copy.bytes,
                site: self.prog.site(copy.site),
            });
        }
        if touched == 0 {
            return Ok(());
        }
        let last = index.saturating_add(touched - 1);
        if last >= info.len {
            let kind = match info.kind {
                MemKind::Global { .. } => AccessKind::Read,
                _ => AccessKind::Write,
            };
            return Err(self.out_of_bounds(mem, kind, thread, last, copy.site));
        }
        Ok(())
    }

    pub(super) fn cp_async_commit(&mut self, mask: &[u32]) {
        for &i in mask {
            let copies = &mut self.async_copies[i as usize];
            let group = std::mem::take(&mut copies.open);
            copies.committed.push_back(group);
        }
    }

    /// Completes, per active lane, all but its `n` most recent committed groups.
    pub(super) fn cp_async_wait(&mut self, n: u32, mask: &[u32]) -> Result<()> {
        for &i in mask {
            let i = i as usize;
            while self.async_copies[i].committed.len() > n as usize {
                let Some(group) = self.async_copies[i].committed.pop_front() else {
                    break;
                };
                for copy in group {
                    self.land(copy, i)?;
                }
            }
        }
        Ok(())
    }

    /// Writes one copy's data into shared memory, as a write by `thread` at the copy's site.
    fn land(&mut self, copy: Pending, thread: usize) -> Result<()> {
        let offset = copy.dst_offset;
        for k in 0..copy.slots {
            let slot = copy.dst_slot + k;
            self.check_shared_slot(copy.dst, slot, AccessKind::Write, thread, copy.site)?;
            let bits = match k < copy.src_slots {
                true => self.globals[copy.arg].read(copy.src_byte + k * copy.size, copy.size),
                false => 0,
            };
            self.shared[offset + slot] = if copy.is_bool {
                (bits != 0) as u64
            } else {
                bits
            };
        }
        Ok(())
    }
}
