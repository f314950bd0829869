//! The runner: executes a [`StepPlan`] on the device model in the chosen precision.

use super::model::DeviceModel;
use super::plan::{EngineError, StepLogits, StepPlan, StepRunner};
use super::weights::LoadError;
use crate::model::ModelDir;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::Device;

/// The type activations, weights and the KV cache are kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Bf16,
    F16,
}

impl Precision {
    /// The model's own type when it is f16 or bf16; bf16 for f32 weights (the attention
    /// kernels take 16-bit types, and bf16 keeps f32's range).
    pub fn of_model(dir: &ModelDir) -> Precision {
        match dir.weights.dtype() {
            Some(crate::model::DType::F16) => Precision::F16,
            _ => Precision::Bf16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// Where the KV cache lives and how big it is.
#[derive(Clone, Copy, Debug)]
pub struct CacheSize {
    pub pages: usize,
    pub page_size: usize,
    /// Positions the RoPE table covers: the longest sequence served.
    pub max_positions: usize,
}

/// The device model in one precision.
pub enum Runner {
    Bf16(DeviceModel<bf16>),
    F16(DeviceModel<f16>),
}

impl Runner {
    pub fn load(
        device: Device,
        dir: &ModelDir,
        precision: Precision,
        size: CacheSize,
    ) -> Result<Runner, LoadError> {
        let cache = (size.pages, size.page_size);
        let (c, w, n) = (
            &dir.config,
            (&dir.weights, dir.quant.as_ref()),
            size.max_positions,
        );
        Ok(match precision {
            Precision::Bf16 => Runner::Bf16(DeviceModel::load(device, c, w, cache, n)?),
            Precision::F16 => Runner::F16(DeviceModel::load(device, c, w, cache, n)?),
        })
    }

    /// Bytes one token's K and V take over all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        match self {
            Runner::Bf16(m) => m.kv_bytes_per_token(),
            Runner::F16(m) => m.kv_bytes_per_token(),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Runner::Bf16(m) => m.device(),
            Runner::F16(m) => m.device(),
        }
    }

    /// (linears on the int4 GEMM, int4 linears dequantized at load).
    pub fn int4_layers(&self) -> (usize, usize) {
        match self {
            Runner::Bf16(m) => m.int4_layers(),
            Runner::F16(m) => m.int4_layers(),
        }
    }

    fn vocab(&self) -> usize {
        match self {
            Runner::Bf16(m) => m.config().vocab_size,
            Runner::F16(m) => m.config().vocab_size,
        }
    }
}

impl StepRunner for Runner {
    fn page_size(&self) -> usize {
        match self {
            Runner::Bf16(m) => m.page_size(),
            Runner::F16(m) => m.page_size(),
        }
    }

    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError> {
        let rows = match self {
            Runner::Bf16(m) => m.step(plan),
            Runner::F16(m) => m.step(plan),
        }
        .map_err(|e| EngineError::runner(e.to_string()))?;
        Ok(StepLogits {
            rows,
            vocab: self.vocab(),
        })
    }
}
