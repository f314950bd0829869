//! The race detector and the uninitialized-shared-memory check.
//!
//! **Races.** Within a block, two accesses to the same element by different threads, at
//! least one of them writing, with no `sync_threads()` between them, are a data race: on
//! a GPU their order is unspecified. Because the interpreter runs a block in lockstep,
//! "no barrier between" is exactly "in the same barrier epoch" (the stretch of execution
//! between two `sync_threads()`, or between the block's start and its first barrier), in
//! whatever order the lockstep schedule visits the two accesses. So each word keeps a
//! shadow [`Word`] for the current epoch: its last writer, up to two distinct readers and
//! up to two distinct atomic updaters. Two are enough to name, for any thread, another
//! thread that touched the word when there is one. A thread touching its own word again and
//! again is fine; atomics do not race with each other, but do with plain accesses.
//!
//! Epochs are numbered per worker and stamped into the words, so a barrier costs nothing
//! (no shadow is cleared) and a stale stamp reads as "untouched".
//!
//! What is covered: shared arrays, and global buffers the kernel may write (`&mut [T]`;
//! read-only buffers cannot race) between threads of one block. Not covered: races between
//! different blocks (the blocks of a launch have no barrier; a kernel must not write what
//! another block reads or writes without atomics, and this detector does not see it), and
//! local arrays (private to a thread). Warp-synchronous shared-memory code — lanes of one
//! warp exchanging data through shared memory without a barrier, relying on lockstep
//! execution — is reported as a race: since Volta, warps do not run in lockstep (CUDA's
//! racecheck reports it too); exchange values within a warp with the `warp_shfl_*`
//! intrinsics instead.
//!
//! The global shadow lives in a hash table ([`table`]) holding the words a block touches
//! in one epoch; past [`table::MAX_WORDS`] words in one epoch, further words go unchecked.

mod table;

use super::error::AccessKind;
use super::program::SiteId;

/// An access, packed in a `u32`: the thread's linear index in the low [`THREAD_BITS`], the
/// statement's site above. All ones is "nobody".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Acc(u32);

const THREAD_BITS: u32 = 11;
const THREAD_MASK: u32 = (1 << THREAD_BITS) - 1;
/// The thread field of [`Acc::NOBODY`]; blocks have at most 1024 threads.
const NO_THREAD: u32 = THREAD_MASK;
/// Sites past this many are recorded as this one (reported as an unknown line).
const MAX_SITE: u32 = u32::MAX >> THREAD_BITS;

impl Acc {
    const NOBODY: Acc = Acc(u32::MAX);

    #[inline(always)]
    pub fn new(thread: usize, site: SiteId) -> Acc {
        Acc(site.min(MAX_SITE) << THREAD_BITS | thread as u32)
    }

    #[inline]
    pub fn thread(self) -> u32 {
        self.0 & THREAD_MASK
    }

    pub fn site(self) -> SiteId {
        self.0 >> THREAD_BITS
    }

    /// Set, and by a thread other than `thread`.
    #[inline(always)]
    fn other_than(self, thread: u32) -> bool {
        let t = self.thread();
        t != NO_THREAD && t != thread
    }
}

/// The first of `accs` made by another thread than `thread`.
#[inline(always)]
fn other(accs: &[Acc; 2], thread: u32) -> Option<Acc> {
    accs.iter().copied().find(|a| a.other_than(thread))
}

/// Adds `me` to a two-entry summary of distinct threads (full: `me` is dropped, which loses
/// nothing: one of the two is another thread than any later accessor).
#[inline(always)]
fn record(accs: &mut [Acc; 2], me: Acc) {
    let t = me.thread();
    if accs[0].thread() == t || accs[1].thread() == t {
        return;
    }
    if accs[0] == Acc::NOBODY {
        accs[0] = me;
    } else if accs[1] == Acc::NOBODY {
        accs[1] = me;
    }
}

/// The shadow of one scalar word in one epoch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Word {
    epoch: u32,
    writer: Acc,
    readers: [Acc; 2],
    atomics: [Acc; 2],
}

/// An earlier access that conflicts with the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Conflict {
    pub earlier: Acc,
    pub kind: AccessKind,
}

impl Word {
    /// Untouched in every epoch that is live (epochs start at 1).
    const STALE: Word = Word::fresh(0);

    const fn fresh(epoch: u32) -> Word {
        Word {
            epoch,
            writer: Acc::NOBODY,
            readers: [Acc::NOBODY; 2],
            atomics: [Acc::NOBODY; 2],
        }
    }

    /// Records access `kind` by `me` in `epoch`; returns the earlier access of another
    /// thread in the same epoch it races with, if any.
    #[inline(always)]
    pub fn access(&mut self, epoch: u32, kind: AccessKind, me: Acc) -> Option<Conflict> {
        if self.epoch != epoch {
            *self = Word::fresh(epoch);
        }
        let t = me.thread();
        let conflict = |earlier, kind| Some(Conflict { earlier, kind });
        if self.writer.other_than(t) {
            return conflict(self.writer, AccessKind::Write);
        }
        if kind != AccessKind::Read {
            if let Some(r) = other(&self.readers, t) {
                return conflict(r, AccessKind::Read);
            }
        }
        if kind != AccessKind::Atomic {
            if let Some(a) = other(&self.atomics, t) {
                return conflict(a, AccessKind::Atomic);
            }
        }
        match kind {
            AccessKind::Read => record(&mut self.readers, me),
            AccessKind::Write => self.writer = me,
            AccessKind::Atomic => record(&mut self.atomics, me),
        }
        None
    }
}

/// The shadow state of one block (reused, like the block state, for the blocks a worker
/// runs).
pub(super) struct Sanitizer {
    pub races: bool,
    pub uninit_shared: bool,
    /// The current epoch; changes at each block start and each barrier.
    pub epoch: u32,
    /// One word per shared scalar slot (empty unless `races`).
    pub shared: Vec<Word>,
    /// Global words, keyed by `(argument, slot)` (unused unless `races`).
    pub global: table::WordTable,
    /// Per shared slot: written by some thread of this block (empty unless `uninit_shared`).
    pub written: Vec<bool>,
}

impl Sanitizer {
    pub fn new(races: bool, uninit_shared: bool, shared_slots: usize) -> Sanitizer {
        Sanitizer {
            races,
            uninit_shared,
            epoch: 0,
            shared: if races {
                vec![Word::STALE; shared_slots]
            } else {
                Vec::new()
            },
            global: table::WordTable::default(),
            written: vec![false; if uninit_shared { shared_slots } else { 0 }],
        }
    }

    /// A new block: nothing is shared with the previous one.
    pub fn begin_block(&mut self) {
        self.written.fill(false);
        self.next_epoch();
    }

    /// Every live thread passed a barrier: earlier accesses are ordered before later ones.
    pub fn barrier(&mut self) {
        self.next_epoch();
    }

    fn next_epoch(&mut self) {
        if !self.races {
            return;
        }
        self.epoch = match self.epoch.checked_add(1) {
            Some(e) => e,
            None => {
                // Stamps would repeat: forget every stamp.
                self.shared.fill(Word::STALE);
                self.global.clear();
                1
            }
        };
    }

    /// The shadow of slot `slot` of global argument `arg`; `None` when the table is full.
    #[inline]
    pub fn global_word(&mut self, arg: usize, slot: usize) -> Option<&mut Word> {
        self.global
            .word((arg as u64) << 40 | slot as u64, self.epoch)
    }
}

#[cfg(test)]
mod tests;
