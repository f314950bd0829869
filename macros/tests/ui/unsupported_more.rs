use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[device]
async fn not_async(v: f32) -> f32 {
    v
}

#[kernel]
fn more(x: &[f32], y: &mut [f32], n: u32) {
    let i = thread_idx_x();
    if let Some(v) = Some(x[i]) {
        y[i] = v;
    }
    fn nested() {}
    let p = Vec2 { x: 1.0f32, y: 2.0f32 };
    let k = x[i].clamp(0.0, 1.0) as u32;
    let v = x[i].to_bits().checked_add(1)?;
    while y[i] > 0.0 {
        let w = y.len() as i8;
    }
}

fn main() {}
