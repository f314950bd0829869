//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`): `sum_sq_partials` writes
//! each block's partial `Σg²` of one f32 gradient; the host adds the partials of every
//! tensor in a fixed order (deterministic, f64), takes the square root, and when the norm
//! exceeds the limit `scale_f32` multiplies every gradient by `limit / (norm + 1e-6)`.
//!
//! The host reads the partials back, one small copy per step (the training loop reads the
//! loss at the same point anyway), rather than keeping the factor on the device.
//!
//! Roofline: memory-bound: `sum_sq_partials` reads 4 bytes per element, `scale_f32` reads
//! and writes 8. Tunables: `BLOCK` ∈ {128, 256, 512}, `VECS` ∈ {1, 2, 4} (`Vec4`s per
//! thread), default 256 × 4; lengths are multiples of 4.

use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use crate::norm::sum_sq4;
use crate::reduce::block_sum;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Error, KernelDef};
use warpforge_macros::kernel;

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 4))]
pub fn sum_sq_partials<const BLOCK: u32, const VECS: u32>(
    x: &[Vec4<f32>],
    partials: &mut [f32],
    quads: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    let mut acc = 0.0f32;
    #[unroll]
    for j in 0..VECS {
        let i = first + j * BLOCK;
        if i < quads {
            acc += sum_sq4(x[i]);
        }
    }
    let total = block_sum::<BLOCK>(acc, &mut scratch);
    if thread_idx_x() == 0 {
        partials[block_idx_x()] = total;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 4))]
pub fn scale_f32<const BLOCK: u32, const VECS: u32>(x: &mut [Vec4<f32>], quads: u32, factor: f32) {
    let first = block_idx_x() * (BLOCK * VECS) + thread_idx_x();
    #[unroll]
    for j in 0..VECS {
        let i = first + j * BLOCK;
        if i < quads {
            let v = x[i];
            x[i] = Vec4::new(v.x * factor, v.y * factor, v.z * factor, v.w * factor);
        }
    }
}

/// One block per `BLOCK·VECS` `Vec4`s.
fn dims(config: &Config, quads: u32) -> LaunchDims {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or).max(1) as u32;
    let per_block = get("BLOCK", 256) * get("VECS", 4);
    LaunchDims::linear(quads.div_ceil(per_block).max(1), get("BLOCK", 256))
}

fn quads_of(def: &KernelDef, len: usize) -> Result<u32, Error> {
    if len == 0 || !len.is_multiple_of(4) || len / 4 > u32::MAX as usize {
        return Err(Error::Device(
            warpforge_dsl::backend::DeviceError::ArgMismatch {
                kernel: def.name.to_string(),
                param: "x".into(),
                expected: "a positive multiple of 4 elements".into(),
                got: len.to_string(),
            },
        ));
    }
    Ok((len / 4) as u32)
}

/// `Σx²` of `x` (a multiple of 4 elements): the block partials summed in f64 in order.
pub fn sum_squares(device: &Device, x: &Buffer<f32>) -> Result<f64, Error> {
    let def = sum_sq_partials::def();
    let config = def.space.default_config();
    let quads = quads_of(def, x.len())?;
    let dims = dims(&config, quads);
    let mut partials = device.zeros::<f32>(dims.grid[0] as usize)?;
    let mut args = [
        Arg::slice(x),
        Arg::slice_mut(&mut partials),
        Arg::value(quads),
    ];
    device.launch(def, &config, dims, &mut args)?;
    Ok(device.download(&partials)?.iter().map(|&p| p as f64).sum())
}

/// `x *= factor` in place.
pub fn launch_scale(device: &Device, x: &mut Buffer<f32>, factor: f32) -> Result<(), Error> {
    let def = scale_f32::def();
    let config = def.space.default_config();
    let quads = quads_of(def, x.len())?;
    let mut args = [Arg::slice_mut(x), Arg::value(quads), Arg::value(factor)];
    device.launch(def, &config, dims(&config, quads), &mut args)
}

/// Clips the gradients to a global L2 norm of `limit` (no-op below it); returns the norm
/// before clipping.
pub fn clip_global_norm(
    device: &Device,
    grads: &mut [&mut Buffer<f32>],
    limit: f32,
) -> Result<f64, Error> {
    let mut total = 0.0f64;
    for g in grads.iter() {
        total += sum_squares(device, g)?;
    }
    let norm = total.sqrt();
    if norm > limit as f64 {
        let factor = (limit as f64 / (norm + 1e-6)) as f32;
        for g in grads.iter_mut() {
            launch_scale(device, g, factor)?;
        }
    }
    Ok(norm)
}

