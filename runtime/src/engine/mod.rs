//! The inference engine: a scheduler that plans each step, a runner that executes the plan
//! on warpforge kernels, and the sampling between them.

pub mod layout;
pub mod model;
pub mod plan;
pub mod runner;
pub mod sampling;
pub mod weights;
