//! Errors of the interpreter: bad launches, and faults of the kernel found while it runs.

use std::fmt;

/// Thread or block coordinates `(x, y, z)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coord(pub [u32; 3]);

impl fmt::Display for Coord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.0;
        write!(f, "({x},{y},{z})")
    }
}

/// What an out-of-bounds access tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Atomic,
}

impl fmt::Display for AccessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::Atomic => "atomic access",
        })
    }
}

impl AccessKind {
    /// The access as a verb in the past tense (`wrote`).
    pub fn past(self) -> &'static str {
        match self {
            AccessKind::Read => "read",
            AccessKind::Write => "wrote",
            AccessKind::Atomic => "atomically updated",
        }
    }
}

/// The memory space of a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Shared,
    Global,
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Space::Shared => "shared array",
            Space::Global => "global buffer",
        })
    }
}

/// One side of a data race: who accessed, how, and where in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceAccess {
    pub thread: Coord,
    pub kind: AccessKind,
    /// `file:line`, or the line and the device function it is in.
    pub site: String,
}

impl fmt::Display for RaceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "thread {} {} it at {}",
            self.thread,
            self.kind.past(),
            self.site
        )
    }
}

/// Lanes of a warp, as a bit mask (bit `l` for lane `l`); displayed as a list `[0, 2, 4]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lanes(pub u32);

impl Lanes {
    /// The lanes of the linear thread indices `threads` (taken modulo 32).
    pub fn of(threads: impl Iterator<Item = usize>) -> Lanes {
        Lanes(threads.fold(0, |m, t| m | 1 << (t % 32)))
    }

    pub fn to_vec(self) -> Vec<u32> {
        (0..32).filter(|l| self.0 >> l & 1 == 1).collect()
    }
}

impl fmt::Display for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_vec())
    }
}

/// Threads of a block, listed for a divergence report: the first few, then a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadList {
    pub first: Vec<Coord>,
    pub total: usize,
}

impl fmt::Display for ThreadList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.first.iter().map(|c| c.to_string()).collect();
        write!(f, "{}", shown.join(", "))?;
        if self.total > self.first.len() {
            write!(f, " and {} more", self.total - self.first.len())?;
        }
        Ok(())
    }
}

