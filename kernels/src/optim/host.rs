//! Host side of the optimizers: the flat parameter layout and its device tables, the
//! hyper-parameters, the launch helpers and the f64 references.

use super::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, LaunchDims};

/// Flag bit of a tensor that gets weight decay and the LAMB trust ratio (clear for biases
/// and norm weights).
pub const ADAPT: u32 = 1;

/// Why a parameter layout cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptimError {
    #[error("the flat parameter buffer would hold {0} elements; the kernels index below 2^32 (split the parameters into groups)")]
    TooLarge(usize),
}

/// One tensor of the flat buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub offset: usize,
    pub len: usize,
    /// Weight decay and trust ratio apply ([`ADAPT`]).
    pub adapt: bool,
}

/// Every parameter tensor in one flat f32 buffer, each starting four-element aligned (the
/// gap after a tensor is zero in every buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTable {
    pub tensors: Vec<TensorEntry>,
    /// The flat length (a multiple of 4).
    pub len: usize,
}

/// The device tables for one chunk size (see [`super`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkTables {
    pub tensors: Vec<u32>,
    pub chunk_tensor: Vec<u32>,
}

impl ParamTable {
    /// Lays out tensors of the given `(len, adapt)` one after another.
    pub fn new(tensors: &[(usize, bool)]) -> Result<ParamTable, OptimError> {
        let mut table = ParamTable {
            tensors: Vec::with_capacity(tensors.len()),
            len: 0,
        };
        for &(len, adapt) in tensors {
            table.tensors.push(TensorEntry {
                offset: table.len,
                len,
                adapt,
            });
            table.len += len.div_ceil(4) * 4;
        }
        if table.len >= 1 << 32 {
            return Err(OptimError::TooLarge(table.len));
        }
        Ok(table)
    }

    /// Flat values with each tensor's values from `values(k, i)` and zero padding.
    pub fn fill(&self, mut values: impl FnMut(usize, usize) -> f32) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len];
        for (k, t) in self.tensors.iter().enumerate() {
            for i in 0..t.len {
                out[t.offset + i] = values(k, i);
            }
        }
        out
    }

    /// The tables for chunks of `chunk_elems` elements (a multiple of 4).
    pub fn chunk_tables(&self, chunk_elems: usize) -> ChunkTables {
        let mut tables = ChunkTables {
            tensors: Vec::with_capacity(4 * self.tensors.len()),
            chunk_tensor: Vec::new(),
        };
        for (k, t) in self.tensors.iter().enumerate() {
            let first = tables.chunk_tensor.len() as u32;
            tables.tensors.extend([
                t.offset as u32,
                t.len as u32,
                if t.adapt { ADAPT } else { 0 },
                first,
            ]);
            let chunks = t.len.div_ceil(chunk_elems.max(4));
            tables
                .chunk_tensor
                .extend(std::iter::repeat_n(k as u32, chunks));
        }
        tables
    }
}

/// A config's chunk size: `4·BLOCK·VECS` elements.
pub fn chunk_elems(config: &Config) -> usize {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or).max(1) as usize;
    4 * get("BLOCK", 256) * get("VECS", 2)
}

/// [`ChunkTables`] on a device.
pub struct DeviceTables {
    pub tensors: Buffer<u32>,
    pub chunk_tensor: Buffer<u32>,
    pub tensor_count: u32,
    pub chunk_count: u32,
}

impl DeviceTables {
    /// The tables of `table` for `config`'s chunk size.
    pub fn upload(
        device: &Device,
        table: &ParamTable,
        config: &Config,
    ) -> Result<DeviceTables, warpforge_dsl::Error> {
        let t = table.chunk_tables(chunk_elems(config));
        let nonempty = |v: &[u32]| if v.is_empty() { vec![0] } else { v.to_vec() };
        Ok(DeviceTables {
            tensors: device.upload(&nonempty(&t.tensors))?,
            chunk_tensor: device.upload(&nonempty(&t.chunk_tensor))?,
            tensor_count: table.tensors.len() as u32,
            chunk_count: t.chunk_tensor.len() as u32,
        })
    }
}

/// The hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// The step number, from 1.
    pub step: u32,
}

