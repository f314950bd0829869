//! The autotuner. Its search, pruning, timing and cache are built by the autotuner issue;
//! for now this crate only names the tunable spaces the kernel library declares.

pub use warpforge_dsl::space::{Config, TuneSpace};

pub mod replay;
pub mod search;
