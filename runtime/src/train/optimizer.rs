//! The optimizer step over [`Params`]: LAMB (three deterministic stages) or AdamW, f32
//! master weights, moments in f32 or FP8 with COAT's dynamic range expansion, then the
//! compute copies refreshed from the masters.
//!
//! With f32 moments every tensor is updated in one launch set over the flat buffers (the
//! kernels' multi-tensor table is the parameters' layout; LAMB's trust ratio is per tensor
//! in it). FP8 moments are per tensor: AdamW's update is one fused kernel per tensor on
//! views of the flat masters and gradients; LAMB's expands one tensor's moments to f32 at
//! a time, runs the three stages on them and quantizes them back, so only the largest
//! tensor's f32 moments ever exist beside the FP8 ones.

use super::params::Params;
use super::{TrainError, TrainFloat};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::fp8::coat::adamw::coat_adamw_step;
use warpforge_kernels::fp8::coat::host::launch_fp8_adamw;
use warpforge_kernels::fp8::coat::reference::AdamW;
use warpforge_kernels::optim::host::LambIo;
use warpforge_kernels::optim::host::{
    self as optim, DeviceTables, Hyper, LambPlan, LambScratch, ParamTable,
};
use warpforge_kernels::optim::{adamw_step, lamb_apply, lamb_trust, lamb_update};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Lamb,
    AdamW,
}

