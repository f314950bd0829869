//! The COAT kernels as library kernels. On the interpreter the kernels match [`reference`]
//! bit for bit (`kernels/tests/coat_*.rs` check that exactly); the tolerances here allow
//! for the GPU's `logf`/`exp2f`, which differ from the host's by an ulp or two and so can
//! move a code by one E4M3 step (at most 1/8 of its value) or `k` by 1/16.

use super::adamw::coat_adamw_step;
use super::dre::{coat_dre_dequantize, coat_dre_quantize};
use super::host::{codes_padded, group_dims, pad, quad_dims, Fp8AdamW};
use super::reference::{self, AdamW, DreTensor};
use super::GROUP;
use crate::check::Problem;
use crate::family::{register, Case, Kernel, LibraryKernel, ModelShape};
use crate::fp8::Fp8Type;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::F8E4M3;
use warpforge_dsl::{Buffer, Config, Device, Error, KernelDef};

/// Flat tensors: one element, a partial group, exactly one group, a partial last group.
pub fn problems() -> Vec<Problem> {
    Problem::sizes(&[1, 7, 128, 300, 1000])
}

/// Optimizer-state-like values over six decades, both signs, with an all-zero run (group 1
/// of the larger problems), an all-equal group (group 2) and scattered zeros.
pub fn inputs(problem: &Problem) -> Vec<f32> {
    let n = problem.dims[0];
    let mut rng = StdRng::seed_from_u64(n as u64 * 31 + 7);
    (0..n)
        .map(|i| match i / 128 {
            1 => 0.0,
            2 => 0.75,
            _ if i % 11 == 3 => 0.0,
            _ => {
                let mag = 10f32.powf(rng.random_range(-3.0..3.0));
                if rng.random_bool(0.5) {
                    mag
                } else {
                    -mag
                }
            }
        })
        .collect()
}

/// The three COAT kernels.
pub fn kernels() -> Vec<Kernel> {
    vec![
        register(DreQuantize),
        register(DreDequantize),
        register(AdamWStep),
    ]
}

/// One layer's parameters (COAT quantizes optimizer states tensor by tensor).
fn layer_problems(model: &ModelShape) -> Vec<Problem> {
    vec![Problem::new(
        "layer parameters",
        vec![model.layer_parameters()],
    )]
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A DRE tensor of `n` elements from device buffers: decoded codes, then the metadata.
fn download_dre(
    device: &Device,
    q: &Buffer<F8E4M3>,
    meta: &Buffer<f32>,
    n: usize,
) -> Result<DreTensor, Error> {
    let codes = device.download(q)?[..n].iter().map(|c| c.code()).collect();
    let mut meta = device.download(meta)?;
    meta.truncate(3 * n.div_ceil(GROUP));
    Ok(DreTensor { codes, meta })
}

/// One E4M3 step (1/8 of a value) or 1/16 on `k`.
const ONE_CODE_STEP: f64 = 0.125;

struct DreQuantize;

impl LibraryKernel for DreQuantize {
    fn def(&self) -> &'static KernelDef {
        coat_dre_quantize::def()
    }

    fn summary(&self) -> &'static str {
        "COAT dynamic range expansion: per-128 |x|^k then E4M3, (scale, k, c) per group"
    }

    fn problems(&self) -> Vec<Problem> {
        problems()
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        Ok(Box::new(DreQuantizeCase {
            n,
            x: device.upload(&pad(&inputs(problem)))?,
            q: device.zeros(n.div_ceil(4) * 4)?,
            meta: device.zeros(3 * n.div_ceil(GROUP).max(1))?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        reference::quantize(&inputs(problem)).flatten()
    }

    fn tolerance(&self, _problem: &Problem) -> f64 {
        ONE_CODE_STEP
    }

    fn model_problems(&self, model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        layer_problems(model)
    }
}

struct DreQuantizeCase {
    n: usize,
    x: Buffer<f32>,
    q: Buffer<F8E4M3>,
    meta: Buffer<f32>,
}

impl Case for DreQuantizeCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let dims = group_dims(config, self.n);
        let (x, q, meta) = (&self.x, &mut self.q, &mut self.meta);
        coat_dre_quantize::launch(device, config, dims, x, q, meta, u32_of(self.n))
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(download_dre(device, &self.q, &self.meta, self.n)?.flatten())
    }
}

struct DreDequantize;

