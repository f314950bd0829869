//! warpforge: GPU kernels written in Rust syntax.
//!
//! This facade re-exports the public API of the workspace crates; see `docs/architecture.md`.

pub use warpforge_autotune as autotune;
pub use warpforge_dsl as dsl;
pub use warpforge_dsl::prelude;
pub use warpforge_kernels as kernels;
pub use warpforge_macros::{device, kernel};
pub use warpforge_runtime as runtime;