impl Hyper {
    /// LAMB's reference defaults (TF-Addons: ε = 1e-6) with BERT's decay 0.01.
    pub fn lamb(lr: f32, step: u32) -> Hyper {
        Hyper {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.01,
            step,
        }
    }

    /// The bias corrections `(1 − β1^t, 1 − β2^t)`, in f64 then rounded.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = self.step.max(1) as i32;
        (
            (1.0 - (self.beta1 as f64).powi(t)) as f32,
            (1.0 - (self.beta2 as f64).powi(t)) as f32,
        )
    }
}

/// The optimizer's state on a device: weights, gradients (LAMB overwrites them with the
/// update direction), moments.
pub struct State {
    pub w: Buffer<f32>,
    pub grad: Buffer<f32>,
    pub m: Buffer<f32>,
    pub v: Buffer<f32>,
}

/// Launches `adamw_step` over every chunk.
pub fn launch_adamw(
    device: &Device,
    config: &Config,
    state: &mut State,
    tables: &DeviceTables,
    hyper: &Hyper,
) -> Result<(), warpforge_dsl::Error> {
    if tables.chunk_count == 0 {
        return Ok(());
    }
    let (bc1, bc2) = hyper.bias_corrections();
    let mut args = [
        Arg::slice_mut(&mut state.w),
        Arg::slice(&state.grad),
        Arg::slice_mut(&mut state.m),
        Arg::slice_mut(&mut state.v),
        Arg::slice(&tables.tensors),
        Arg::slice(&tables.chunk_tensor),
        Arg::value(hyper.lr),
        Arg::value(hyper.beta1),
        Arg::value(hyper.beta2),
        Arg::value(hyper.eps),
        Arg::value(hyper.weight_decay),
        Arg::value(bc1),
        Arg::value(bc2),
    ];
    let dims = chunk_dims(config, tables);
    device.launch(adamw_step::def(), config, dims, &mut args)
}

fn chunk_dims(config: &Config, tables: &DeviceTables) -> LaunchDims {
    let block = config.get("BLOCK").unwrap_or(256).max(32) as u32;
    LaunchDims::linear(tables.chunk_count, block)
}

/// The LAMB scratch: two partial sums per chunk of the update config, τ per tensor.
pub struct LambScratch {
    pub partials: Buffer<f32>,
    pub ratio: Buffer<f32>,
}

impl LambScratch {
    pub fn new(
        device: &Device,
        tables: &DeviceTables,
    ) -> Result<LambScratch, warpforge_dsl::Error> {
        Ok(LambScratch {
            partials: device.zeros(2 * tables.chunk_count.max(1) as usize)?,
            ratio: device.zeros(tables.tensor_count.max(1) as usize)?,
        })
    }
}

/// The configs of the three LAMB stages and the tables of the update's and the apply's
/// chunk sizes.
pub struct LambPlan<'a> {
    pub update: (&'a Config, &'a DeviceTables),
    pub trust: &'a Config,
    pub apply: (&'a Config, &'a DeviceTables),
}

/// Launches the three LAMB stages.
pub fn launch_lamb(
    device: &Device,
    plan: &LambPlan,
    state: &mut State,
    scratch: &mut LambScratch,
    hyper: &Hyper,
) -> Result<(), warpforge_dsl::Error> {
    let io = (&mut state.w, &mut state.grad, &mut state.m, &mut state.v);
    launch_lamb_on(device, plan, io, scratch, hyper)
}

/// LAMB's `(w, grad, m, v)`, each over the plan's table.
pub type LambIo<'a> = (
    &'a mut Buffer<f32>,
    &'a mut Buffer<f32>,
    &'a mut Buffer<f32>,
    &'a mut Buffer<f32>,
);

