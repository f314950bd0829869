//! Running the COAT kernels from host slices: padding to a multiple of 4 elements,
//! launching, and returning dense codes and metadata comparable with [`reference`].
//! Missing tunables fall back to the kernel's defaults.
//!
//! [`reference`]: super::reference

use super::adamw::coat_adamw_step;
use super::dre::{coat_dre_dequantize, coat_dre_quantize};
use super::reference::{AdamW, DreTensor};
use super::GROUP;
use crate::family::check_len;
use crate::fp8::host::{complete, pad_rows, padded_ld};
use crate::fp8::Fp8Type;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, Error};

fn u32_of(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| {
        Error::Device(DeviceError::ArgMismatch {
            kernel: "coat".into(),
            param: "n".into(),
            expected: "at most 2^32-1 elements".into(),
            got: n.to_string(),
        })
    })
}

fn block_of(config: &Config, name: &str) -> u32 {
    config.get(name).unwrap_or(128) as u32
}

/// One warp per group.
pub fn group_dims(config: &Config, n: usize) -> LaunchDims {
    let block = block_of(config, "BLOCK");
    let groups = n.div_ceil(GROUP).max(1);
    let per_block = (block / 32) as usize;
    LaunchDims::linear(groups.div_ceil(per_block) as u32, block)
}

/// `BLOCK × ITEMS` four-element items per block, covering `n` padded to a multiple of 4.
pub fn quad_dims(config: &Config, n: usize) -> LaunchDims {
    let per_block = block_of(config, "BLOCK") * config.get("ITEMS").unwrap_or(1) as u32;
    let grid = (padded_ld(n) / 4).div_ceil(per_block as usize).max(1) as u32;
    LaunchDims::linear(grid, block_of(config, "BLOCK"))
}

/// `x` padded with zeros to a multiple of 4 elements.
pub fn pad(x: &[f32]) -> Vec<f32> {
    pad_rows(x, 1, x.len(), padded_ld(x.len()))
}

pub fn codes_padded(q: &DreTensor) -> Vec<F8E4M3> {
    let mut out = vec![<F8E4M3 as Element>::from_bits(0); padded_ld(q.len())];
    for (o, &c) in out.iter_mut().zip(&q.codes) {
        *o = <F8E4M3 as Element>::from_bits(c as u64);
    }
    out
}

fn codes_of(q: &[F8E4M3], n: usize) -> Vec<u8> {
    q[..n].iter().map(|c| c.code()).collect()
}

/// DRE quantization of a flat tensor with [`fn@coat_dre_quantize`].
pub fn dre_quantize(device: &Device, config: &Config, x: &[f32]) -> Result<DreTensor, Error> {
    let def = coat_dre_quantize::def();
    let config = &complete(def, config);
    let n = x.len();
    let dx = device.upload(&pad(x))?;
    let mut q = device.zeros::<F8E4M3>(padded_ld(n))?;
    let mut meta = device.zeros::<f32>(3 * n.div_ceil(GROUP).max(1))?;
    let dims = group_dims(config, n);
    coat_dre_quantize::launch(device, config, dims, &dx, &mut q, &mut meta, u32_of(n)?)?;
    let mut meta = device.download(&meta)?;
    meta.truncate(3 * n.div_ceil(GROUP));
    Ok(DreTensor {
        codes: codes_of(&device.download(&q)?, n),
        meta,
    })
}

/// DRE dequantization with [`fn@coat_dre_dequantize`].
pub fn dre_dequantize(device: &Device, config: &Config, q: &DreTensor) -> Result<Vec<f32>, Error> {
    let def = coat_dre_dequantize::def();
    let config = &complete(def, config);
    let n = q.len();
    check_len(def, "meta", q.meta.len(), 3 * n.div_ceil(GROUP))?;
    let dq = device.upload(&codes_padded(q))?;
    let dm = device.upload(&q.meta)?;
    let ld = padded_ld(n);
    let mut y = device.zeros::<f32>(ld)?;
    let dims = quad_dims(config, n);
    coat_dre_dequantize::launch(device, config, dims, &dq, &dm, &mut y, u32_of(n)?)?;
    let mut y = device.download(&y)?;
    y.truncate(n);
    Ok(y)
}

