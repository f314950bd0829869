//! One training step of a Llama-family model on warpforge kernels, forward then backward,
//! top to bottom with no autograd (llm.c's shape): every layer's forward saves what its
//! backward reads, and the backward walks the layers in reverse.
//!
//! Forward, per packed batch (`rows` tokens, segments from [`super::data`]):
//! gather the embeddings → per layer: RMSNorm → q/k/v GEMMs → RoPE on q and k by each
//! token's position in its segment → causal varlen flash attention (LSE saved) → o GEMM
//! → residual add → RMSNorm → fused gate/up GEMM → SwiGLU → down GEMM → residual add →
//! final RMSNorm → LM head GEMM → fused softmax-cross-entropy, which writes the logits'
//! gradient in the same pass (scaled by 1 / the counted targets of the whole step, so
//! micro-batches add up to the mean).
//!
//! Backward, with `dx` the gradient of the residual stream: head (dhf = dlogits·W, dW =
//! dlogitsᵀ·hf) → final RMSNorm backward → per layer in reverse: down (dact = dx·W_down,
//! dW_down = dxᵀ·act) → SwiGLU backward → gate/up → RMSNorm backward added into dx →
//! o → attention backward (recomputed from the LSE) → RoPE backward → q/k/v (their input
//! gradients summed) → RMSNorm backward added into dx → embedding backward. Weight
//! gradients are f32 (tensor-core GEMMs with f32 output, deterministic column sums for the
//! norms, a deterministic scatter-add for the embedding) and accumulate over micro-batches.

use super::data::Batch;
use super::fp8::{self, Restored, Saved, F8E4M3};
use super::params::{Params, Role};
use super::wta_crs::{self, SplitMix};
use super::TrainFloat;
use crate::model::ModelConfig;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Buffer, Config, Device};
use warpforge_kernels::act::host as act;
use warpforge_kernels::attention::{self, AttnArgs, AttnShape, KvLayout};
use warpforge_kernels::embed::host::{self as embed, DeviceIndex, TokenIndex};
use warpforge_kernels::fp8::gemm as fp8_gemm;
use warpforge_kernels::gemm_tc::{self, Layout};
use warpforge_kernels::loss::host::{self as loss, IGNORE_INDEX};
use warpforge_kernels::norm::backward as norm_bwd;
use warpforge_kernels::norm::host::{self as norm, Rows};
use warpforge_kernels::prepack;
use warpforge_kernels::rope::{self, RopeShape};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Batch(String),
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
    #[error(transparent)]
    Attention(#[from] attention::AttnError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Embed(#[from] embed::EmbedError),
}

/// The device-side description of one batch.
struct BatchMeta {
    rows: usize,
    ids: Buffer<u32>,
    targets: Buffer<i32>,
    positions: Buffer<u32>,
    cu_seqlens: Buffer<u32>,
    no_table: Buffer<u32>,
    shape: AttnShape,
    index: DeviceIndex,
    /// Seeds WTA-CRS's row draws: a function of the batch, so a resumed run draws alike.
    sample_seed: u64,
}

/// A linear layer's input as its weight gradient reads it: whole, or WTA-CRS's rows.
enum WeightInput<T: TrainFloat> {
    All(Saved<T>),
    /// `k` rows of the input, each scaled by its estimator weight, and their row indices.
    Sampled {
        x: Buffer<T>,
        rows: Buffer<u32>,
        k: usize,
    },
}

impl<T: TrainFloat> WeightInput<T> {
    fn bytes(&self) -> usize {
        match self {
            WeightInput::All(s) => s.bytes(),
            WeightInput::Sampled { x, rows, .. } => {
                x.len() * T::SCALAR.size_bytes() + rows.len() * 4
            }
        }
    }
}

/// `(dq, dk, dv)`.
type QkvGrads<T> = (Buffer<T>, Buffer<T>, Buffer<T>);

/// The attention forward's `(q, k, v, o, lse)` as its backward reads them.
type AttnForward<'a, T> = (
    &'a Buffer<T>,
    &'a Buffer<T>,
    &'a Buffer<T>,
    &'a Buffer<T>,
    &'a Buffer<f32>,
);

/// What one layer's forward saves for its backward (in FP8 under COAT's flow: the linear
/// layers' inputs `h_in`, `o`, `h_post`, `act` per tensor, the rest per 1×16 group; under
/// WTA-CRS only the sampled rows of `h_in`, `h_post` and `act`, which only weight
/// gradients read).
struct LayerActs<T: TrainFloat> {
    x_in: Saved<T>,
    rstd_in: Buffer<f32>,
    h_in: WeightInput<T>,
    q: Saved<T>,
    k: Saved<T>,
    v: Saved<T>,
    o: Saved<T>,
    lse: Buffer<f32>,
    x_mid: Saved<T>,
    rstd_post: Buffer<f32>,
    h_post: WeightInput<T>,
    gate_up: Saved<T>,
    act: WeightInput<T>,
}