/// [`launch_lamb`] on buffers that need not sit in one [`State`] (views of flat buffers,
/// moments expanded from FP8).
pub fn launch_lamb_on(
    device: &Device,
    plan: &LambPlan,
    (w, grad, m, v): LambIo<'_>,
    scratch: &mut LambScratch,
    hyper: &Hyper,
) -> Result<(), warpforge_dsl::Error> {
    let (config, tables) = plan.update;
    if tables.chunk_count == 0 {
        return Ok(());
    }
    let (bc1, bc2) = hyper.bias_corrections();
    let mut args = [
        Arg::slice(w),
        Arg::slice_mut(grad),
        Arg::slice_mut(m),
        Arg::slice_mut(v),
        Arg::slice(&tables.tensors),
        Arg::slice(&tables.chunk_tensor),
        Arg::slice_mut(&mut scratch.partials),
        Arg::value(hyper.beta1),
        Arg::value(hyper.beta2),
        Arg::value(hyper.eps),
        Arg::value(hyper.weight_decay),
        Arg::value(bc1),
        Arg::value(bc2),
    ];
    device.launch(
        lamb_update::def(),
        config,
        chunk_dims(config, tables),
        &mut args,
    )?;
    let block = plan.trust.get("BLOCK").unwrap_or(128).max(32) as u32;
    let mut args = [
        Arg::slice(&scratch.partials),
        Arg::slice(&tables.tensors),
        Arg::slice_mut(&mut scratch.ratio),
        Arg::value(tables.tensor_count),
        Arg::value(tables.chunk_count),
    ];
    let dims = LaunchDims::linear(tables.tensor_count, block);
    device.launch(lamb_trust::def(), plan.trust, dims, &mut args)?;
    let (config, tables) = plan.apply;
    let mut args = [
        Arg::slice_mut(w),
        Arg::slice(grad),
        Arg::slice(&tables.tensors),
        Arg::slice(&tables.chunk_tensor),
        Arg::slice(&scratch.ratio),
        Arg::value(hyper.lr),
    ];
    device.launch(
        lamb_apply::def(),
        config,
        chunk_dims(config, tables),
        &mut args,
    )
}

/// The optimizer state in f64 on the host, for the references.
#[derive(Clone, Debug)]
pub struct HostState {
    pub w: Vec<f64>,
    pub grad: Vec<f64>,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
}

/// The per-element Adam direction `(m̂ / (√v̂ + ε))` after updating the moments, in f64.
fn adam_direction(s: &mut HostState, i: usize, h: &Hyper) -> f64 {
    let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
    let t = h.step.max(1) as i32;
    let g = s.grad[i];
    s.m[i] = b1 * s.m[i] + (1.0 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1.0 - b2) * g * g;
    let m_hat = s.m[i] / (1.0 - b1.powi(t));
    let v_hat = s.v[i] / (1.0 - b2.powi(t));
    m_hat / (v_hat.sqrt() + h.eps as f64)
}

/// One AdamW step in f64 (decoupled decay, none on excluded tensors).
pub fn adamw_reference(table: &ParamTable, s: &mut HostState, h: &Hyper) {
    for t in &table.tensors {
        let wd = if t.adapt { h.weight_decay as f64 } else { 0.0 };
        for i in t.offset..t.offset + t.len {
            let r = adam_direction(s, i, h);
            s.w[i] -= h.lr as f64 * (r + wd * s.w[i]);
        }
    }
}

/// One LAMB step in f64 (TF-Addons: τ = ‖w‖/‖u‖, 1 when either is 0 or the tensor is
/// excluded); returns τ per tensor.
pub fn lamb_reference(table: &ParamTable, s: &mut HostState, h: &Hyper) -> Vec<f64> {
    let mut ratios = Vec::with_capacity(table.tensors.len());
    for t in &table.tensors {
        let wd = if t.adapt { h.weight_decay as f64 } else { 0.0 };
        let range = t.offset..t.offset + t.len;
        let u: Vec<f64> = range
            .clone()
            .map(|i| adam_direction(s, i, h) + wd * s.w[i])
            .collect();
        let w_norm = s.w[range.clone()].iter().map(|x| x * x).sum::<f64>().sqrt();
        let u_norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let ratio = if t.adapt && w_norm > 0.0 && u_norm > 0.0 {
            w_norm / u_norm
        } else {
            1.0
        };
        for (i, ui) in range.zip(&u) {
            s.w[i] -= h.lr as f64 * ratio * ui;
            s.grad[i] = *ui;
        }
        ratios.push(ratio);
    }
    ratios
}
