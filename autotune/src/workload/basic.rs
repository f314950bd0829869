//! The f32 kernels: gemm, softmax, vector_add, sum_partials.

use super::{tunable, Lcg, Problem};
use crate::bench::Tolerance;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Buffer, Config, Device, LaunchDims};
use warpforge_kernels::{gemm, reduce, softmax, vector_add};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Gemm { m: u32, n: u32, k: u32 },
    Softmax { rows: u32, cols: u32 },
    VectorAdd { n: u32 },
    SumPartials { n: u32 },
}

/// f32 inputs and one f32 output.
struct Basic {
    kind: Kind,
    inputs: Vec<Buffer<f32>>,
    output: Buffer<f32>,
    tolerance: Tolerance,
}

/// The workload of `name` (one of the f32 kernels) at dimensions `d`.
pub(super) fn build(
    device: &Device,
    name: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let elems = |parts: &[u32]| parts.iter().map(|&p| p as usize).product::<usize>();
    let (kind, inputs, out_len, tolerance) = match name {
        "gemm" => (
            Kind::Gemm {
                m: d[0],
                n: d[1],
                k: d[2],
            },
            vec![
                rng.integers(elems(&[d[0], d[2]]), 4),
                rng.integers(elems(&[d[2], d[1]]), 4),
            ],
            elems(&[d[0], d[1]]),
            Tolerance::EXACT,
        ),
        "softmax" => (
            Kind::Softmax {
                rows: d[0],
                cols: d[1],
            },
            vec![rng.floats(elems(d), 8.0)],
            elems(d),
            Tolerance {
                rel: 1e-4,
                abs: 1e-12,
            },
        ),
        "vector_add" => (
            Kind::VectorAdd { n: d[0] },
            vec![
                rng.floats(d[0] as usize, 4.0),
                rng.floats(d[0] as usize, 4.0),
            ],
            d[0] as usize,
            Tolerance::EXACT,
        ),
        _ => (
            Kind::SumPartials { n: d[0] },
            vec![rng.floats(d[0] as usize, 1.0)],
            // Enough partials for the smallest BLOCK × ITEMS (128).
            (d[0] as usize).div_ceil(128),
            // Tree sums in different orders: log2(n)·ε·Σ|x|, Σ|x| ≈ n/2.
            Tolerance {
                rel: 0.0,
                abs: 1e-6 * d[0] as f64,
            },
        ),
    };
    let inputs = inputs
        .iter()
        .map(|data| device.upload(data))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(Basic {
        kind,
        inputs,
        output: device.zeros(out_len)?,
        tolerance,
    }))
}

impl Problem for Basic {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let get = |name: &str| tunable(config, name);
        let out = &mut self.output;
        let ins = &self.inputs;
        match self.kind {
            Kind::Gemm { m, n, k } => gemm::gemm::launch(
                device,
                config,
                gemm::dims(config, m, n),
                &ins[0],
                &ins[1],
                out,
                m,
                n,
                k,
            ),
            Kind::Softmax { rows, cols } => softmax::softmax::launch(
                device,
                config,
                LaunchDims::linear(rows, get("BLOCK")),
                &ins[0],
                out,
                cols,
            ),
            Kind::VectorAdd { n } => vector_add::vector_add::launch(
                device,
                config,
                vector_add::dims(config, n),
                &ins[0],
                &ins[1],
                out,
                n,
            ),
            Kind::SumPartials { n } => {
                let dims = LaunchDims::cover(n, get("BLOCK") * get("ITEMS"));
                let dims = LaunchDims::linear(dims.grid[0], get("BLOCK"));
                reduce::sum_partials::launch(device, config, dims, &ins[0], out, n)
            }
        }
    }

    /// A reduction's partials (whose number depends on the config) become their sum.
    fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, DeviceError> {
        let out = device.download(&self.output)?;
        Ok(match self.kind {
            Kind::SumPartials { n } => {
                let per_block = tunable(config, "BLOCK") * tunable(config, "ITEMS");
                let blocks = (n as usize).div_ceil(per_block as usize).min(out.len());
                vec![out[..blocks].iter().map(|&x| x as f64).sum::<f64>() as f32]
            }
            _ => out,
        })
    }

    fn tolerance(&self) -> Tolerance {
        self.tolerance
    }
}