/// Everything the forward saves, and the loss.
struct Acts<T: TrainFloat> {
    layers: Vec<LayerActs<T>>,
    x_final: Buffer<T>,
    rstd_final: Buffer<f32>,
    h_final: Buffer<T>,
    dlogits: Buffer<T>,
    /// Per-row losses (0 where the target is ignored).
    row_loss: Buffer<f32>,
}

impl<T: TrainFloat> Acts<T> {
    /// Bytes of every saved buffer, as allocated.
    fn bytes(&self) -> usize {
        let t = |b: &Buffer<T>| b.len() * T::SCALAR.size_bytes();
        let f = |b: &Buffer<f32>| b.len() * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|a| {
                [&a.x_in, &a.q, &a.k, &a.v, &a.o, &a.x_mid, &a.gate_up]
                    .into_iter()
                    .map(Saved::bytes)
                    .sum::<usize>()
                    + [&a.h_in, &a.h_post, &a.act]
                        .into_iter()
                        .map(WeightInput::bytes)
                        .sum::<usize>()
                    + f(&a.rstd_in)
                    + f(&a.lse)
                    + f(&a.rstd_post)
            })
            .sum();
        layers
            + t(&self.x_final)
            + f(&self.rstd_final)
            + t(&self.h_final)
            + t(&self.dlogits)
            + f(&self.row_loss)
    }
}

/// Sums of one micro-batch's forward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    /// Σ of the per-token losses over counted targets.
    pub sum: f64,
    pub counted: usize,
    /// Bytes the forward saved for the backward (activations, LSEs, the logits' gradient).
    pub saved_bytes: usize,
}

/// The model's kernels on one device.
pub struct Model<'a, T: TrainFloat> {
    pub device: &'a Device,
    pub config: &'a ModelConfig,
    rope_table: Buffer<f32>,
    rope_rows: usize,
    /// COAT's FP8 precision flow ([`super::fp8`]) instead of bf16 throughout.
    fp8: bool,
    /// WTA-CRS's share of rows kept for the weight gradients ([`super::wta_crs`]) and the
    /// run's seed; `None`: every row.
    wta_crs: Option<(f64, u64)>,
    compute: std::marker::PhantomData<fn() -> T>,
}

impl<'a, T: TrainFloat> Model<'a, T> {
    /// Checks what the kernels need of `config` and uploads the RoPE table for
    /// `max_positions` positions.
    pub fn new(
        device: &'a Device,
        config: &'a ModelConfig,
        max_positions: usize,
    ) -> Result<Self, StepError> {
        check_config(config)?;
        let rope = crate::engine::weights::kernel_rope(config);
        let rope_table = device.upload(&rope.table(max_positions))?;
        Ok(Model {
            device,
            config,
            rope_table,
            rope_rows: max_positions,
            fp8: false,
            wta_crs: None,
            compute: std::marker::PhantomData,
        })
    }

    /// Switches COAT's FP8 precision flow on or off: it needs bf16 compute (the FP8 GEMM
    /// writes bf16) and every linear layer's dims a multiple of 16 (FP8 rows of 16 bytes).
    pub fn with_fp8(mut self, on: bool) -> Result<Self, StepError> {
        if on {
            if T::SCALAR != warpforge_dsl::ScalarType::BF16 {
                return Err(StepError::Batch(
                    "the FP8 precision flow computes in bf16".into(),
                ));
            }
            let c = self.config;
            for (name, v) in [
                ("hidden_size", c.hidden_size),
                ("intermediate_size", c.intermediate_size),
                ("q_dim", c.q_dim()),
                ("kv_dim", c.kv_dim()),
            ] {
                if v % 16 != 0 {
                    return Err(StepError::Batch(format!(
                        "{name} = {v}: FP8 training needs a multiple of 16"
                    )));
                }
            }
        }
        self.fp8 = on;
        Ok(self)
    }

