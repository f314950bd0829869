use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

// A type name that is not a DSL element type, and a vector where an element type goes.
#[kernel(tune(BLOCK = [64]), types(T = [f32, f64], Q = [Vec4<f32>]))]
fn unknown<T: Float, Q: Float, const BLOCK: u32>(x: &[T], y: &mut [Q]) {}

// A type parameter that `types(..)` does not bind, and a bound name that is not one.
#[kernel(tune(BLOCK = [64]), types(T = [f32], X = [f16]))]
fn unbound<T: Float, U: Float, const BLOCK: u32>(x: &[T], y: &mut [U]) {}

// An empty list, a type listed twice, and an empty `types()`.
#[device(types(T = []))]
fn empty<T: Float>(v: T) -> f32 {
    v.to_f32()
}

#[device(types(T = [f16, bf16, f16]))]
fn twice<T: Float>(v: T) -> f32 {
    v.to_f32()
}

#[device(types())]
fn nothing(v: f32) -> f32 {
    v
}

// `#[device]` takes only `types(..)`.
#[device(block = (32))]
fn not_a_kernel(v: f32) -> f32 {
    v
}

// Type parameters without any `types(..)`.
#[device]
fn no_types<T: Float>(v: T) -> f32 {
    v.to_f32()
}

fn main() {}
