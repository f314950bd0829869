//! A kernel of your own, end to end, with only `warpforge` as a dependency:
//! write it with `#[kernel]`, check it on the CPU interpreter against a host reference, emit
//! its CUDA C, compile it with NVRTC (skipped, with the reason, when NVRTC is not installed),
//! launch it on a GPU when there is one, and tune its block size on the interpreter.
//!
//! ```sh
//! cargo run --release --example user_kernel
//! ```

use std::time::Instant;
use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve, Config, Device, LaunchDims};
use warpforge::kernel;
use warpforge::prelude::*;

/// `y[i] = relu(a * x[i] + b)`: one read and one write of 4 bytes per element, 3 FLOPs, so
/// memory bound (0.375 FLOP/byte). Tunable: the block size.
#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256, 512]))]
pub fn affine_relu<const BLOCK: u32>(x: &[f32], y: &mut [f32], a: f32, b: f32, n: u32) {
    let i = block_idx_x() * BLOCK + thread_idx_x();
    if i < n {
        y[i] = (a * x[i] + b).max(0.0);
    }
}

/// The host reference the kernel must match.
fn reference(x: &[f32], a: f32, b: f32) -> Vec<f32> {
    x.iter().map(|&v| (a * v + b).max(0.0)).collect()
}

/// Runs the kernel with `config` on `device` and returns `y`.
fn run(
    device: &Device,
    config: &Config,
    x: &[f32],
    a: f32,
    b: f32,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let n = x.len() as u32;
    let input = device.upload(x)?;
    let mut output = device.zeros::<f32>(x.len())?;
    let block = config.get("BLOCK").ok_or("the config has no BLOCK")? as u32;
    affine_relu::launch(
        device,
        config,
        LaunchDims::cover(n, block),
        &input,
        &mut output,
        a,
        b,
        n,
    )?;
    Ok(device.download(&output)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = (1.5f32, -2.0f32);
    let x: Vec<f32> = (0..10_000).map(|i| (i % 97) as f32 * 0.25 - 8.0).collect();
    let want = reference(&x, a, b);

    // 1. Check every config of the space on the interpreter against the reference.
    let cpu = Device::cpu();
    for config in affine_relu::space().configs() {
        let got = run(&cpu, &config, &x, a, b)?;
        if got != want {
            return Err(format!("{config}: the interpreter disagrees with the reference").into());
        }
    }
    println!(
        "interpreter: all {} configs match the host reference",
        affine_relu::space().configs().len()
    );

    // 2. The CUDA C of the default specialization.
    let config = affine_relu::default_config();
    let typed = resolve::specialize(affine_relu::def(), &config)?;
    let source = codegen::cuda_source(&typed);
    println!("CUDA C ({config}): {} lines", source.lines().count());

    // 3. NVRTC, when installed (scripts/setup-nvrtc, or a CUDA toolkit).
    match nvrtc::compile(&source, Arch::SM80, &CompileOptions::default()) {
        Ok(compiled) => println!(
            "NVRTC {:?} for sm_80: {} bytes of cubin, {} registers",
            compiled.nvrtc_version,
            compiled.cubin.len(),
            compiled.resources.registers
        ),
        Err(e) => println!("NVRTC skipped: {e}"),
    }

    // 4. A GPU launch, when there is one.
    match Device::cuda(0) {
        Ok(gpu) => {
            let got = run(&gpu, &config, &x, a, b)?;
            let exact = got == want;
            println!(
                "{}: {}",
                gpu.name(),
                if exact {
                    "matches the reference"
                } else {
                    "DIFFERS"
                }
            );
            if !exact {
                return Err("the GPU result differs from the reference".into());
            }
        }
        Err(e) => println!("GPU launch skipped: {e}"),
    }

    // 5. Tune the block size: time each config (here on the interpreter's wall clock; on a
    //    GPU the same loop with `Device::cuda` times real launches) and keep the fastest.
    let mut best: Option<(f64, Config)> = None;
    for config in affine_relu::space().configs() {
        let started = Instant::now();
        run(&cpu, &config, &x, a, b)?;
        let seconds = started.elapsed().as_secs_f64();
        println!("  {config}: {:.3} ms", seconds * 1e3);
        if best.as_ref().is_none_or(|(t, _)| seconds < *t) {
            best = Some((seconds, config));
        }
    }
    let (seconds, config) = best.ok_or("the space is empty")?;
    println!(
        "fastest on the interpreter: {config} ({:.3} ms)",
        seconds * 1e3
    );
    Ok(())
}