impl LibraryKernel for DreDequantize {
    fn def(&self) -> &'static KernelDef {
        coat_dre_dequantize::def()
    }

    fn summary(&self) -> &'static str {
        "inverse of COAT's DRE: decode, rescale, raise to 1/k, restore the sign"
    }

    fn problems(&self) -> Vec<Problem> {
        problems()
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        let q = reference::quantize(&inputs(problem));
        Ok(Box::new(DreDequantizeCase {
            n,
            q: device.upload(&codes_padded(&q))?,
            meta: device.upload(&q.meta)?,
            y: device.zeros(n.div_ceil(4) * 4)?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        reference::dequantize(&reference::quantize(&inputs(problem)))
    }

    /// A few ulps of `logf`/`exp2f`, amplified by `1/k <= 16`.
    fn tolerance(&self, _problem: &Problem) -> f64 {
        2e-5
    }

    fn model_problems(&self, model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        layer_problems(model)
    }
}

struct DreDequantizeCase {
    n: usize,
    q: Buffer<F8E4M3>,
    meta: Buffer<f32>,
    y: Buffer<f32>,
}

impl Case for DreDequantizeCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let dims = quad_dims(config, self.n);
        let (q, meta, y) = (&self.q, &self.meta, &mut self.y);
        coat_dre_dequantize::launch(device, config, dims, q, meta, y, u32_of(self.n))
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut y = device.download(&self.y)?;
        y.truncate(self.n);
        Ok(y)
    }
}

/// The step a case's launch takes: the first [`STEPS`] − 1 run on the host reference, so
/// the launched step starts from non-zero moments.
const STEPS: u32 = 3;

/// Gradients of step `t`: the inputs, rescaled and shifted per step.
fn gradient(p: &Problem, t: u32) -> Vec<f32> {
    inputs(p)
        .iter()
        .enumerate()
        .map(|(i, g)| g * 1e-2 * (1.0 + ((i as u32 + t) % 3) as f32))
        .collect()
}

fn initial_weights(p: &Problem) -> Vec<f32> {
    (0..p.dims[0])
        .map(|i| (i % 17) as f32 * 0.1 - 0.8)
        .collect()
}

/// Weights and moments after `steps` reference steps from zero moments.
fn reference_state(p: &Problem, steps: u32) -> (Vec<f32>, DreTensor, DreTensor) {
    let mut w = initial_weights(p);
    let n = w.len();
    let (mut m, mut v) = (DreTensor::zeros(n), DreTensor::zeros(n));
    for t in 1..=steps {
        AdamW::default().step_fp8(&mut w, &gradient(p, t), &mut m, &mut v, t);
    }
    (w, m, v)
}

fn adamw_flatten(mut w: Vec<f32>, m: &DreTensor, v: &DreTensor) -> Vec<f32> {
    w.extend(m.flatten());
    w.extend(v.flatten());
    w
}

struct AdamWStep;

impl LibraryKernel for AdamWStep {
    fn def(&self) -> &'static KernelDef {
        coat_adamw_step::def()
    }

    fn summary(&self) -> &'static str {
        "fused AdamW step on DRE-expanded E4M3 moments with f32 master weights"
    }

    fn problems(&self) -> Vec<Problem> {
        problems()
    }

    fn rank(&self) -> usize {
        1
    }

    /// The state after [`STEPS`] − 1 reference steps; a launch takes step [`STEPS`].
    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let start = reference_state(problem, STEPS - 1);
        let state = upload_state(device, &start)?;
        Ok(Box::new(AdamWCase {
            start,
            state,
            g: device.upload(&pad(&gradient(problem, STEPS)))?,
        }))
    }

    /// Weights, then m and v (decoded codes and metadata), after [`STEPS`] steps.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (w, m, v) = reference_state(problem, STEPS);
        adamw_flatten(w, &m, &v)
    }

    fn tolerance(&self, _problem: &Problem) -> f64 {
        ONE_CODE_STEP
    }

    fn model_problems(&self, model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        layer_problems(model)
    }
}

fn upload_state(
    device: &Device,
    (w, m, v): &(Vec<f32>, DreTensor, DreTensor),
) -> Result<Fp8AdamW, Error> {
    Fp8AdamW::with_state(device, AdamW::default(), w, (m, v), STEPS - 1)
}

struct AdamWCase {
    start: (Vec<f32>, DreTensor, DreTensor),
    state: Fp8AdamW,
    g: Buffer<f32>,
}

impl Case for AdamWCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        self.state.step_on(device, config, &self.g)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (m, v) = self.state.moments(device)?;
        Ok(adamw_flatten(self.state.weights(device)?, &m, &v))
    }

    /// The step updates weights and moments in place.
    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.state = upload_state(device, &self.start)?;
        Ok(())
    }
}
