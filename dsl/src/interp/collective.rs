//! Block and warp collectives: the rendezvous checks, shuffles and votes.
//!
//! In lockstep execution a collective is reached by exactly the lanes of the current mask.
//! `sync_threads()` needs every thread of the block that has not exited; a warp collective
//! needs, in each warp with an active lane, every lane that has not exited (warps are 32
//! consecutive linear thread ids, `x + bx * (y + by * z)`). Anything else would hang or be
//! undefined on the GPU, and is reported.

use super::error::{Coord, InterpError, Lanes, ThreadList};
use super::exec::{BlockState, Result};
use super::program::{Reg, ShflKind, SiteId, VoteKind};

/// How many threads a divergence report lists.
const LISTED: usize = 8;

const WARP: usize = 32;

impl BlockState<'_> {
    pub(super) fn exited(&self, i: usize) -> bool {
        self.returned[0][i]
    }

    fn thread_list(&self, lanes: impl Iterator<Item = usize>) -> ThreadList {
        let all: Vec<usize> = lanes.collect();
        ThreadList {
            first: all.iter().take(LISTED).map(|&i| self.thread(i)).collect(),
            total: all.len(),
        }
    }

    pub(super) fn sync_threads(&mut self, mask: &[u32], site: SiteId) -> Result<()> {
        if mask.len() + self.exited == self.n {
            self.san.barrier();
            return Ok(());
        }
        self.mark_active(mask);
        let missing = (0..self.n).filter(|&i| !self.active[i] && !self.exited(i));
        let err = InterpError::BarrierDivergence {
            kernel: self.prog.kernel.clone(),
            block: Coord(self.block),
            waiting: self.thread_list(mask.iter().map(|&i| i as usize)),
            missing: self.thread_list(missing),
            site: self.prog.site(site),
        };
        self.clear_active(mask);
        Err(err)
    }

    fn mark_active(&mut self, mask: &[u32]) {
        mask.iter().for_each(|&i| self.active[i as usize] = true);
    }

    fn clear_active(&mut self, mask: &[u32]) {
        mask.iter().for_each(|&i| self.active[i as usize] = false);
    }

    /// Checks that every warp with an active lane has all its live lanes active.
    pub(super) fn check_warps(
        &mut self,
        mask: &[u32],
        collective: &'static str,
        site: SiteId,
    ) -> Result<()> {
        if mask.len() == self.n {
            return Ok(());
        }
        self.mark_active(mask);
        let mut result = Ok(());
        let mut last_warp = usize::MAX;
        for &i in mask {
            let warp = i as usize / WARP;
            if warp == last_warp {
                continue;
            }
            last_warp = warp;
            let lanes = warp * WARP..((warp + 1) * WARP).min(self.n);
            let missing = Lanes::of(
                lanes
                    .clone()
                    .filter(|&j| !self.active[j] && !self.exited(j)),
            );
            if missing.0 != 0 {
                let active = Lanes::of(lanes.filter(|&j| self.active[j]));
                result = Err(InterpError::WarpDivergence {
                    kernel: self.prog.kernel.clone(),
                    block: Coord(self.block),
                    warp: warp as u32,
                    collective,
                    active,
                    missing,
                    site: self.prog.site(site),
                });
                break;
            }
        }
        self.clear_active(mask);
        result
    }

    pub(super) fn shuffle(
        &mut self,
        kind: ShflKind,
        dst: Reg,
        src: Reg,
        lane: Reg,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let name = match kind {
            ShflKind::Xor => "warp_shfl_xor",
            ShflKind::Down => "warp_shfl_down",
            ShflKind::Up => "warp_shfl_up",
            ShflKind::Idx => "warp_shfl_idx",
        };
        self.check_warps(mask, name, site)?;
        let (d, s, b) = (self.col(dst), self.col(src), self.col(lane));
        for &i in mask {
            let i = i as usize;
            let (base, me) = (i - i % WARP, (i % WARP) as u64);
            // PTX `shfl.sync` reads only b[4:0] ("bval[4:0] = b[4:0]": an out-of-range b
            // may still name a valid lane), so a delta of 33 moves by 1. Found by the host
            // harness (dsl/host/), which reads the ISA independently.
            let arg = (b[i].get() as u32 & 31) as u64;
            // Source lane per PTX `shfl.sync` with c = 0x1f (full warp): out-of-range lanes
            // read their own value; `idx` takes the source lane modulo 32.
            let from = match kind {
                ShflKind::Xor => Some(me ^ arg).filter(|&j| j < WARP as u64),
                ShflKind::Down => Some(me + arg).filter(|&j| j < WARP as u64),
                ShflKind::Up => me.checked_sub(arg),
                ShflKind::Idx => Some(arg % WARP as u64),
            }
            .unwrap_or(me) as usize;
            let j = base + from;
            if j >= self.n || self.exited(j) {
                return Err(InterpError::ShuffleFromExitedLane {
                    kernel: self.prog.kernel.clone(),
                    collective: name,
                    thread: self.thread(i),
                    block: Coord(self.block),
                    src_lane: from as u32,
                });
            }
            d[i].set(s[j].get());
        }
        Ok(())
    }

    /// Votes over the warp's active lanes (exited lanes do not vote).
    pub(super) fn vote(
        &mut self,
        kind: VoteKind,
        dst: Reg,
        src: Reg,
        site: SiteId,
        mask: &[u32],
    ) -> Result<()> {
        let name = match kind {
            VoteKind::Any => "warp_any",
            VoteKind::All => "warp_all",
            VoteKind::Ballot => "warp_ballot",
        };
        self.check_warps(mask, name, site)?;
        let (d, s) = (self.col(dst), self.col(src));
        let mut start = 0;
        while start < mask.len() {
            let warp = mask[start] as usize / WARP;
            let end = start
                + mask[start..]
                    .iter()
                    .take_while(|&&i| i as usize / WARP == warp)
                    .count();
            let (mut ballot, mut members) = (0u32, 0u32);
            for &i in &mask[start..end] {
                let bit = 1u32 << (i as usize % WARP);
                members |= bit;
                if s[i as usize].get() != 0 {
                    ballot |= bit;
                }
            }
            let value = match kind {
                VoteKind::Any => (ballot != 0) as u64,
                VoteKind::All => (ballot == members) as u64,
                VoteKind::Ballot => ballot as u64,
            };
            mask[start..end]
                .iter()
                .for_each(|&i| d[i as usize].set(value));
            start = end;
        }
        Ok(())
    }
}
