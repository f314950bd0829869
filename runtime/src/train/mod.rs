//! Training (issue 14): the pieces of a step that live on the host. The kernels (loss,
//! backward passes, optimizers) are in `warpforge-kernels`.

pub mod data;
pub mod schedule;
