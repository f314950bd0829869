use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[kernel]
fn heap(x: &[f32], y: &mut [f32], f: &dyn Fn(f32) -> f32) {
    let i = thread_idx_x();
    let v: Vec<f32> = Vec::new();
    let b = Box::new(x[i]);
    let s = String::new();
    let w = vec![1.0f32; 4];
}

#[device]
fn boxed(v: Box<f32>) -> f32 {
    1.0
}

#[device]
fn returns_impl(v: f32) -> impl Copy {
    v
}

fn main() {}
