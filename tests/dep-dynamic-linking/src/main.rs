//! A kernel written against the facade only, launched on the interpreter; the GPU path is
//! cudarc's (linked at build time here), opened when a GPU is present.

use warpforge::dsl::{Device, LaunchDims};
use warpforge::kernel;
use warpforge::prelude::*;

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256]))]
pub fn scale<const BLOCK: u32>(x: &[f32], y: &mut [f32], alpha: f32, n: u32) {
    let i = block_idx_x() * BLOCK + thread_idx_x();
    if i < n {
        y[i] = alpha * x[i];
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::cpu();
    let x: Vec<f32> = (0..300).map(|i| i as f32).collect();
    let n = x.len() as u32;
    let input = device.upload(&x)?;
    let mut output = device.zeros::<f32>(x.len())?;
    let config = scale::default_config();
    let dims = LaunchDims::cover(n, config.get("BLOCK").unwrap() as u32);
    scale::launch(&device, &config, dims, &input, &mut output, 3.0, n)?;
    assert_eq!(device.download(&output)?[299], 897.0);
    // The application's own cudarc, next to warpforge's use of it.
    let _ = cudarc::driver::CudaContext::device_count;
    println!("ok: scale on {}", device.name());
    Ok(())
}
