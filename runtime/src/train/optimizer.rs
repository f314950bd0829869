//! The optimizer step over [`Params`]: LAMB (three deterministic stages) or AdamW, f32
//! master weights, moments in f32 or FP8 with COAT's dynamic range expansion, then the
//! compute copies refreshed from the masters. AdamW on FP8 moments is one fused kernel;
//! LAMB on FP8 moments expands one tensor's moments to f32 at a time, runs the f32 LAMB
//! stages on them and quantizes them back, so only the largest tensor's f32 moments ever
//! exist beside the FP8 ones.
//!
//! Each tensor is launched with its own one-tensor table (the kernels' multi-tensor layout
//! with one entry): the update is the same as one launch over a flat buffer, since LAMB's
//! trust ratio is per tensor anyway; the flat single launch needs parameters allocated as
//! views of one buffer.

use super::params::Params;
use super::{TrainError, TrainFloat};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::fp8::coat::adamw::coat_adamw_step;
use warpforge_kernels::fp8::coat::host::launch_fp8_adamw;
use warpforge_kernels::fp8::coat::reference::AdamW;
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

/// One tensor's tables for each stage's chunk size, and LAMB's scratch.
struct TensorTables {
    update: DeviceTables,
    apply: DeviceTables,
    scratch: LambScratch,
}

/// The optimizer: configs and per-tensor tables.
pub struct Optimizer {
    pub config: OptimizerConfig,
    update: Config,
    trust: Config,
    apply: Config,
    fp8: Config,
    tables: Vec<TensorTables>,
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
        let mut tables = Vec::with_capacity(params.tensors.len());
        for p in &params.tensors {
            let table = ParamTable::new(&[(p.len(), p.adapt)])
                .map_err(|e| TrainError::Config(e.to_string()))?;
            let update_tables = DeviceTables::upload(device, &table, &update)?;
            let scratch = LambScratch::new(device, &update_tables)?;
            tables.push(TensorTables {
                apply: DeviceTables::upload(device, &table, &apply)?,
                update: update_tables,
                scratch,
            });
        }
        Ok(Optimizer {
            config,
            update,
            trust: lamb_trust::def().space.default_config(),
            apply,
            fp8: coat_adamw_step::def().space.default_config(),
            tables,
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
        for (p, t) in params.tensors.iter_mut().zip(&mut self.tables) {
            let plan = LambPlan {
                update: (&self.update, &t.update),
                trust: &self.trust,
                apply: (&self.apply, &t.apply),
            };
            match (self.config.kind, &mut p.fp8) {
                (OptimizerKind::AdamW, None) => {
                    optim::launch_adamw(device, &self.update, &mut p.state, &t.update, &hyper)?
                }
                (OptimizerKind::Lamb, None) => {
                    optim::launch_lamb(device, &plan, &mut p.state, &mut t.scratch, &hyper)?
                }
                (OptimizerKind::AdamW, Some(moments)) => {
                    let coat = AdamW {
                        lr,
                        beta1: self.config.beta1,
                        beta2: self.config.beta2,
                        eps: self.config.eps,
                        weight_decay: if p.adapt {
                            self.config.weight_decay
                        } else {
                            0.0
                        },
                    };
                    let io = (&mut p.state.w, &p.state.grad);
                    launch_fp8_adamw(device, &self.fp8, io, moments, &coat, step)?;
                }
                (OptimizerKind::Lamb, Some(moments)) => {
                    // The f32 stages on this tensor's moments, expanded for the update.
                    let (mut m, mut v) = moments.expand(device)?;
                    std::mem::swap(&mut p.state.m, &mut m);
                    std::mem::swap(&mut p.state.v, &mut v);
                    optim::launch_lamb(device, &plan, &mut p.state, &mut t.scratch, &hyper)?;
                    std::mem::swap(&mut p.state.m, &mut m);
                    std::mem::swap(&mut p.state.v, &mut v);
                    moments.store(device, (&m, &v))?;
                }
            }
        }
        params.refresh_compute(device)?;
        Ok(())
    }
}
