use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[device]
fn factorial(n: u32) -> u32 {
    if n <= 1 {
        1
    } else {
        n * factorial(n - 1)
    }
}

#[device]
fn halve<const N: u32>(v: f32) -> f32 {
    if N == 0 {
        v
    } else {
        halve::<N>(v * 0.5)
    }
}

#[kernel]
fn launcher(y: &mut [u32]) {
    let i = thread_idx_x();
    y[i] = factorial(i);
    launcher(y);
}

fn main() {}
