use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

// Every config is rejected: detected when the crate compiles, not at the first launch.
#[kernel(tune(BM = [32, 64], BN = [16, 32]), constraint = BN <= BM, constraint = BM > 1000)]
fn gemm<const BM: u32, const BN: u32>(y: &mut [f32]) {
    let i = thread_idx_x();
    y[i] = 0.0;
}

// A satisfiable space with bools and const methods compiles.
#[kernel(tune(W = [2, 4], FAST = [false, true]), constraint = FAST || W.pow(2) > 8)]
fn fine<const W: u32, const FAST: bool>(y: &mut [f32]) {
    y[thread_idx_x()] = 1.0;
}

fn main() {}
