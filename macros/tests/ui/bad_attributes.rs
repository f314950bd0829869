use warpforge_macros::kernel;

#[kernel(tune(BLOK = [128, 256], N = [], M = [1, 2, 1], K = [1.5], F = [1]), default(N = 3))]
fn space<const BLOCK: u32, const N: u32, const M: u32, const K: u32, const F: bool>(y: &mut [f32]) {}

#[kernel(block = (X, Y, Z, W))]
fn four_dims<const X: u32, const Y: u32, const Z: u32, const W: u32>(y: &mut [f32]) {}

#[kernel(blocks = (X))]
fn unknown_key<const X: u32>(y: &mut [f32]) {}

fn main() {}

#[kernel(tune(A = [1], A = [2]), default(B = 4), tune(B = [1, 2]))]
fn twice<const A: u32, const B: u32>(y: &mut [f32]) {}

#[kernel(block = ())]
fn no_dims(y: &mut [f32]) {}
