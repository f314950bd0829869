//! Host references of DRE and the FP8 AdamW step, operation for operation the kernels'
//! f32 arithmetic (so the interpreter matches them bit for bit), plus plain per-group
//! scaling and f32 AdamW for comparisons.

use super::{GROUP, K_MAX, K_MIN, LOG2_E, LOG2_TARGET};
use crate::fp8::E4M3_MAX;
use warpforge_dsl::convert::E4M3;

/// A flat tensor quantized with DRE: E4M3 codes and `(scale, k, c)` per 128-element group.
#[derive(Clone, Debug, PartialEq)]
pub struct DreTensor {
    pub codes: Vec<u8>,
    /// `[scale, k, c]` of group `g` at `3g..3g+3`.
    pub meta: Vec<f32>,
}

impl DreTensor {
    /// The state of a fresh optimizer: all zeros (codes 0, `scale = 0, k = 1, c = 1`).
    pub fn zeros(n: usize) -> DreTensor {
        DreTensor {
            codes: vec![0; n],
            meta: [0.0, 1.0, 1.0].repeat(n.div_ceil(GROUP)),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The decoded codes (`f32(q)`) followed by the metadata: what library checks compare.
    pub fn flatten(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&c| E4M3.decode(c))
            .chain(self.meta.iter().copied())
            .collect()
    }
}

fn log2_of(t: f32) -> f32 {
    t.ln() * LOG2_E
}

/// `(scale, k, c)` of a group from its largest and smallest non-zero magnitudes
/// (`amin = +Inf` for an all-zero group).
pub fn group_params(amax: f32, amin: f32) -> [f32; 3] {
    let lr = log2_of(amax) - log2_of(amin);
    let mut k = 1.0f32;
    if amax > 0.0 && lr > 0.0 {
        k = ((LOG2_TARGET / lr * 16.0).floor() / 16.0).clamp(K_MIN, K_MAX);
    }
    if amax > 0.0 {
        let c = amax.sqrt() * amin.sqrt();
        [expand(amax, c, k) / E4M3_MAX, k, c]
    } else {
        [0.0, 1.0, 1.0]
    }
}

fn expand(ax: f32, c: f32, k: f32) -> f32 {
    (k * log2_of(ax / c)).exp2()
}

/// The code of `x` in a group with parameters `[scale, k, c]`.
pub fn encode(x: f32, [scale, k, c]: [f32; 3]) -> u8 {
    let mut y = 0.0f32;
    if x != 0.0 && scale > 0.0 {
        let e = expand(x.abs(), c, k) / scale;
        y = if x < 0.0 { -e } else { e };
    }
    E4M3.encode(y)
}

/// The value of `code` in a group with parameters `[scale, k, c]` (code ±0 gives 0).
pub fn decode(code: u8, [scale, k, c]: [f32; 3]) -> f32 {
    let f = E4M3.decode(code);
    let t = f.abs() * scale;
    if t > 0.0 {
        let e = c * (log2_of(t) / k).exp2();
        if f < 0.0 {
            -e
        } else {
            e
        }
    } else {
        0.0
    }
}

/// DRE quantization of a flat tensor.
pub fn quantize(x: &[f32]) -> DreTensor {
    let mut out = DreTensor {
        codes: Vec::with_capacity(x.len()),
        meta: Vec::with_capacity(3 * x.len().div_ceil(GROUP)),
    };
    for group in x.chunks(GROUP) {
        let amax = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let amin = group
            .iter()
            .filter(|v| **v != 0.0)
            .fold(f32::INFINITY, |m, v| m.min(v.abs()));
        let p = group_params(amax, amin);
        out.meta.extend(p);
        out.codes.extend(group.iter().map(|&v| encode(v, p)));
    }
    out
}

/// DRE dequantization.
pub fn dequantize(q: &DreTensor) -> Vec<f32> {
    q.codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let g = i / GROUP;
            decode(c, [q.meta[3 * g], q.meta[3 * g + 1], q.meta[3 * g + 2]])
        })
        .collect()
}

/// Plain per-group (1×128, `amax/448`) E4M3 quantization and back, for comparisons.
pub fn per_group_round_trip(x: &[f32]) -> Vec<f32> {
    let q = crate::fp8::reference::quantize_rows(x, 1, x.len(), GROUP, E4M3);
    crate::fp8::reference::dequantize(
        &q,
        1,
        x.len(),
        crate::fp8::reference::Granularity::Rows { g: GROUP as u32 },
        E4M3,
    )
}

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// COAT's (and PyTorch's) defaults.
    fn default() -> AdamW {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamW {
    /// The bias corrections `(1-β1^t, 1-β2^t)` of step `t` (from 1).
    pub fn bias_corrections(&self, t: u32) -> (f32, f32) {
        let t = t.min(i32::MAX as u32) as i32;
        (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t))
    }

    /// One weight's update, as the kernel computes it.
    fn update(&self, w: f32, m: f32, v: f32, bc: (f32, f32)) -> f32 {
        let u = (m / bc.0) / ((v / bc.1).sqrt() + self.eps) + self.weight_decay * w;
        w - self.lr * u
    }

    /// One f32 AdamW step (step `t`, from 1) on f32 moments.
    pub fn step_f32(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], t: u32) {
        let bc = self.bias_corrections(t);
        for i in 0..w.len() {
            m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g[i];
            v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * (g[i] * g[i]);
            w[i] = self.update(w[i], m[i], v[i], bc);
        }
    }

    /// One FP8 AdamW step on DRE-quantized moments, as the kernel computes it.
    pub fn step_fp8(&self, w: &mut [f32], g: &[f32], m: &mut DreTensor, v: &mut DreTensor, t: u32) {
        let mut mf = dequantize(m);
        let mut vf = dequantize(v);
        self.step_f32(w, g, &mut mf, &mut vf, t);
        *m = quantize(&mf);
        *v = quantize(&vf);
    }
}
