//! COAT's kernels: DRE quantization and dequantization of a flat tensor, and the FP8
//! AdamW step (weights and DRE-quantized moments updated in place).
//!
//! Each 128-element group is handled by one warp with the same instructions whatever the
//! config (`BLOCK` only changes how many groups a block holds), so outputs are compared
//! exactly. The AdamW step updates its state in place: the workload restores weights and
//! moments before each checked run (timed runs keep stepping, which costs the same).

use super::{Lcg, Problem};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::F8E4M3;
use warpforge_dsl::{Buffer, Config, Device, Element};
use warpforge_kernels::fp8::coat::adamw::coat_adamw_step;
use warpforge_kernels::fp8::coat::dre::{coat_dre_dequantize, coat_dre_quantize};
use warpforge_kernels::fp8::coat::reference::{AdamW, DreTensor};
use warpforge_kernels::fp8::coat::GROUP;
use warpforge_kernels::fp8::host::{pad_rows, padded_ld};
use warpforge_kernels::fp8::Fp8Type;

fn groups(n: usize) -> usize {
    n.div_ceil(GROUP)
}

/// Optimizer-state-like values: magnitudes from 1e-6 to 1e-2 in each group, either sign.
pub(super) fn states(n: usize, rng: &mut Lcg) -> Vec<f32> {
    (0..n)
        .map(|i| rng.float(1.0) * 10f32.powi(-2 - (i % 5) as i32))
        .collect()
}

/// A DRE-quantized state with random finite codes (non-negative where `positive`, as a
/// second moment) and valid group parameters: `scale` up to 2^-8, `k` from 1/2 to 2,
/// `c` from 1e-5 to 1e-3.
pub(super) fn random_state(n: usize, positive: bool, rng: &mut Lcg) -> DreTensor {
    let codes = (0..n)
        .map(|_| {
            let r = rng.next();
            let sign = if !positive && r & (1 << 20) != 0 {
                0x80
            } else {
                0
            };
            (r % 0x78) as u8 | sign
        })
        .collect();
    let meta = (0..groups(n))
        .flat_map(|_| {
            let scale = 2f32.powi(-8 - (rng.next() % 8) as i32);
            let k = [0.5, 1.0, 1.5, 2.0][(rng.next() % 4) as usize];
            let c = 10f32.powi(-3 - (rng.next() % 3) as i32);
            [scale, k, c]
        })
        .collect();
    DreTensor { codes, meta }
}

/// The AdamW workload's initial state: weights, gradient, moments.
pub(super) struct AdamWState {
    pub w: Vec<f32>,
    pub g: Vec<f32>,
    pub m: DreTensor,
    pub v: DreTensor,
}

/// The step the AdamW workload takes (its bias corrections).
pub(super) const ADAMW_STEP: u32 = 10;

pub(super) fn adamw_state(n: usize, rng: &mut Lcg) -> AdamWState {
    AdamWState {
        w: rng.floats(n, 1.0),
        g: rng.floats(n, 1e-2),
        m: random_state(n, false, rng),
        v: random_state(n, true, rng),
    }
}

pub(super) fn build(
    device: &Device,
    name: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let n = d[0] as usize;
    Ok(match name {
        "coat_dre_quantize" => Box::new(DreQuantize {
            n: d[0],
            x: device.upload(&pad(&states(n, rng)))?,
            q: device.zeros(padded_ld(n))?,
            meta: device.zeros(3 * groups(n))?,
        }),
        "coat_dre_dequantize" => {
            let q = random_state(n, false, rng);
            Box::new(DreDequantize {
                n: d[0],
                q: device.upload(&codes_padded(&q.codes))?,
                meta: device.upload(&q.meta)?,
                y: device.zeros(padded_ld(n))?,
            })
        }
        _ => Box::new(AdamWStep::new(device, d[0], adamw_state(n, rng))?),
    })
}

fn pad(x: &[f32]) -> Vec<f32> {
    pad_rows(x, 1, x.len(), padded_ld(x.len()))
}

fn codes_padded(codes: &[u8]) -> Vec<F8E4M3> {
    let mut out = vec![<F8E4M3 as Element>::from_bits(0); padded_ld(codes.len())];
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = <F8E4M3 as Element>::from_bits(c as u64);
    }
    out
}

/// A DRE tensor of `n` elements from device buffers, flattened as the library compares it
/// (decoded codes, then the metadata).
fn flatten(
    device: &Device,
    q: &Buffer<F8E4M3>,
    meta: &Buffer<f32>,
    n: usize,
) -> Result<Vec<f32>, DeviceError> {
    let codes = device.download(q)?[..n].iter().map(|c| c.code()).collect();
    let mut meta = device.download(meta)?;
    meta.truncate(3 * groups(n));
    Ok(DreTensor { codes, meta }.flatten())
}