impl OptimizerKind {
    pub fn parse(name: &str) -> Result<OptimizerKind, String> {
        match name {
            "lamb" => Ok(OptimizerKind::Lamb),
            "adamw" => Ok(OptimizerKind::AdamW),
            other => Err(format!("unknown optimizer `{other}` (lamb or adamw)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Lamb => "lamb",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

/// The hyper-parameters besides the rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Moments stored in FP8 with COAT's dynamic range expansion.
    pub fp8_moments: bool,
}

impl OptimizerConfig {
    /// LAMB's reference defaults (ε 1e-6, decay 0.01); AdamW's common ones (ε 1e-8, decay
    /// 0.1).
    pub fn defaults(kind: OptimizerKind) -> OptimizerConfig {
        let (eps, weight_decay) = match kind {
            OptimizerKind::Lamb => (1e-6, 0.01),
            OptimizerKind::AdamW => (1e-8, 0.1),
        };
        OptimizerConfig {
            kind,
            beta1: 0.9,
            beta2: 0.999,
            eps,
            weight_decay,
            fp8_moments: false,
        }
    }

    fn hyper(&self, lr: f32, step: u32) -> Hyper {
        Hyper {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            step,
        }
    }
}

/// A table's chunk tables for each stage's chunk size, and LAMB's scratch.
struct TensorTables {
    update: DeviceTables,
    apply: DeviceTables,
    scratch: LambScratch,
}

/// The optimizer: configs and tables.
pub struct Optimizer {
    pub config: OptimizerConfig,
    update: Config,
    trust: Config,
    apply: Config,
    fp8: Config,
    /// Over every tensor of the flat buffers.
    all: TensorTables,
    /// One table per tensor, offset 0 (LAMB on FP8 moments).
    each: Vec<TensorTables>,
}

impl TensorTables {
    fn new(
        device: &Device,
        table: &ParamTable,
        (update, apply): (&Config, &Config),
    ) -> Result<TensorTables, TrainError> {
        let update_tables = DeviceTables::upload(device, table, update)?;
        Ok(TensorTables {
            scratch: LambScratch::new(device, &update_tables)?,
            apply: DeviceTables::upload(device, table, apply)?,
            update: update_tables,
        })
    }
}

impl Optimizer {
    pub fn new<T: TrainFloat>(
        device: &Device,
        params: &Params<T>,
        config: OptimizerConfig,
    ) -> Result<Optimizer, TrainError> {
        let (update, apply) = match config.kind {
            OptimizerKind::Lamb => (
                lamb_update::def().space.default_config(),
                lamb_apply::def().space.default_config(),
            ),
            OptimizerKind::AdamW => {
                let c = adamw_step::def().space.default_config();
                (c.clone(), c)
            }
        };
        if params.tensors.iter().any(|p| p.fp8.is_some()) != config.fp8_moments {
            return Err(TrainError::Config(
                "the parameters' moments and the optimizer disagree on FP8".into(),
            ));
        }
        let configs = (&update, &apply);
        let all = TensorTables::new(device, &params.table, configs)?;
        let mut each = vec![];
        if config.fp8_moments && config.kind == OptimizerKind::Lamb {
            for p in &params.tensors {
                let table = ParamTable::new(&[(p.len(), p.adapt)])
                    .map_err(|e| TrainError::Config(e.to_string()))?;
                each.push(TensorTables::new(device, &table, configs)?);
            }
        }
        Ok(Optimizer {
            config,
            update,
            trust: lamb_trust::def().space.default_config(),
            apply,
            fp8: coat_adamw_step::def().space.default_config(),
            all,
            each,
        })
    }

    /// Step `step` (from 1) at rate `lr`: every tensor updated from its gradient (which
    /// LAMB consumes), then the compute copies refreshed.
    pub fn step<T: TrainFloat>(
        &mut self,
        device: &Device,
        params: &mut Params<T>,
        lr: f32,
        step: u32,
    ) -> Result<(), TrainError> {
        let hyper = self.config.hyper(lr, step);
        match (self.config.kind, self.config.fp8_moments) {
            (OptimizerKind::AdamW, false) => {
                let tables = &self.all.update;
                optim::launch_adamw(device, &self.update, &mut params.state, tables, &hyper)?
            }
            (OptimizerKind::Lamb, false) => {
                let t = &mut self.all;
                let plan = LambPlan {
                    update: (&self.update, &t.update),
                    trust: &self.trust,
                    apply: (&self.apply, &t.apply),
                };
                optim::launch_lamb(device, &plan, &mut params.state, &mut t.scratch, &hyper)?
            }
            (OptimizerKind::AdamW, true) => self.fp8_adamw(device, params, lr, step)?,
            (OptimizerKind::Lamb, true) => self.fp8_lamb(device, params, &hyper)?,
        }
        params.refresh_compute(device)?;
        Ok(())
    }

    /// AdamW on FP8 moments: the fused kernel per tensor, on views of the flat buffers.
    fn fp8_adamw<T: TrainFloat>(
        &self,
        device: &Device,
        params: &mut Params<T>,
        lr: f32,
        step: u32,
    ) -> Result<(), TrainError> {
        let c = &self.config;
        for p in &mut params.tensors {
            let moments = p.fp8.as_mut().ok_or_else(no_fp8_moments)?;
            let coat = AdamW {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: if p.adapt { c.weight_decay } else { 0.0 },
            };
            let range = p.offset..p.offset + p.shape.iter().product::<usize>();
            let grad = params.state.grad.view(range.clone())?;
            let mut w = params.state.w.view_mut(range)?;
            w.with(|w| launch_fp8_adamw(device, &self.fp8, (w, &grad), moments, &coat, step))?;
        }
        Ok(())
    }

    /// LAMB on FP8 moments: per tensor, the moments expanded to f32, the three stages on
    /// views of the flat masters and gradients, the moments quantized back.
    fn fp8_lamb<T: TrainFloat>(
        &mut self,
        device: &Device,
        params: &mut Params<T>,
        hyper: &Hyper,
    ) -> Result<(), TrainError> {
        let mut each = std::mem::take(&mut self.each);
        for (p, tables) in params.tensors.iter_mut().zip(&mut each) {
            let moments = p.fp8.as_mut().ok_or_else(no_fp8_moments)?;
            let (mut m, mut v) = moments.expand(device)?;
            let range = p.offset..p.offset + p.shape.iter().product::<usize>();
            let mut w = params.state.w.view_mut(range.clone())?;
            let mut grad = params.state.grad.view_mut(range)?;
            let plan = LambPlan {
                update: (&self.update, &tables.update),
                trust: &self.trust,
                apply: (&self.apply, &tables.apply),
            };
            let scratch = &mut tables.scratch;
            w.with(|w| {
                grad.with(|g| {
                    let io: LambIo = (w, g, &mut m, &mut v);
                    optim::launch_lamb_on(device, &plan, io, scratch, hyper)
                })
            })?;
            moments.store(device, (&m, &v))?;
        }
        self.each = each;
        Ok(())
    }
}

fn no_fp8_moments() -> TrainError {
    TrainError::Config("the optimizer runs on FP8 moments; a parameter has none".into())
}