/// AdamW's two moments as DRE-expanded E4M3 codes with per-group `(scale, k, c)`, on a
/// device: 2 bytes per element plus 24 per 128-element group, against 8 in f32.
pub struct Fp8Moments {
    pub n: usize,
    pub m: Buffer<F8E4M3>,
    pub m_meta: Buffer<f32>,
    pub v: Buffer<F8E4M3>,
    pub v_meta: Buffer<f32>,
}

impl Fp8Moments {
    /// Uploads `(m, v)` of `n` elements.
    pub fn upload(device: &Device, (m, v): (&DreTensor, &DreTensor)) -> Result<Self, Error> {
        let n = m.len();
        u32_of(n)?;
        let def = coat_adamw_step::def();
        check_len(def, "v", v.len(), n)?;
        Ok(Fp8Moments {
            n,
            m: device.upload(&codes_padded(m))?,
            m_meta: device.upload(&m.meta)?,
            v: device.upload(&codes_padded(v))?,
            v_meta: device.upload(&v.meta)?,
        })
    }

    /// Zero moments of `n` elements (a fresh optimizer).
    pub fn zeros(device: &Device, n: usize) -> Result<Self, Error> {
        let zeros = DreTensor::zeros(n);
        Fp8Moments::upload(device, (&zeros, &zeros))
    }

    /// The moments `(m, v)`, as quantized.
    pub fn download(&self, device: &Device) -> Result<(DreTensor, DreTensor), Error> {
        let groups = self.n.div_ceil(GROUP);
        let state = |q: &Buffer<F8E4M3>, meta: &Buffer<f32>| -> Result<DreTensor, Error> {
            let mut meta = device.download(meta)?;
            meta.truncate(3 * groups);
            Ok(DreTensor {
                codes: codes_of(&device.download(q)?, self.n),
                meta,
            })
        };
        Ok((state(&self.m, &self.m_meta)?, state(&self.v, &self.v_meta)?))
    }

    /// Bytes on the device.
    pub fn bytes(&self) -> usize {
        self.m.len() + self.v.len() + 4 * (self.m_meta.len() + self.v_meta.len())
    }

    /// The moments `(m, v)` expanded to f32 on the device (each padded to a multiple of
    /// 4), for an update rule without a fused FP8 kernel: update them, then [`Self::store`].
    pub fn expand(&self, device: &Device) -> Result<(Buffer<f32>, Buffer<f32>), Error> {
        let def = coat_dre_dequantize::def();
        let config = &def.space.default_config();
        let n = self.n;
        let dims = quad_dims(config, n);
        let expand = |q: &Buffer<F8E4M3>, meta: &Buffer<f32>| -> Result<Buffer<f32>, Error> {
            let mut y = device.zeros::<f32>(padded_ld(n))?;
            coat_dre_dequantize::launch(device, config, dims, q, meta, &mut y, u32_of(n)?)?;
            Ok(y)
        };
        Ok((
            expand(&self.m, &self.m_meta)?,
            expand(&self.v, &self.v_meta)?,
        ))
    }

    /// Quantizes updated f32 moments `(m, v)` (as [`Self::expand`] gives them) back in.
    pub fn store(
        &mut self,
        device: &Device,
        (m, v): (&Buffer<f32>, &Buffer<f32>),
    ) -> Result<(), Error> {
        let def = coat_dre_quantize::def();
        let config = &def.space.default_config();
        let n = self.n;
        check_len(def, "m", m.len(), padded_ld(n))?;
        check_len(def, "v", v.len(), padded_ld(n))?;
        let dims = group_dims(config, n);
        let n32 = u32_of(n)?;
        coat_dre_quantize::launch(device, config, dims, m, &mut self.m, &mut self.m_meta, n32)?;
        coat_dre_quantize::launch(device, config, dims, v, &mut self.v, &mut self.v_meta, n32)
    }
}

