//! warpforge-runtime: devices and the `warpforge` command-line tool. The model runtime
//! (Llama-family inference and training) builds on this crate in later issues.

pub mod cli;
pub mod engine;
pub mod model;
pub mod perf;
pub mod train;
