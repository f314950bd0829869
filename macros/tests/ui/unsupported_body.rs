use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

#[kernel]
fn body<const N: u32>(x: &[f32], y: &mut [f32], n: u32) {
    let i = thread_idx_x();
    let v = match i {
        0 => 1.0,
        _ => 2.0,
    };
    let f = |a: f32| a * 2.0;
    println!("{}", i);
    let r = &v;
    let (a, b) = (1u32, 2u32);
    #[unroll]
    for s in [16u32, 8, 4, 2, 1] {
        y[s] = 0.0;
    }
    let j = i as usize;
    'outer: loop {
        break 'outer;
    }
    let s = "text";
    y[i] = unsafe { x[n - 1] };
}

fn main() {}
