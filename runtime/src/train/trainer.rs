//! The training loop's state: the model's kernels, the parameters, the optimizer, the
//! schedule and the packed data, advanced one optimizer step at a time.
//!
//! A step runs `accumulate` micro-batches of `rows` packed rows forward and backward, the
//! weight gradients adding up in f32 (each scaled by 1 / the counted targets of the whole
//! step, so the sum is the gradient of the step's mean loss), then one optimizer update at
//! the schedule's rate, after clipping the gradients to a global norm (1 by default). Batch `b` of the data is a pure function of the seed and `b`, so a
//! run restored from a checkpoint at step `s` continues exactly as the uninterrupted one.

use super::data::{Batch, Packed};
use super::optimizer::{Optimizer, OptimizerConfig};
use super::params::Params;
use super::schedule::Schedule;
use super::step::{LossSum, Model};
use super::{TrainError, TrainFloat};
use crate::model::ModelConfig;
use warpforge_dsl::Device;
use warpforge_kernels::optim::clip;

/// How batches are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShape {
    /// Tokens per packed row.
    pub seq_len: usize,
    /// Rows per micro-batch.
    pub rows: usize,
    /// Micro-batches per optimizer step.
    pub accumulate: usize,
}

impl BatchShape {
    /// Tokens per optimizer step.
    pub fn tokens(&self) -> usize {
        self.seq_len * self.rows * self.accumulate
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The step just taken (from 1).
    pub step: u64,
    /// The mean loss over the step's counted targets (before the update).
    pub loss: f64,
    pub lr: f64,
    /// Tokens seen after this step.
    pub tokens: u64,
    /// The global L2 norm of the step's gradient, before clipping.
    pub grad_norm: f64,
}

/// The bytes each part of training holds on the device, from the allocations themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    pub master_weights: usize,
    pub compute_weights: usize,
    pub gradients: usize,
    pub optimizer_states: usize,
    /// The largest micro-batch's activations saved for its backward.
    pub saved_activations: usize,
}

impl MemoryReport {
    pub fn total(&self) -> usize {
        self.master_weights
            + self.compute_weights
            + self.gradients
            + self.optimizer_states
            + self.saved_activations
    }
}

/// A training run in progress.
pub struct Trainer<'a, T: TrainFloat> {
    pub model: Model<'a, T>,
    pub params: Params<T>,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub data: Packed,
    pub shape: BatchShape,
    /// Clip the gradients to this global L2 norm before each update (`None`: never).
    pub clip: Option<f32>,
    /// The most bytes a micro-batch's forward saved so far.
    pub peak_saved: usize,
    /// Steps taken.
    pub step: u64,
    /// Tokens seen (the rows' tokens, counted or not).
    pub tokens: u64,
}

impl<'a, T: TrainFloat> Trainer<'a, T> {
    pub fn new(
        device: &'a Device,
        config: &'a ModelConfig,
        params: Params<T>,
        (optimizer, schedule): (OptimizerConfig, Schedule),
        data: Packed,
        shape: BatchShape,
    ) -> Result<Self, TrainError> {
        if shape.rows == 0 || shape.accumulate == 0 {
            return Err(TrainError::Config(
                "a step needs at least one row and one micro-batch".into(),
            ));
        }
        if data.seq_len() != shape.seq_len {
            return Err(TrainError::Config(format!(
                "the data is packed in rows of {}, the batch shape says {}",
                data.seq_len(),
                shape.seq_len
            )));
        }
        let model = Model::new(device, config, shape.seq_len)?;
        let optimizer = Optimizer::new(device, &params, optimizer)?;
        Ok(Trainer {
            model,
            params,
            optimizer,
            schedule,
            data,
            shape,
            clip: Some(1.0),
            peak_saved: 0,
            step: 0,
            tokens: 0,
        })
    }

    /// Switches COAT's FP8 precision flow ([`super::fp8`]) on or off.
    pub fn with_fp8(mut self, on: bool) -> Result<Self, TrainError> {
        self.model = self.model.with_fp8(on)?;
        Ok(self)
    }

    /// WTA-CRS for the weight gradients ([`super::wta_crs`]): `(ratio of rows kept, seed)`.
    pub fn with_wta_crs(mut self, setting: Option<(f64, u64)>) -> Result<Self, TrainError> {
        self.model = self.model.with_wta_crs(setting)?;
        Ok(self)
    }

    /// The micro-batches of step `step` (from 0).
    pub fn batches(&self, step: u64) -> Vec<Batch> {
        let per_step = self.shape.accumulate as u64;
        (0..per_step)
            .map(|i| self.data.batch(step * per_step + i, self.shape.rows))
            .collect()
    }

    /// One optimizer step.
    pub fn step(&mut self) -> Result<StepStats, TrainError> {
        let batches = self.batches(self.step);
        let counted: usize = batches.iter().map(Batch::counted).sum();
        if counted == 0 {
            return Err(TrainError::Config(format!(
                "step {}: no token of the batch has a target (documents of one token?)",
                self.step + 1
            )));
        }
        let device = self.model.device;
        self.params.zero_grads(device)?;
        let scale = 1.0 / counted as f32;
        let mut loss = LossSum::default();
        for batch in &batches {
            let part = self
                .model
                .forward_backward(&mut self.params, batch, scale)?;
            loss.sum += part.sum;
            loss.counted += part.counted;
            self.peak_saved = self.peak_saved.max(part.saved_bytes);
        }
        let grad_norm = self.clip_gradients()?;
        let lr = self.schedule.lr(self.step, self.tokens);
        self.step += 1;
        self.optimizer
            .step(device, &mut self.params, lr as f32, self.step as u32)?;
        self.tokens += self.shape.tokens() as u64;
        Ok(StepStats {
            step: self.step,
            loss: loss.sum / loss.counted as f64,
            lr,
            tokens: self.tokens,
            grad_norm,
        })
    }

    /// The global gradient norm, the gradients clipped to [`Trainer::clip`] when set.
    fn clip_gradients(&mut self) -> Result<f64, TrainError> {
        let device = self.model.device;
        let limit = self.clip.unwrap_or(f32::INFINITY);
        let grads = &mut [&mut self.params.state.grad];
        Ok(clip::clip_global_norm(device, grads, limit)?)
    }

    /// The mean loss over every row of `data` (held-back text), no gradients.
    pub fn eval(&self, data: &Packed) -> Result<f64, TrainError> {
        let mut loss = LossSum::default();
        for batch in data.sequential(self.shape.rows) {
            let part = self.model.eval_loss(&self.params, &batch)?;
            loss.sum += part.sum;
            loss.counted += part.counted;
        }
        Ok(loss.sum / loss.counted.max(1) as f64)
    }

    /// The bytes of weights, gradients and optimizer states as allocated.
    pub fn memory(&self) -> MemoryReport {
        let (master, compute, grads, moments) = self.params.bytes();
        MemoryReport {
            master_weights: master,
            compute_weights: compute,
            gradients: grads,
            optimizer_states: moments,
            saved_activations: self.peak_saved,
        }
    }
}