    /// WTA-CRS for the decoder's weight gradients: keep `ratio` (in (0, 1]) of the rows,
    /// drawn from `seed` and the batch; `None` turns it off.
    pub fn with_wta_crs(mut self, setting: Option<(f64, u64)>) -> Result<Self, StepError> {
        if let Some((ratio, _)) = setting {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(StepError::Batch(format!(
                    "WTA-CRS ratio {ratio}: the share of rows kept is in (0, 1]"
                )));
            }
        }
        self.wta_crs = setting;
        Ok(self)
    }

    /// Whether the FP8 precision flow is on.
    pub fn fp8(&self) -> bool {
        self.fp8
    }

    /// Forward and backward of one micro-batch: the weight gradients are added into each
    /// parameter's gradient; `grad_scale` is 1 / the counted targets of the whole step.
    pub fn forward_backward(
        &self,
        params: &mut Params<T>,
        batch: &Batch,
        grad_scale: f32,
    ) -> Result<LossSum, StepError> {
        let meta = self.upload_batch(batch)?;
        let acts = self.forward(params, &meta, Some(grad_scale))?;
        let loss = self.loss_sum(&acts, batch)?;
        self.backward(params, &meta, acts)?;
        Ok(loss)
    }

    /// The loss of a batch without gradients (evaluation).
    pub fn eval_loss(&self, params: &Params<T>, batch: &Batch) -> Result<LossSum, StepError> {
        let meta = self.upload_batch(batch)?;
        let acts = self.forward(params, &meta, None)?;
        self.loss_sum(&acts, batch)
    }

    fn loss_sum(&self, acts: &Acts<T>, batch: &Batch) -> Result<LossSum, StepError> {
        let rows = self.device.download(&acts.row_loss)?;
        Ok(LossSum {
            sum: rows.iter().map(|&l| l as f64).sum(),
            counted: batch.counted(),
            saved_bytes: acts.bytes(),
        })
    }

    fn upload_batch(&self, batch: &Batch) -> Result<BatchMeta, StepError> {
        let vocab = self.config.vocab_size;
        if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(StepError::Batch(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        if let Some(&p) = batch
            .positions
            .iter()
            .find(|&&p| p as usize >= self.rope_rows)
        {
            return Err(StepError::Batch(format!(
                "position {p} is past the {} positions the RoPE table covers",
                self.rope_rows
            )));
        }
        let lens = batch.lengths();
        let c = self.config;
        let shape = AttnShape {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            causal: true,
            q_lens: lens.clone(),
            k_lens: lens,
        };
        let d = self.device;
        let index = TokenIndex::build(&batch.tokens, vocab)?;
        Ok(BatchMeta {
            rows: batch.tokens.len(),
            ids: d.upload(&batch.tokens)?,
            targets: d.upload(&batch.targets)?,
            positions: d.upload(&batch.positions)?,
            cu_seqlens: d.upload(&batch.cu_seqlens)?,
            no_table: d.upload(&[0u32])?,
            shape,
            index: DeviceIndex::upload(d, &index)?,
            sample_seed: batch_hash(batch),
        })
    }

    /// The forward; `grad_scale` is `None` when no backward follows (evaluation).
    fn forward(
        &self,
        params: &Params<T>,
        meta: &BatchMeta,
        grad_scale: Option<f32>,
    ) -> Result<Acts<T>, StepError> {
        let (rows, hidden) = (meta.rows, self.config.hidden_size);
        let mut x = self.zeros::<T>(rows * hidden)?;
        let gather = prepack::gather_rows::def().space.default_config();
        let embed = params.w(Role::Embed)?;
        prepack::launch_gather_rows(self.device, &gather, (&embed, &meta.ids), &mut x, hidden)?;
        let mut layers = Vec::with_capacity(self.config.num_hidden_layers);
        for l in 0..self.config.num_hidden_layers {
            let (acts, x_out) = self.layer_forward(params, l, x, meta, grad_scale.is_some())?;
            layers.push(acts);
            x = x_out;
        }
        let (h_final, rstd_final) = self.rms_norm(&x, &*params.w(Role::FinalNorm)?, rows)?;
        let vocab = self.config.vocab_size;
        let head = params.w(params.head_role())?;
        let logits = self.nt::<T>(&h_final, &head, (rows, vocab, hidden))?;
        let mut row_loss = self.zeros::<f32>(rows)?;
        let mut dlogits = self.zeros::<T>(rows * vocab)?;
        let shape = loss::Logits {
            rows: rows as u32,
            cols: vocab as u32,
            ld: vocab as u32,
        };
        loss::launch_cross_entropy(
            self.device,
            &(T::CROSS_ENTROPY)().space.default_config(),
            (&logits, &meta.targets),
            (&mut row_loss, &mut dlogits),
            shape,
            (IGNORE_INDEX, grad_scale.unwrap_or(0.0)),
        )?;
        Ok(Acts {
            layers,
            x_final: x,
            rstd_final,
            h_final,
            dlogits,
            row_loss,
        })
    }

    /// One decoder layer: the saved activations and the residual stream after it.
    fn layer_forward(
        &self,
        params: &Params<T>,
        l: usize,
        x_in: Buffer<T>,
        meta: &BatchMeta,
        training: bool,
    ) -> Result<(LayerActs<T>, Buffer<T>), StepError> {
        let c = self.config;
        let (rows, h, m) = (meta.rows, c.hidden_size, c.intermediate_size);
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        let (h_in, rstd_in) = self.rms_norm(&x_in, &*params.w(Role::InputNorm(l))?, rows)?;
        let h_in = self.linear_input(h_in, (rows, h))?;
        let mut q = self.linear(&h_in, &*params.w(Role::Q(l))?, (rows, qd, h))?;
        let mut k = self.linear(&h_in, &*params.w(Role::K(l))?, (rows, kvd, h))?;
        let v = self.linear(&h_in, &*params.w(Role::V(l))?, (rows, kvd, h))?;
        self.rope(&mut q, &mut k, meta)?;
        let (o, lse) = self.attention(l, (&q, &k, &v), meta)?;
        let o = self.linear_input(o, (rows, qd))?;
        // T(attn + x) = T(x + attn): the residual add in place on the projection's output.
        let mut x_mid = self.linear(&o, &*params.w(Role::O(l))?, (rows, h, qd))?;
        self.add(&mut x_mid, &x_in)?;
        let (h_post, rstd_post) = self.rms_norm(&x_mid, &*params.w(Role::PostNorm(l))?, rows)?;
        let h_post = self.linear_input(h_post, (rows, h))?;
        let gate_up = self.linear(&h_post, &*params.w(Role::GateUp(l))?, (rows, 2 * m, h))?;
        let mut act = self.zeros::<T>(rows * m)?;
        let swiglu = (T::SWIGLU)().space.default_config();
        act::launch_swiglu(self.device, &swiglu, &gate_up, &mut act, (rows, m))?;
        let act = self.linear_input(act, (rows, m))?;
        let mut x_out = self.linear(&act, &*params.w(Role::Down(l))?, (rows, h, m))?;
        self.add(&mut x_out, &x_mid)?;
        let sampler = |x, cols, slot| match training {
            true => self.weight_input(x, (rows, cols), meta, 3 * l as u64 + slot),
            false => Ok(WeightInput::All(x)),
        };
        let h_in = sampler(h_in, h, 0)?;
        let h_post = sampler(h_post, h, 1)?;
        let act = sampler(act, m, 2)?;
        let acts = LayerActs {
            x_in: self.nonlinear_input(x_in, (rows, h))?,
            rstd_in,
            h_in,
            q: self.nonlinear_input(q, (rows, qd))?,
            k: self.nonlinear_input(k, (rows, kvd))?,
            v: self.nonlinear_input(v, (rows, kvd))?,
            o,
            lse,
            x_mid: self.nonlinear_input(x_mid, (rows, h))?,
            rstd_post,
            h_post,
            gate_up: self.nonlinear_input(gate_up, (rows, 2 * m))?,
            act,
        };
        Ok((acts, x_out))
    }

    fn backward(
        &self,
        params: &mut Params<T>,
        meta: &BatchMeta,
        acts: Acts<T>,
    ) -> Result<(), StepError> {
        let (rows, h, vocab) = (meta.rows, self.config.hidden_size, self.config.vocab_size);
        let head = params.head_role();
        let dh_final = self.nn(&acts.dlogits, &*params.w(head)?, (rows, h, vocab))?;
        self.weight_grad(
            params,
            head,
            (&acts.dlogits, &acts.h_final),
            (vocab, h, rows),
        )?;
        let saved = (&acts.x_final, &acts.rstd_final, &dh_final);
        let mut dx = self.rms_norm_bwd(params, Role::FinalNorm, saved, rows)?;
        for (l, layer) in acts.layers.into_iter().enumerate().rev() {
            dx = self.layer_backward(params, l, layer, dx, meta)?;
        }
        let mut d_embed = self.zeros::<f32>(vocab * h)?;
        let config = (T::EMBEDDING_BWD)().space.default_config();
        let index = (&dx, &meta.index);
        embed::launch_embedding_bwd(self.device, &config, index, &mut d_embed, h as u32)?;
        self.accumulate(params, Role::Embed, &d_embed)
    }

    /// One layer's backward: `dx` is the gradient of the layer's output; returns its
    /// input's.
    fn layer_backward(
        &self,
        params: &mut Params<T>,
        l: usize,
        la: LayerActs<T>,
        mut dx: Buffer<T>,
        meta: &BatchMeta,
    ) -> Result<Buffer<T>, StepError> {
        let c = self.config;
        let (rows, h, m) = (meta.rows, c.hidden_size, c.intermediate_size);
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        let d = self.device;
        // MLP: x_out = x_mid + down(swiglu(gate_up(norm(x_mid)))).
        let dy = self.output_grad(&dx, (rows, h))?;
        let d_act = self.nn(&dy, &*params.w(Role::Down(l))?, (rows, m, h))?;
        self.weight_grads(params, &[(Role::Down(l), &dy, h)], &la.act, m)?;
        let mut d_gate_up = self.zeros::<T>(rows * 2 * m)?;
        let config = (T::SWIGLU_BWD)().space.default_config();
        let saved = (&*la.gate_up.restore(d)?, &d_act);
        act::launch_swiglu_bwd(self.device, &config, saved, &mut d_gate_up, (rows, m))?;
        let dy = self.output_grad(&d_gate_up, (rows, 2 * m))?;
        let dh_post = self.nn(&dy, &*params.w(Role::GateUp(l))?, (rows, h, 2 * m))?;
        self.weight_grads(params, &[(Role::GateUp(l), &dy, 2 * m)], &la.h_post, h)?;
        let saved = (&*la.x_mid.restore(d)?, &la.rstd_post, &dh_post);
        let d_norm = self.rms_norm_bwd(params, Role::PostNorm(l), saved, rows)?;
        self.add(&mut dx, &d_norm)?;
        // Attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v)).
        let dy = self.output_grad(&dx, (rows, h))?;
        let d_o = self.nn(&dy, &*params.w(Role::O(l))?, (rows, qd, h))?;
        let o = la.o.restore(d)?;
        self.weight_grad(params, Role::O(l), (&dy, &o), (h, qd, rows))?;
        let (q, k, v) = (la.q.restore(d)?, la.k.restore(d)?, la.v.restore(d)?);
        let forward = (&*q, &*k, &*v, &*o, &la.lse);
        let (mut dq, mut dk, dv) = self.attention_backward(l, forward, &d_o, meta)?;
        self.rope_backward(&mut dq, &mut dk, meta)?;
        let dq = self.output_grad(&dq, (rows, qd))?;
        let dk = self.output_grad(&dk, (rows, kvd))?;
        let dv = self.output_grad(&dv, (rows, kvd))?;
        let mut dh_in = self.nn(&dq, &*params.w(Role::Q(l))?, (rows, h, qd))?;
        self.add(
            &mut dh_in,
            &self.nn(&dk, &*params.w(Role::K(l))?, (rows, h, kvd))?,
        )?;
        self.add(
            &mut dh_in,
            &self.nn(&dv, &*params.w(Role::V(l))?, (rows, h, kvd))?,
        )?;
        let qkv = [
            (Role::Q(l), &*dq, qd),
            (Role::K(l), &*dk, kvd),
            (Role::V(l), &*dv, kvd),
        ];
        self.weight_grads(params, &qkv, &la.h_in, h)?;
        let saved = (&*la.x_in.restore(d)?, &la.rstd_in, &dh_in);
        let d_norm = self.rms_norm_bwd(params, Role::InputNorm(l), saved, rows)?;
        self.add(&mut dx, &d_norm)?;
        Ok(dx)
    }

    /// A linear layer's input as the forward saves it: per-tensor E4M3 under FP8 (the
    /// codes its FP8 GEMM reads), else as computed.
    fn linear_input(&self, x: Buffer<T>, dims: (usize, usize)) -> Result<Saved<T>, StepError> {
        Ok(match self.fp8 {
            true => Saved::Fp8(fp8::quantize_tensor::<F8E4M3, T>(self.device, &x, dims)?),
            false => Saved::Full(x),
        })
    }

    /// A non-linear layer's input as the forward saves it: E4M3 per 1×16 group under FP8.
    fn nonlinear_input(&self, x: Buffer<T>, dims: (usize, usize)) -> Result<Saved<T>, StepError> {
        Ok(match self.fp8 {
            true => Saved::Fp8(fp8::quantize_groups(self.device, &x, dims)?),
            false => Saved::Full(x),
        })
    }

    /// A linear layer's input kept for its weight gradients: whole, or under WTA-CRS the
    /// planned rows scaled by their weights (planned on the host from the rows' norms).
    fn weight_input(
        &self,
        x: Saved<T>,
        (rows, cols): (usize, usize),
        meta: &BatchMeta,
        slot: u64,
    ) -> Result<WeightInput<T>, StepError> {
        let Some((ratio, seed)) = self.wta_crs else {
            return Ok(WeightInput::All(x));
        };
        let d = self.device;
        let values = d.download(&*x.restore(d)?)?;
        let norms: Vec<f32> = values[..rows * cols]
            .chunks(cols)
            .map(|r| r.iter().map(|v| v.to_f32().powi(2)).sum::<f32>().sqrt())
            .collect();
        let k = wta_crs::kept_rows(rows, ratio);
        let mut rng = SplitMix(seed ^ meta.sample_seed ^ slot.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let sample = wta_crs::plan(&norms, k, &mut rng);
        let mut kept = Vec::with_capacity(k * cols);
        for (&r, &w) in sample.rows.iter().zip(&sample.weights) {
            let row = &values[r as usize * cols..(r as usize + 1) * cols];
            kept.extend(row.iter().map(|v| T::from_f32(v.to_f32() * w)));
        }
        Ok(WeightInput::Sampled {
            x: d.upload(&kept)?,
            rows: d.upload(&sample.rows)?,
            k,
        })
    }

    /// `dW += dyᵀ · x` for each `(role, dy, out)` sharing the input `x` (`in` columns):
    /// over every row, or over WTA-CRS's rows (the same rows of `dy` gathered).
    fn weight_grads(
        &self,
        params: &mut Params<T>,
        grads: &[(Role, &Buffer<T>, usize)],
        x: &WeightInput<T>,
        cols: usize,
    ) -> Result<(), StepError> {
        match x {
            WeightInput::All(saved) => {
                let x = saved.restore(self.device)?;
                let rows = x.len() / cols;
                for &(role, dy, out) in grads {
                    self.weight_grad(params, role, (dy, &x), (out, cols, rows))?;
                }
            }
            WeightInput::Sampled { x, rows, k } => {
                let gather = prepack::gather_rows::def().space.default_config();
                for &(role, dy, out) in grads {
                    let mut dy_kept = self.zeros::<T>(k * out)?;
                    let io = (dy, rows);
                    prepack::launch_gather_rows(self.device, &gather, io, &mut dy_kept, out)?;
                    self.weight_grad(params, role, (&dy_kept, x), (out, cols, *k))?;
                }
            }
        }
        Ok(())
    }

    /// A linear layer's output gradient as its backward GEMMs read it: rounded through
    /// per-tensor E5M2 under FP8.
    fn output_grad<'b>(
        &self,
        dy: &'b Buffer<T>,
        dims: (usize, usize),
    ) -> Result<Restored<'b, T>, StepError> {
        Ok(match self.fp8 {
            true => Restored::Owned(fp8::round_gradient(self.device, dy, dims)?),
            false => Restored::Borrowed(dy),
        })
    }

    /// `y[m×n] = x[m×k] · w[n×k]ᵀ` on the saved input: the FP8 GEMM on its codes and the
    /// weight's per-tensor E4M3 codes, or the bf16 GEMM.
    fn linear(
        &self,
        x: &Saved<T>,
        w: &Buffer<T>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Buffer<T>, StepError> {
        let xq = match x {
            Saved::Full(x) => return self.nt::<T>(x, w, (m, n, k)),
            Saved::Fp8(xq) => xq,
        };
        let wq = fp8::quantize_tensor::<F8E4M3, T>(self.device, w, (n, k))?;
        let mut y = self.zeros::<T>(m * n)?;
        let def = fp8_gemm::def_of(warpforge_dsl::ScalarType::BF16).expect("a bf16 FP8 GEMM");
        fp8_gemm::launch::<T>(
            self.device,
            &def.space.default_config(),
            fp8_gemm::Scaling::Tensor,
            (&xq.codes, &wq.codes),
            (&xq.scales, &wq.scales),
            &mut y,
            (m as u32, n as u32, k as u32),
        )?;
        Ok(y)
    }

    fn zeros<E: warpforge_dsl::Element>(&self, n: usize) -> Result<Buffer<E>, DeviceError> {
        self.device.zeros(n.max(1))
    }

    /// `acc = T(acc + x)` over the whole buffer.
    fn add(&self, acc: &mut Buffer<T>, x: &Buffer<T>) -> Result<(), StepError> {
        let n = acc.len();
        act::launch_add(self.device, &add_config::<T>(), acc, x, n)?;
        Ok(())
    }

    /// RMSNorm of `rows` rows: `(y, rstd)`.
    fn rms_norm(
        &self,
        x: &Buffer<T>,
        weight: &Buffer<T>,
        rows: usize,
    ) -> Result<(Buffer<T>, Buffer<f32>), StepError> {
        let cols = self.config.hidden_size;
        let mut y = self.zeros::<T>(rows * cols)?;
        let mut rstd = self.zeros::<f32>(rows)?;
        let eps = self.config.rms_norm_eps as f32;
        let config = (T::RMSNORM)().space.default_config();
        let shape = Rows::padded(rows, cols);
        let io = (&mut y, &mut rstd);
        norm::launch_rmsnorm(self.device, &config, (x, weight), io, shape, eps)?;
        Ok((y, rstd))
    }

    /// RMSNorm backward: the input gradient; the weight gradient goes into `role`'s.
    fn rms_norm_bwd(
        &self,
        params: &mut Params<T>,
        role: Role,
        (x, rstd, dy): (&Buffer<T>, &Buffer<f32>, &Buffer<T>),
        rows: usize,
    ) -> Result<Buffer<T>, StepError> {
        let cols = self.config.hidden_size;
        let shape = Rows::padded(rows, cols);
        let mut dx = self.zeros::<T>(rows * cols)?;
        let config = (T::RMSNORM_BWD)().space.default_config();
        let weight = params.w(role)?;
        let saved = (x, &*weight, dy, rstd);
        norm_bwd::launch_rmsnorm_bwd(self.device, &config, saved, &mut dx, shape)?;
        drop(weight);
        let config = (T::RMSNORM_DWEIGHT)().space.default_config();
        let chunks = norm_bwd::chunks(&config, rows as u32) as usize;
        let mut partial = self.zeros::<f32>(chunks * shape.ld as usize)?;
        let mut dweight = self.zeros::<f32>(shape.ld as usize)?;
        let out = (&mut partial, &mut dweight);
        norm_bwd::launch_rmsnorm_dweight(self.device, &config, (x, dy, rstd), out, shape)?;
        self.accumulate(params, role, &dweight)?;
        Ok(dx)
    }

    /// `y[m×n] = a[m×k] · w[n×k]ᵀ` (a Linear layer's forward).
    fn nt<O: TrainFloat>(
        &self,
        a: &Buffer<T>,
        w: &Buffer<T>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Buffer<O>, StepError> {
        let mut y = self.zeros::<O>(m * n)?;
        let dims = (m as u32, n as u32, k as u32);
        let config = gemm_config(Layout::Nt);
        let lds = (k as u32, k as u32, n as u32);
        gemm_tc::launch::<T, O>(self.device, &config, Layout::Nt, a, w, &mut y, dims, lds)?;
        Ok(y)
    }

    /// `y[m×n] = a[m×k] · w[k×n]` (a Linear layer's input gradient, `w` as stored).
    fn nn(
        &self,
        a: &Buffer<T>,
        w: &Buffer<T>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Buffer<T>, StepError> {
        let mut y = self.zeros::<T>(m * n)?;
        let dims = (m as u32, n as u32, k as u32);
        let config = gemm_config(Layout::Nn);
        let lds = (k as u32, n as u32, n as u32);
        gemm_tc::launch::<T, T>(self.device, &config, Layout::Nn, a, w, &mut y, dims, lds)?;
        Ok(y)
    }

    /// `dW[m×n] += dyᵀ · x` over `k` rows (`dy` is `k×m`, `x` is `k×n`): the tensor-core
    /// GEMM with a transposed A accumulating into the f32 gradient.
    fn weight_grad(
        &self,
        params: &mut Params<T>,
        role: Role,
        (dy, x): (&Buffer<T>, &Buffer<T>),
        (m, n, k): (usize, usize, usize),
    ) -> Result<(), StepError> {
        let dims = (m as u32, n as u32, k as u32);
        let config = gemm_config(Layout::Tn);
        let lds = (m as u32, n as u32, n as u32);
        params.grad_mut(role)?.with(|grad| {
            gemm_tc::launch_tn_accumulate::<T, f32>(self.device, &config, dy, x, grad, dims, lds)
        })?;
        Ok(())
    }

    /// `role`'s gradient `+= g` (f32; `g` may be longer, its tail is padding).
    fn accumulate(
        &self,
        params: &mut Params<T>,
        role: Role,
        g: &Buffer<f32>,
    ) -> Result<(), StepError> {
        let n = params.get(role).len();
        if g.len() < n {
            return Err(StepError::Batch(format!(
                "gradient of {role:?}: {} values for {n}",
                g.len()
            )));
        }
        let config = add_config::<f32>();
        params
            .grad_mut(role)?
            .with(|grad| act::launch_add::<f32>(self.device, &config, grad, g, n))?;
        Ok(())
    }

    fn rope_shape(&self, rows: usize) -> RopeShape {
        let c = self.config;
        RopeShape {
            tokens: rows,
            q_heads: c.num_attention_heads,
            k_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            rotary_dim: c.head_dim,
            table_rows: self.rope_rows,
        }
    }

    fn rope(
        &self,
        q: &mut Buffer<T>,
        k: &mut Buffer<T>,
        meta: &BatchMeta,
    ) -> Result<(), StepError> {
        let config = (T::ROPE)().space.default_config();
        let tables = (&meta.positions, &self.rope_table);
        let shape = self.rope_shape(meta.rows);
        rope::launch_rope(self.device, &config, (q, k), tables, shape)?;
        Ok(())
    }

    fn rope_backward(
        &self,
        dq: &mut Buffer<T>,
        dk: &mut Buffer<T>,
        meta: &BatchMeta,
    ) -> Result<(), StepError> {
        let config = (T::ROPE)().space.default_config();
        let tables = (&meta.positions, &self.rope_table);
        let shape = self.rope_shape(meta.rows);
        rope::launch_rope_bwd(self.device, &config, (dq, dk), tables, shape)?;
        Ok(())
    }

    fn scale(&self) -> f32 {
        1.0 / (self.config.head_dim as f32).sqrt()
    }

    fn window(&self, l: usize) -> Option<u32> {
        self.config.layer_windows[l].map(|w| w as u32)
    }

    /// Causal varlen attention over the batch's segments: `(o, lse)`.
    fn attention(
        &self,
        l: usize,
        (q, k, v): (&Buffer<T>, &Buffer<T>, &Buffer<T>),
        meta: &BatchMeta,
    ) -> Result<(Buffer<T>, Buffer<f32>), StepError> {
        let c = self.config;
        let mut o = self.zeros::<T>(meta.rows * c.q_dim())?;
        let mut lse = self.zeros::<f32>(meta.rows * c.num_attention_heads)?;
        let args = AttnArgs {
            q,
            k,
            v,
            o: &mut o,
            lse: &mut lse,
            cu_seqlens_q: &meta.cu_seqlens,
            cu_seqlens_k: &meta.cu_seqlens,
            block_table: &meta.no_table,
            kv_layout: KvLayout::Contiguous,
            window: self.window(l),
        };
        let config = attention::default_config(c.head_dim);
        attention::launch_with(self.device, &config, &meta.shape, args, self.scale())?;
        Ok((o, lse))
    }

    /// `(dq, dk, dv)` from the saved forward and `d_o`, recomputed from the LSE.
    fn attention_backward(
        &self,
        l: usize,
        (q, k, v, o, lse): AttnForward<'_, T>,
        d_o: &Buffer<T>,
        meta: &BatchMeta,
    ) -> Result<QkvGrads<T>, StepError> {
        let c = self.config;
        let mut dq = self.zeros::<T>(meta.rows * c.q_dim())?;
        let mut dk = self.zeros::<T>(meta.rows * c.kv_dim())?;
        let mut dv = self.zeros::<T>(meta.rows * c.kv_dim())?;
        let mut scratch = self.zeros::<f32>(attention::backward_scratch_len(&meta.shape))?;
        let args = attention::AttnBwdArgs {
            q,
            k,
            v,
            o,
            d_o,
            lse,
            cu_seqlens_q: &meta.cu_seqlens,
            cu_seqlens_k: &meta.cu_seqlens,
            dq: &mut dq,
            dk: &mut dk,
            dv: &mut dv,
            scratch: &mut scratch,
            window: self.window(l),
        };
        attention::backward_launch_with(self.device, &meta.shape, self.scale(), args)?;
        Ok((dq, dk, dv))
    }
}

/// FNV-1a over the batch's tokens and positions.
fn batch_hash(batch: &Batch) -> u64 {
    let words = batch.tokens.iter().chain(&batch.positions);
    words.fold(0xcbf2_9ce4_8422_2325, |h, &w| {
        (h ^ w as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn add_config<E: act::ActFloat>() -> Config {
    (E::ADD)().space.default_config()
}

/// The GEMMs' default config for a layout.
fn gemm_config(layout: Layout) -> Config {
    let def = gemm_tc::def_of(
        layout,
        warpforge_dsl::ScalarType::BF16,
        warpforge_dsl::ScalarType::F32,
    )
    .expect("every layout has a bf16 → f32 instance");
    def.space.default_config()
}

/// What the kernels need of a config's dims: every GEMM dimension a multiple of 8 (16-byte
/// rows), head dims the attention and RoPE kernels take, no biases.
pub fn check_config(c: &ModelConfig) -> Result<(), StepError> {
    let bad = |m: String| Err(StepError::Batch(m));
    for (name, v) in [
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("vocab_size", c.vocab_size),
    ] {
        if v == 0 || v % 8 != 0 {
            return bad(format!(
                "{name} = {v}: training needs a positive multiple of 8"
            ));
        }
    }
    if !c.head_dim.is_multiple_of(16) {
        return bad(format!(
            "head_dim = {}: training needs a multiple of 16 (RoPE's unit pairs)",
            c.head_dim
        ));
    }
    if c.qkv_bias || c.o_bias {
        return bad("training models with attention biases is not supported yet".into());
    }
    Ok(())
}
