use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

// A plain Rust fn is not callable from kernels: only intrinsics and `#[device]` fns are.
fn host_helper(v: f32) -> f32 {
    v * 2.0
}

#[kernel]
fn calls_host(x: &[f32], y: &mut [f32]) {
    let i = thread_idx_x();
    y[i] = host_helper(x[i]);
}

fn main() {}
