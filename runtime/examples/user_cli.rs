//! A program of your own with the `warpforge` verbs for its own kernels: register them
//! and `warpforge_runtime::cli::user::main` gives `kernels`, `emit`, `compile` (`--json`,
//! `--out DIR` to export for a C++ engine) and `check` over them.
//!
//! ```sh
//! cargo run --release -p warpforge-runtime --example user_cli -- check --all --backend cpu
//! cargo run --release -p warpforge-runtime --example user_cli -- compile scale_shift --out /tmp/export
//! ```

use std::process::ExitCode;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Buffer, Device, Error, KernelDef, LaunchDims};
use warpforge_kernels::check::Problem;
use warpforge_kernels::family::Lcg;
use warpforge_kernels::{Case, Kernel, LibraryKernel};
use warpforge_macros::kernel;

/// `y[i] = a * x[i] + b`: 8 bytes moved and 2 FLOPs per element, memory bound.
/// Tunable: the block size.
#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256]))]
pub fn scale_shift<const BLOCK: u32>(x: &[f32], y: &mut [f32], a: f32, b: f32, n: u32) {
    let i = block_idx_x() * BLOCK + thread_idx_x();
    if i < n {
        y[i] = a * x[i] + b;
    }
}

const A: f32 = 1.5;
const B: f32 = -0.25;

/// How the command line checks `scale_shift`: its problems, inputs and host reference.
pub struct ScaleShift;

fn inputs(n: usize) -> Vec<f32> {
    Lcg::for_dims(&[n], 7).floats(n, 8.0)
}

impl LibraryKernel for ScaleShift {
    fn def(&self) -> &'static KernelDef {
        scale_shift::def()
    }

    fn summary(&self) -> &'static str {
        "y = a·x + b (f32), memory-bound — a user's kernel"
    }

    fn problems(&self) -> Vec<Problem> {
        Problem::sizes(&[1, 100, 1000])
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        Ok(Box::new(Buffers {
            x: device.upload(&inputs(n))?,
            y: device.zeros(n)?,
        }))
    }

    /// Exact: `a * x + b` rounds the same on the host (no FMA contraction in either).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        inputs(problem.dims[0]).iter().map(|&x| A * x + B).collect()
    }

    fn tolerance(&self, _problem: &Problem) -> f64 {
        1e-6
    }
}

struct Buffers {
    x: Buffer<f32>,
    y: Buffer<f32>,
}

impl Case for Buffers {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let n = self.x.len() as u32;
        let dims = LaunchDims::cover(n, config.get("BLOCK").unwrap_or(128) as u32);
        scale_shift::launch(device, config, dims, &self.x, &mut self.y, A, B, n)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.y)?)
    }
}

/// The program's kernels, as the command line takes them.
pub fn kernels() -> Vec<Kernel> {
    vec![&ScaleShift]
}

#[allow(dead_code)]
fn main() -> ExitCode {
    warpforge_runtime::cli::user::main(&kernels())
}
