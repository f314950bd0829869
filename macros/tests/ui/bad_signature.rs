use warpforge_macros::{device, kernel};

#[kernel]
fn returns<T: Copy>(x: &[f32], scale: &f32, bytes: &mut [u8], mut n: u32) -> f32 {
    x[0]
}

#[device]
fn takes_impl(x: impl Copy, v: f64) {}

fn main() {}