/// An error raised while interpreting a kernel.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// A launch argument does not fit its parameter.
    #[error("kernel {kernel}: argument for parameter `{param}` should be {expected}, got {got}")]
    BadArgument {
        kernel: String,
        param: String,
        expected: String,
        got: String,
    },
    /// The launch shape is invalid for this kernel.
    #[error("kernel {kernel}: bad launch: {reason}")]
    BadLaunch { kernel: String, reason: String },
    /// The typed IR breaks an invariant the interpreter relies on (a resolver bug).
    #[error("kernel {kernel}: cannot interpret: {what}")]
    Unsupported { kernel: String, what: String },
    #[error(
        "kernel {kernel}: out-of-bounds {access} of {buffer}[{index}] (length {len}) by \
         thread {thread} of block {block} at {site}"
    )]
    OutOfBounds {
        kernel: String,
        access: AccessKind,
        buffer: String,
        index: u64,
        len: u64,
        thread: Coord,
        block: Coord,
        /// `file:line` of the access, as in race reports.
        site: String,
    },
    #[error("kernel {kernel}: integer division by zero in thread {thread} of block {block}")]
    DivisionByZero {
        kernel: String,
        thread: Coord,
        block: Coord,
    },
    /// `sync_threads()` reached by only some of the block's live threads.
    #[error(
        "kernel {kernel}: sync_threads() in block {block} is reached by threads [{waiting}] \
         but not by threads [{missing}] (the barrier is at {site}); every thread of the block \
         that has not exited must reach the same sync_threads() (move the barrier out of the \
         divergent branch or loop)"
    )]
    BarrierDivergence {
        kernel: String,
        block: Coord,
        waiting: ThreadList,
        missing: ThreadList,
        site: String,
    },
    /// A warp collective reached by only some of a warp's live lanes.
    #[error(
        "kernel {kernel}: {collective} in warp {warp} of block {block} is reached by lanes \
         {active} but not by lanes {missing} (at {site}); all lanes of the warp that have \
         not exited must execute it together"
    )]
    WarpDivergence {
        kernel: String,
        block: Coord,
        warp: u32,
        collective: &'static str,
        active: Lanes,
        missing: Lanes,
        site: String,
    },
    /// A collective that needs all 32 lanes of a warp (tensor-core MMA) in a warp with
    /// exited lanes, or in a partial warp at the end of the block.
    #[error(
        "kernel {kernel}: {collective} in warp {warp} of block {block} needs all 32 lanes, but \
         lanes {missing} have exited or are past the end of the block (at {site}); launch \
         blocks of a multiple of 32 threads and keep every lane of the warp running to it"
    )]
    IncompleteWarp {
        kernel: String,
        block: Coord,
        warp: u32,
        collective: &'static str,
        missing: Lanes,
        site: String,
    },
    /// An `ldmatrix` row address that is not 16-byte aligned.
    #[error(
        "kernel {kernel}: {collective} in block {block}: thread {thread} gives row offset \
         {offset} into `{buffer}`, which is not 16-byte aligned (a row starts at a multiple \
         of 8 16-bit or 16 8-bit elements) (at {site})"
    )]
    MisalignedMatrixRow {
        kernel: String,
        block: Coord,
        thread: Coord,
        collective: &'static str,
        buffer: String,
        offset: u64,
        site: String,
    },
    /// A `cp.async` whose source or destination is not aligned to its size.
    #[error(
        "kernel {kernel}: {intrinsic} by thread {thread} of block {block}: `{buffer}`[{index}] \
         is not {bytes}-byte aligned (at {site}); copy from and to indices that are multiples \
         of {bytes} bytes"
    )]
    MisalignedCopy {
        kernel: String,
        block: Coord,
        thread: Coord,
        intrinsic: &'static str,
        buffer: String,
        index: u64,
        bytes: u8,
        site: String,
    },
    /// A `cp_async_*_zfill` whose source size is larger than the copy or splits an element.
    #[error(
        "kernel {kernel}: {intrinsic} by thread {thread} of block {block}: source size \
         {src_bytes} bytes (at {site}); it must be at most {bytes} and a multiple of the \
         {elem_bytes}-byte element"
    )]
    CopySourceSize {
        kernel: String,
        block: Coord,
        thread: Coord,
        intrinsic: &'static str,
        src_bytes: u64,
        bytes: u8,
        elem_bytes: usize,
        site: String,
    },
    /// Two threads of a block touched the same element, at least one writing, with no
    /// `sync_threads()` between them.
    #[error(
        "kernel {kernel}: data race on {space} `{buffer}`[{index}] in block {block}: {first}, \
         then {second}, with no sync_threads() between; put a sync_threads() between the two \
         accesses, or give each thread its own element"
    )]
    Race {
        kernel: String,
        block: Coord,
        space: Space,
        buffer: String,
        /// Element index.
        index: u64,
        /// The earlier access (boxed: errors stay small on the success path).
        first: Box<RaceAccess>,
        /// The access that found the race.
        second: Box<RaceAccess>,
    },
    /// A read of shared memory that no thread of the block has written in this launch
    /// (reported when [`super::InterpOptions::uninit_shared_reads`] is set).
    #[error(
        "kernel {kernel}: thread {thread} of block {block} reads shared array \
         `{buffer}`[{index}] at {site}, which no thread of the block has written in this \
         launch; shared memory starts undefined on a GPU, so write the element before \
         reading it"
    )]
    UninitSharedRead {
        kernel: String,
        buffer: String,
        index: u64,
        thread: Coord,
        block: Coord,
        site: String,
    },
    /// A block executed more statements than [`super::InterpOptions::step_budget`] allows.
    #[error(
        "kernel {kernel}: block {block} ran past the step budget of {budget} thread-steps; \
         thread {thread} is still in the loop at {site} (an infinite loop?). If the kernel \
         really needs more, raise InterpOptions::step_budget"
    )]
    StepBudgetExceeded {
        kernel: String,
        block: Coord,
        thread: Coord,
        budget: u64,
        site: String,
    },
    /// A shuffle read a lane that has exited (or does not exist in a partial warp).
    #[error(
        "kernel {kernel}: {collective} by thread {thread} of block {block} reads lane \
         {src_lane} of its warp, which has exited or does not exist"
    )]
    ShuffleFromExitedLane {
        kernel: String,
        collective: &'static str,
        thread: Coord,
        block: Coord,
        src_lane: u32,
    },
}

impl InterpError {
    pub(super) fn unsupported(kernel: &str, what: impl Into<String>) -> InterpError {
        InterpError::Unsupported {
            kernel: kernel.to_string(),
            what: what.into(),
        }
    }
}
