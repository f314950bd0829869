//! Finding NVRTC, compiling CUDA C to cubin, resource usage, and the on-disk module cache.

use std::fmt;

/// A real NVIDIA architecture, `sm_XY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    pub const SM89: Arch = Arch { major: 8, minor: 9 };
    pub const SM90: Arch = Arch { major: 9, minor: 0 };
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error("{0}")]
    Other(String),
}
