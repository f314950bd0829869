use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[device(types(T = [f32, f16]))]
fn widen<T: Float>(v: T) -> f32 {
    v.to_f32()
}

// `widen` has no bf16 instance: rustc reports the call of `widen_bf16`.
#[kernel(tune(BLOCK = [64]), types(T = [f16, bf16]))]
fn caller<T: Float, const BLOCK: u32>(x: &[T], y: &mut [f32]) {
    let i = thread_idx_x();
    y[i] = widen::<T>(x[i]);
}

fn main() {}