/// One [`fn@coat_adamw_step`] (step `t`, from 1) on master weights `w` and gradient `g`
/// already on the device (each padded to a multiple of 4), updating `moments` in place.
pub fn launch_fp8_adamw(
    device: &Device,
    config: &Config,
    (w, g): (&mut Buffer<f32>, &Buffer<f32>),
    moments: &mut Fp8Moments,
    hyper: &AdamW,
    t: u32,
) -> Result<(), Error> {
    let def = coat_adamw_step::def();
    let config = &complete(def, config);
    let n = moments.n;
    check_len(def, "w", w.len(), padded_ld(n))?;
    check_len(def, "grad", g.len(), padded_ld(n))?;
    let (bc1, bc2) = hyper.bias_corrections(t);
    let mut args = [
        Arg::slice_mut(w),
        Arg::slice(g),
        Arg::slice_mut(&mut moments.m),
        Arg::slice_mut(&mut moments.m_meta),
        Arg::slice_mut(&mut moments.v),
        Arg::slice_mut(&mut moments.v_meta),
        Arg::value(u32_of(n)?),
        Arg::value(hyper.lr),
        Arg::value(hyper.beta1),
        Arg::value(hyper.beta2),
        Arg::value(hyper.eps),
        Arg::value(hyper.weight_decay),
        Arg::value(bc1),
        Arg::value(bc2),
    ];
    device.launch(def, config, group_dims(config, n), &mut args)
}

/// FP8 AdamW state on a device: master weights and DRE-quantized moments, updated in place
/// by [`fn@coat_adamw_step`].
pub struct Fp8AdamW {
    pub hyper: AdamW,
    n: usize,
    step: u32,
    w: Buffer<f32>,
    moments: Fp8Moments,
}

impl Fp8AdamW {
    /// Uploads the weights; the moments start at zero.
    pub fn new(device: &Device, hyper: AdamW, w: &[f32]) -> Result<Fp8AdamW, Error> {
        let zeros = DreTensor::zeros(w.len());
        Fp8AdamW::with_state(device, hyper, w, (&zeros, &zeros), 0)
    }

    /// Uploads the weights and moments `(m, v)` after `step` steps.
    pub fn with_state(
        device: &Device,
        hyper: AdamW,
        w: &[f32],
        (m, v): (&DreTensor, &DreTensor),
        step: u32,
    ) -> Result<Fp8AdamW, Error> {
        let n = w.len();
        check_len(coat_adamw_step::def(), "m", m.len(), n)?;
        Ok(Fp8AdamW {
            hyper,
            n,
            step,
            w: device.upload(&pad(w))?,
            moments: Fp8Moments::upload(device, (m, v))?,
        })
    }

    /// One step with gradient `g` (one per weight).
    pub fn step(&mut self, device: &Device, config: &Config, g: &[f32]) -> Result<(), Error> {
        check_len(coat_adamw_step::def(), "grad", g.len(), self.n)?;
        self.step_on(device, config, &device.upload(&pad(g))?)
    }

    /// One step with a gradient already on the device (padded to a multiple of 4).
    pub fn step_on(
        &mut self,
        device: &Device,
        config: &Config,
        g: &Buffer<f32>,
    ) -> Result<(), Error> {
        let t = self.step.saturating_add(1);
        let hyper = self.hyper;
        launch_fp8_adamw(
            device,
            config,
            (&mut self.w, g),
            &mut self.moments,
            &hyper,
            t,
        )?;
        self.step = t;
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// The weights.
    pub fn weights(&self, device: &Device) -> Result<Vec<f32>, Error> {
        let mut w = device.download(&self.w)?;
        w.truncate(self.n);
        Ok(w)
    }

    /// The moments `(m, v)`, as quantized.
    pub fn moments(&self, device: &Device) -> Result<(DreTensor, DreTensor), Error> {
        self.moments.download(device)
    }
}
