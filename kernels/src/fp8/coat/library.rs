//! The COAT kernels as library entries. On the interpreter the kernels match [`reference`]
//! bit for bit (`kernels/tests/coat_*.rs` check that exactly); the tolerances here allow
//! for the GPU's `logf`/`exp2f`, which differ from the host's by an ulp or two and so can
//! move a code by one E4M3 step (at most 1/8 of its value) or `k` by 1/16.

use super::host::{self, Fp8AdamW};
use super::reference::{self, AdamW, DreTensor};
use crate::check::Problem;
use crate::LibraryKernel;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::{Config, Device, Error};

/// Flat tensors: one element, a partial group, exactly one group, a partial last group.
pub fn problems() -> Vec<Problem> {
    [1usize, 7, 128, 300, 1000]
        .iter()
        .map(|&n| Problem::new(format!("n={n}"), vec![n]))
        .collect()
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

fn quantize_output(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    Ok(host::dre_quantize(d, c, &inputs(p))?.flatten())
}

fn quantize_expected(p: &Problem) -> Vec<f32> {
    reference::quantize(&inputs(p)).flatten()
}

fn dequantize_output(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    host::dre_dequantize(d, c, &reference::quantize(&inputs(p)))
}

fn dequantize_expected(p: &Problem) -> Vec<f32> {
    reference::dequantize(&reference::quantize(&inputs(p)))
}

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

/// Weights, then m and v (decoded codes and metadata), after [`STEPS`] steps.
fn adamw_output(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let mut opt = Fp8AdamW::new(d, AdamW::default(), &initial_weights(p))?;
    for t in 1..=STEPS {
        opt.step(d, c, &gradient(p, t))?;
    }
    let (m, v) = opt.moments(d)?;
    Ok(adamw_flatten(opt.weights(d)?, &m, &v))
}

fn adamw_expected(p: &Problem) -> Vec<f32> {
    let mut w = initial_weights(p);
    let n = w.len();
    let (mut m, mut v) = (DreTensor::zeros(n), DreTensor::zeros(n));
    for t in 1..=STEPS {
        AdamW::default().step_fp8(&mut w, &gradient(p, t), &mut m, &mut v, t);
    }
    adamw_flatten(w, &m, &v)
}

fn adamw_flatten(mut w: Vec<f32>, m: &DreTensor, v: &DreTensor) -> Vec<f32> {
    w.extend(m.flatten());
    w.extend(v.flatten());
    w
}

/// One E4M3 step (1/8 of a value) or 1/16 on `k`.
fn one_code_step(_: &Problem) -> f64 {
    0.125
}

/// A few ulps of `logf`/`exp2f`, amplified by `1/k <= 16`.
fn decode_ulps(_: &Problem) -> f64 {
    2e-5
}

/// The COAT kernels' library entries.
pub fn entries() -> Vec<LibraryKernel> {
    vec![
        LibraryKernel {
            name: "coat_dre_quantize",
            summary:
                "COAT dynamic range expansion: per-128 |x|^k then E4M3, (scale, k, c) per group",
            def: super::dre::coat_dre_quantize::def,
            problems,
            output: quantize_output,
            expected: quantize_expected,
            tolerance: one_code_step,
        },
        LibraryKernel {
            name: "coat_dre_dequantize",
            summary: "inverse of COAT's DRE: decode, rescale, raise to 1/k, restore the sign",
            def: super::dre::coat_dre_dequantize::def,
            problems,
            output: dequantize_output,
            expected: dequantize_expected,
            tolerance: decode_ulps,
        },
        LibraryKernel {
            name: "coat_adamw_step",
            summary: "fused AdamW step on DRE-expanded E4M3 moments with f32 master weights",
            def: super::adamw::coat_adamw_step::def,
            problems,
            output: adamw_output,
            expected: adamw_expected,
            tolerance: one_code_step,
        },
    ]
}
