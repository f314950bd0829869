//! Training (issue 14): a Llama-family model trained on warpforge kernels with no autograd —
//! [`step`] is the forward and backward top to bottom, [`params`] the tensors (f32 masters,
//! gradients, moments, compute copies), [`optimizer`] LAMB or AdamW, [`data`] the packed
//! corpus, [`schedule`] the learning rate. The kernels (loss, backward passes, optimizers)
//! are in `warpforge-kernels`.

pub mod checkpoint;
pub mod data;
pub mod fp8;
pub mod optimizer;
pub mod params;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod wta_crs;

use crate::engine::weights::ModelFloat;
use warpforge_kernels::embed::host::EmbedFloat;
use warpforge_kernels::fp8::Fp8Float;
use warpforge_kernels::loss::host::LossFloat;
use warpforge_kernels::norm::backward::NormBwdFloat;

/// The compute types a model trains in (f16 or bf16: the attention kernels' types).
pub trait TrainFloat: ModelFloat + LossFloat + NormBwdFloat + EmbedFloat + Fp8Float {}

impl<T: ModelFloat + LossFloat + NormBwdFloat + EmbedFloat + Fp8Float> TrainFloat for T {}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Params(#[from] params::ParamsError),
    #[error(transparent)]
    Step(#[from] step::StepError),
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
    #[error(transparent)]
    Device(#[from] warpforge_dsl::backend::DeviceError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