struct DreQuantize {
    n: u32,
    x: Buffer<f32>,
    q: Buffer<F8E4M3>,
    meta: Buffer<f32>,
}

impl Problem for DreQuantize {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let dims = adapter::group_dims(config, self.n);
        let (x, q, meta) = (&self.x, &mut self.q, &mut self.meta);
        coat_dre_quantize::launch(device, config, dims, x, q, meta, self.n)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        flatten(device, &self.q, &self.meta, self.n as usize)
    }
}

struct DreDequantize {
    n: u32,
    q: Buffer<F8E4M3>,
    meta: Buffer<f32>,
    y: Buffer<f32>,
}

impl Problem for DreDequantize {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let dims = adapter::quad_dims(config, self.n);
        let (q, meta, y) = (&self.q, &self.meta, &mut self.y);
        coat_dre_dequantize::launch(device, config, dims, q, meta, y, self.n)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        let mut y = device.download(&self.y)?;
        y.truncate(self.n as usize);
        Ok(y)
    }
}

/// The optimizer state on the device.
struct Moments {
    m: Buffer<F8E4M3>,
    m_meta: Buffer<f32>,
    v: Buffer<F8E4M3>,
    v_meta: Buffer<f32>,
}

struct AdamWStep {
    n: u32,
    initial: AdamWState,
    w: Buffer<f32>,
    g: Buffer<f32>,
    state: Moments,
}

impl AdamWStep {
    fn new(device: &Device, n: u32, initial: AdamWState) -> Result<AdamWStep, DeviceError> {
        Ok(AdamWStep {
            n,
            w: device.upload(&pad(&initial.w))?,
            g: device.upload(&pad(&initial.g))?,
            state: Self::upload_moments(device, &initial)?,
            initial,
        })
    }

    fn upload_moments(device: &Device, s: &AdamWState) -> Result<Moments, DeviceError> {
        Ok(Moments {
            m: device.upload(&codes_padded(&s.m.codes))?,
            m_meta: device.upload(&s.m.meta)?,
            v: device.upload(&codes_padded(&s.v.codes))?,
            v_meta: device.upload(&s.v.meta)?,
        })
    }
}

impl Problem for AdamWStep {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        adapter::adamw_step(
            device,
            config,
            (&mut self.w, &self.g),
            &mut self.state,
            self.n,
        )
    }

    /// The weights, then m and v (decoded codes and metadata).
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        let n = self.n as usize;
        let mut out = device.download(&self.w)?;
        out.truncate(n);
        let s = &self.state;
        out.extend(flatten(device, &s.m, &s.m_meta, n)?);
        out.extend(flatten(device, &s.v, &s.v_meta, n)?);
        Ok(out)
    }

    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), DeviceError> {
        self.w = device.upload(&pad(&self.initial.w))?;
        self.state = Self::upload_moments(device, &self.initial)?;
        Ok(())
    }
}

/// The adapter: launch grids and parameter lists of the COAT kernels.
mod adapter {
    use super::{coat_adamw_step, AdamW, Moments, ADAMW_STEP};
    use crate::workload::tunable;
    use warpforge_dsl::{Buffer, Config, Device, Error, LaunchDims};
    use warpforge_kernels::fp8::coat::GROUP;

    /// One warp per 128-element group.
    pub fn group_dims(config: &Config, n: u32) -> LaunchDims {
        let block = tunable(config, "BLOCK");
        let groups = (n as usize).div_ceil(GROUP).max(1) as u32;
        LaunchDims::linear(groups.div_ceil((block / 32).max(1)), block)
    }

    /// `BLOCK × ITEMS` four-element items per block.
    pub fn quad_dims(config: &Config, n: u32) -> LaunchDims {
        let block = tunable(config, "BLOCK");
        let quads = n.div_ceil(4);
        LaunchDims::linear(
            quads.div_ceil(block * tunable(config, "ITEMS")).max(1),
            block,
        )
    }

    /// One AdamW step (step [`ADAMW_STEP`], default hyper-parameters).
    pub fn adamw_step(
        device: &Device,
        config: &Config,
        (w, g): (&mut Buffer<f32>, &Buffer<f32>),
        s: &mut Moments,
        n: u32,
    ) -> Result<(), Error> {
        let h = AdamW::default();
        let (bc1, bc2) = h.bias_corrections(ADAMW_STEP);
        coat_adamw_step::launch(
            device,
            config,
            group_dims(config, n),
            w,
            g,
            &mut s.m,
            &mut s.m_meta,
            &mut s.v,
            &mut s.v_meta,
            n,
            h.lr,
            h.beta1,
            h.beta2,
            h.eps,
            h.weight_decay,
            bc1,
            bc2,
        )
    }
}
