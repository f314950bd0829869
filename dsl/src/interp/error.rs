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
         thread {thread} of block {block}"
    )]
    OutOfBounds {
        kernel: String,
        access: AccessKind,
        buffer: String,
        index: u64,
        len: u64,
        thread: Coord,
        block: Coord,
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
         but not by threads [{missing}]; every thread of the block that has not exited must \
         reach the same sync_threads() (move the barrier out of the divergent branch or loop)"
    )]
    BarrierDivergence {
        kernel: String,
        block: Coord,
        waiting: ThreadList,
        missing: ThreadList,
    },
    /// A warp collective reached by only some of a warp's live lanes.
    #[error(
        "kernel {kernel}: {collective} in warp {warp} of block {block} is reached by lanes \
         {active:?} but not by lanes {missing:?}; all lanes of the warp that have not exited \
         must execute it together"
    )]
    WarpDivergence {
        kernel: String,
        block: Coord,
        warp: u32,
        collective: &'static str,
        active: Vec<u32>,
        missing: Vec<u32>,
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
