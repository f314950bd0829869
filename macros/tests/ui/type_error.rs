use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

// The checked copy: rustc's own type errors point at the kernel's line.
#[kernel(tune(BLOCK = [64]), constraint = BLOCK >= 32)]
fn typed<const BLOCK: u32>(x: &[f32], y: &mut [f32]) {
    let i = thread_idx_x();
    let v: u32 = x[i];
    y[i] = v;
}

fn main() {}