/// The two kernels in the library.
pub fn kernels() -> Vec<Kernel> {
    vec![
        register(Clip { scale: false }),
        register(Clip { scale: true }),
    ]
}

struct Clip {
    scale: bool,
}

/// The factor every scale case applies.
const FACTOR: f32 = 0.3;

fn inputs(n: usize) -> Vec<f32> {
    Lcg::for_dims(&[n], 23).floats(n, 2.0)
}

impl LibraryKernel for Clip {
    fn def(&self) -> &'static KernelDef {
        match self.scale {
            false => sum_sq_partials::def(),
            true => scale_f32::def(),
        }
    }

    fn summary(&self) -> &'static str {
        match self.scale {
            false => "gradient clipping: per-block partial sums of squares of an f32 gradient",
            true => "gradient clipping: x *= factor in place (f32, Vec4 accesses)",
        }
    }

    fn problems(&self) -> Vec<Problem> {
        Problem::sizes(&[4, 1000, 9412, 70_000])
    }

    fn rank(&self) -> usize {
        1
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        match problem.dims.as_slice() {
            [n] if *n > 0 && n % 4 == 0 => Ok(()),
            dims => Err(format!("a length, a positive multiple of 4; got {dims:?}")),
        }
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let x = inputs(problem.dims[0]);
        Ok(Box::new(ClipCase {
            scale: self.scale,
            buf: device.upload(&x)?,
            partials: device.zeros(problem.dims[0])?,
            start: x,
        }))
    }

    /// The sum of squares (f64, rounded once), or every element scaled (one f32 product).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let x = inputs(problem.dims[0]);
        match self.scale {
            false => vec![x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32],
            true => x.iter().map(|&v| v * FACTOR).collect(),
        }
    }

    /// A tree sum of n squares ≤ 4: log2(n)·u relative; the scale is exact.
    fn tolerance(&self, problem: &Problem) -> f64 {
        match self.scale {
            false => 1e-6 * (problem.dims[0] as f64).log2().max(1.0),
            true => 0.0,
        }
    }

    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = 2.0 * self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let per = if self.scale { 8 } else { 4 };
        Some(per * problem.dims[0] as u64)
    }

    /// A decoder layer's largest gradient (gate and up projections together).
    fn model_problems(&self, model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        let n = 2 * model.intermediate * model.hidden;
        vec![Problem::new("gate/up gradient", vec![n])]
    }
}

struct ClipCase {
    scale: bool,
    buf: Buffer<f32>,
    partials: Buffer<f32>,
    start: Vec<f32>,
}

impl Case for ClipCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let quads = (self.buf.len() / 4) as u32;
        let dims = dims(config, quads);
        match self.scale {
            false => {
                let mut args = [
                    Arg::slice(&self.buf),
                    Arg::slice_mut(&mut self.partials),
                    Arg::value(quads),
                ];
                device.launch(sum_sq_partials::def(), config, dims, &mut args)
            }
            true => {
                let mut args = [
                    Arg::slice_mut(&mut self.buf),
                    Arg::value(quads),
                    Arg::value(FACTOR),
                ];
                device.launch(scale_f32::def(), config, dims, &mut args)
            }
        }
    }

    fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, Error> {
        if self.scale {
            return device.download(&self.buf).map_err(Error::from);
        }
        let blocks = dims(config, (self.buf.len() / 4) as u32).grid[0] as usize;
        let partials = device.download(&self.partials)?;
        Ok(vec![
            partials[..blocks].iter().map(|&p| p as f64).sum::<f64>() as f32,
        ])
    }

    fn accumulates(&self) -> bool {
        self.scale
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.buf = device.upload(&self.start)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_scales_to_the_limit_and_leaves_small_gradients_alone() {
        let device = Device::cpu();
        let a: Vec<f32> = vec![3.0, 0.0, 0.0, 0.0];
        let b: Vec<f32> = vec![0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let (mut ga, mut gb) = (device.upload(&a).unwrap(), device.upload(&b).unwrap());
        let norm = clip_global_norm(&device, &mut [&mut ga, &mut gb], 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let (ga, gb) = (device.download(&ga).unwrap(), device.download(&gb).unwrap());
        assert!((ga[0] - 0.6).abs() < 1e-6 && (gb[1] - 0.8).abs() < 1e-6);
        let mut small = device.upload(&a).unwrap();
        assert_eq!(
            clip_global_norm(&device, &mut [&mut small], 10.0).unwrap(),
            3.0
        );
        assert_eq!(device.download(&small).unwrap(), a);
    }
}
