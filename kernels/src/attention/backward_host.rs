//! Host side of the flash-attention backward: instances, default configs, launch dims, the
//! borrowed-operand launch the training step calls ([`backward_launch_with`]), owned
//! buffers and a run helper for tests, deterministic inputs and the tolerance.

use super::backward::{
    flash_attn_bwd_dkdv_bf16, flash_attn_bwd_dkdv_f16, flash_attn_bwd_dot_bf16,
    flash_attn_bwd_dot_f16, flash_attn_bwd_dq_bf16, flash_attn_bwd_dq_f16,
};
use super::backward_reference::forward_reference;
use super::host::{check_scale, inputs};
use super::reference::{AttnError, AttnShape};
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// The head dimensions the backward kernels cover.
pub const BWD_HEAD_DIMS: [usize; 4] = [32, 64, 96, 128];

/// Which of the three backward kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BwdKernel {
    /// D = rowsum(dO∘O).
    Dot,
    /// dK, dV.
    DkDv,
    /// dQ.
    Dq,
}

/// The instance of `kernel` for element type `t` (f16 or bf16).
pub fn bwd_def_of(kernel: BwdKernel, t: ScalarType) -> Option<&'static KernelDef> {
    let bf = match t {
        ScalarType::F16 => false,
        ScalarType::BF16 => true,
        _ => return None,
    };
    Some(match (kernel, bf) {
        (BwdKernel::Dot, false) => flash_attn_bwd_dot_f16::def(),
        (BwdKernel::Dot, true) => flash_attn_bwd_dot_bf16::def(),
        (BwdKernel::DkDv, false) => flash_attn_bwd_dkdv_f16::def(),
        (BwdKernel::DkDv, true) => flash_attn_bwd_dkdv_bf16::def(),
        (BwdKernel::Dq, false) => flash_attn_bwd_dq_f16::def(),
        (BwdKernel::Dq, true) => flash_attn_bwd_dq_bf16::def(),
    })
}

/// One config per backward kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct BwdConfigs {
    pub dot: Config,
    pub dkdv: Config,
    pub dq: Config,
}

/// The first of `preferred` (tunable values after HEAD_DIM, in the kernel's order) that
/// `kernel`'s space admits at `head_dim`, else the space's default with that head dim.
fn first_valid(kernel: BwdKernel, head_dim: usize, names: &[&str], preferred: &[&[i64]]) -> Config {
    let space = &bwd_def_of(kernel, ScalarType::F16)
        .expect("f16 instance")
        .space;
    let make = |values: &[i64]| {
        let mut c = Config::new().with("HEAD_DIM", head_dim as i64);
        for (n, &v) in names.iter().zip(values) {
            c = c.with(n, v);
        }
        c
    };
    preferred
        .iter()
        .map(|v| make(v))
        .find(|c| space.satisfies(c).is_ok())
        .unwrap_or_else(|| space.default_config().with("HEAD_DIM", head_dim as i64))
}

/// The default configs per head dim (sm_80–sm_90, mma.sync): dkdv 64 keys over 4 warps
/// (one m16 key tile a warp) with query tiles of 64 rows at d = 64, else 32 (d ≥ 96: the
/// dK/dV accumulators take d registers a thread; d = 32: 64 rows spilled a word on sm_80),
/// double-buffered; dq 64 query rows over 4
/// warps with key tiles of 64 (d ≤ 64) or 32; the D pass 8 warps (a row each).
pub fn bwd_default_configs(head_dim: usize) -> BwdConfigs {
    let wide = head_dim > 64;
    let dkdv: &[&[i64]] = if wide {
        &[&[64, 32, 4, 2], &[32, 32, 2, 2]]
    } else {
        &[&[64, 64, 4, 2], &[64, 32, 4, 2]]
    };
    // At d = 32 the 64-row query tile made ptxas spill one word on sm_80/89.
    let dkdv: &[&[i64]] = if head_dim == 32 {
        &[&[64, 32, 4, 2]]
    } else {
        dkdv
    };
    let dq: &[&[i64]] = if wide {
        &[&[64, 32, 4, 2], &[32, 32, 2, 2]]
    } else {
        &[&[64, 64, 4, 2], &[64, 32, 4, 2]]
    };
    let tiles = ["BLOCK_N", "BLOCK_M", "WARPS", "STAGES"];
    let tiles_q = ["BLOCK_M", "BLOCK_N", "WARPS", "STAGES"];
    BwdConfigs {
        dot: first_valid(BwdKernel::Dot, head_dim, &["WARPS"], &[&[8]]),
        dkdv: first_valid(BwdKernel::DkDv, head_dim, &tiles, dkdv),
        dq: first_valid(BwdKernel::Dq, head_dim, &tiles_q, dq),
    }
}

/// Checks a shape for the backward: as [`AttnShape::validate`] but with the backward's head
/// dims ([`BWD_HEAD_DIMS`]).
pub fn validate_backward(shape: &AttnShape) -> Result<(), AttnError> {
    if !BWD_HEAD_DIMS.contains(&shape.head_dim) {
        return Err(AttnError::Shape(format!(
            "the attention backward takes head_dim {:?}, not {}",
            BWD_HEAD_DIMS, shape.head_dim
        )));
    }
    // The forward's checks at a head dim it has, then the u32 bound at the real one.
    AttnShape {
        head_dim: 64,
        ..shape.clone()
    }
    .validate()?;
    let rows = shape.total_q().max(shape.total_k());
    if rows * shape.heads * shape.head_dim > u32::MAX as usize {
        return Err(AttnError::Shape(
            "the packed tensors exceed 2^32 elements (u32 indexing)".into(),
        ));
    }
    Ok(())
}

/// f32 elements of the scratch buffer [`backward_launch_with`] needs: D, `[heads, total_q]`.
pub fn backward_scratch_len(shape: &AttnShape) -> usize {
    shape.heads * shape.total_q()
}

/// Launch dims of `kernel` with `config` on `shape`.
pub fn bwd_dims(kernel: BwdKernel, config: &Config, shape: &AttnShape) -> LaunchDims {
    let get = |name: &str| config.get(name).unwrap_or(64) as u32;
    let longest = |lens: &[usize]| lens.iter().copied().max().unwrap_or(0) as u32;
    let block = [32 * get("WARPS"), 1, 1];
    let seqs = shape.sequences() as u32;
    let grid = match kernel {
        BwdKernel::Dot => [
            ((shape.total_q() * shape.heads) as u32)
                .div_ceil(get("WARPS"))
                .max(1),
            1,
            1,
        ],
        BwdKernel::DkDv => [
            longest(&shape.k_lens).div_ceil(get("BLOCK_N")).max(1),
            shape.kv_heads as u32,
            seqs,
        ],
        BwdKernel::Dq => [
            longest(&shape.q_lens).div_ceil(get("BLOCK_M")).max(1),
            shape.heads as u32,
            seqs,
        ],
    };
    LaunchDims { grid, block }
}

/// Borrowed operands of the backward (layouts of the forward): Q, O, dO `[total_q, heads,
/// d]`; K, V `[total_k, kv_heads, d]`; the forward's LSE `[heads, total_q]`; the outputs dQ,
/// dK, dV laid out as Q, K, V (every row the shape covers is written: no zeroing needed);
/// `scratch` holds at least [`backward_scratch_len`] f32s (D).
pub struct AttnBwdArgs<'a, T: Element> {
    pub q: &'a Buffer<T>,
    pub k: &'a Buffer<T>,
    pub v: &'a Buffer<T>,
    pub o: &'a Buffer<T>,
    pub d_o: &'a Buffer<T>,
    pub lse: &'a Buffer<f32>,
    pub cu_seqlens_q: &'a Buffer<u32>,
    pub cu_seqlens_k: &'a Buffer<u32>,
    pub dq: &'a mut Buffer<T>,
    pub dk: &'a mut Buffer<T>,
    pub dv: &'a mut Buffer<T>,
    pub scratch: &'a mut Buffer<f32>,
    /// The causal sliding window the forward used (`None`: all keys up to the diagonal);
    /// ignored when the shape is not causal.
    pub window: Option<u32>,
}

impl<T: Element> AttnBwdArgs<'_, T> {
    /// Every buffer at least as long as the shape needs.
    fn check_lengths(&self, shape: &AttnShape) -> Result<(), AttnError> {
        let q_n = shape.total_q() * shape.heads * shape.head_dim;
        let k_n = shape.total_k() * shape.kv_heads * shape.head_dim;
        let rows = shape.heads * shape.total_q();
        let seqs = shape.sequences() + 1;
        let checks = [
            ("q", self.q.len(), q_n),
            ("o", self.o.len(), q_n),
            ("d_o", self.d_o.len(), q_n),
            ("dq", self.dq.len(), q_n),
            ("k", self.k.len(), k_n),
            ("v", self.v.len(), k_n),
            ("dk", self.dk.len(), k_n),
            ("dv", self.dv.len(), k_n),
            ("lse", self.lse.len(), rows),
            ("scratch", self.scratch.len(), rows),
            ("cu_seqlens_q", self.cu_seqlens_q.len(), seqs),
            ("cu_seqlens_k", self.cu_seqlens_k.len(), seqs),
        ];
        match checks.iter().find(|(_, got, need)| got < need) {
            Some((name, got, need)) => Err(AttnError::Shape(format!(
                "attention backward: {name} holds {got} elements; the shape needs {need}"
            ))),
            None => Ok(()),
        }
    }
}

/// The attention backward on borrowed device buffers with the default configs of the
/// shape's head dim: D = rowsum(dO∘O) into `scratch`, then dK/dV, then dQ (three launches on
/// the device's stream, no host synchronisation). Deterministic: two calls give the same
/// bits. `scale` is the forward's softmax scale.
pub fn backward_launch_with<T: Float + Element>(
    device: &Device,
    shape: &AttnShape,
    scale: f32,
    args: AttnBwdArgs<'_, T>,
) -> Result<(), AttnError> {
    let configs = bwd_default_configs(shape.head_dim);
    backward_launch_configs(device, &configs, shape, scale, args)
}

/// [`backward_launch_with`] with explicit configs (their HEAD_DIM is replaced by the
/// shape's).
pub fn backward_launch_configs<T: Float + Element>(
    device: &Device,
    configs: &BwdConfigs,
    shape: &AttnShape,
    scale: f32,
    args: AttnBwdArgs<'_, T>,
) -> Result<(), AttnError> {
    validate_backward(shape)?;
    check_scale(scale)?;
    args.check_lengths(shape)?;
    let mask = super::host::mask_code(shape.causal, args.window)?;
    let def = |kernel| {
        bwd_def_of(kernel, T::SCALAR).ok_or_else(|| {
            AttnError::Shape(format!(
                "the attention backward takes f16 or bf16, not {}",
                T::SCALAR
            ))
        })
    };
    let with_d = |c: &Config| c.clone().with("HEAD_DIM", shape.head_dim as i64);
    let (heads, kv_heads) = (shape.heads as u32, shape.kv_heads as u32);

    let dot = with_d(&configs.dot);
    let mut dot_args = [
        Arg::slice(args.d_o),
        Arg::slice(args.o),
        Arg::slice_mut(args.scratch),
        Arg::value(shape.total_q() as u32),
        Arg::value(heads),
    ];
    let dims = bwd_dims(BwdKernel::Dot, &dot, shape);
    device.launch(def(BwdKernel::Dot)?, &dot, dims, &mut dot_args)?;

    let dkdv = with_d(&configs.dkdv);
    let mut dkdv_args = [
        Arg::slice(args.q),
        Arg::slice(args.k),
        Arg::slice(args.v),
        Arg::slice(args.d_o),
        Arg::slice(args.lse),
        Arg::slice(args.scratch),
        Arg::slice_mut(args.dk),
        Arg::slice_mut(args.dv),
        Arg::slice(args.cu_seqlens_q),
        Arg::slice(args.cu_seqlens_k),
        Arg::value(heads),
        Arg::value(kv_heads),
        Arg::value(scale),
        Arg::value(mask),
    ];
    let dims = bwd_dims(BwdKernel::DkDv, &dkdv, shape);
    device.launch(def(BwdKernel::DkDv)?, &dkdv, dims, &mut dkdv_args)?;

    let dq = with_d(&configs.dq);
    let mut dq_args = [
        Arg::slice(args.q),
        Arg::slice(args.k),
        Arg::slice(args.v),
        Arg::slice(args.d_o),
        Arg::slice(args.lse),
        Arg::slice(args.scratch),
        Arg::slice_mut(args.dq),
        Arg::slice(args.cu_seqlens_q),
        Arg::slice(args.cu_seqlens_k),
        Arg::value(heads),
        Arg::value(kv_heads),
        Arg::value(scale),
        Arg::value(mask),
    ];
    let dims = bwd_dims(BwdKernel::Dq, &dq, shape);
    device.launch(def(BwdKernel::Dq)?, &dq, dims, &mut dq_args)?;
    Ok(())
}

/// Host inputs of one backward: Q, K, V, O (rounded to T), dO, LSE (f32).
pub struct BwdInputs<T> {
    pub q: Vec<T>,
    pub k: Vec<T>,
    pub v: Vec<T>,
    pub o: Vec<T>,
    pub d_o: Vec<T>,
    pub lse: Vec<f32>,
}

impl<T: Float> BwdInputs<T> {
    /// Deterministic inputs for `shape`: Q, K, V as the forward's [`inputs`], dO uniform in
    /// [−1, 1], and O and LSE from the f64 reference forward (O rounded to T, LSE to f32 —
    /// what a forward kernel saves, within its tolerance).
    pub fn new(shape: &AttnShape, window: Option<u32>, scale: f32) -> BwdInputs<T> {
        let (q, k, v) = inputs::<T>(shape);
        let mut rng = StdRng::seed_from_u64(q.len() as u64 * 31 + shape.total_k() as u64);
        let d_o = (0..q.len())
            .map(|_| T::from_f32(rng.random_range(-1.0f32..=1.0)))
            .collect();
        let fwd = forward_reference(shape, window, (&q, &k, &v), scale);
        BwdInputs {
            o: fwd.o.iter().map(|&x| T::from_f32(x as f32)).collect(),
            lse: fwd.lse.iter().map(|&x| x as f32).collect(),
            q,
            k,
            v,
            d_o,
        }
    }
}

/// Owned device buffers of one backward (inputs uploaded, outputs and scratch zeroed).
pub struct AttnBwdBuffers<T: Element> {
    pub q: Buffer<T>,
    pub k: Buffer<T>,
    pub v: Buffer<T>,
    pub o: Buffer<T>,
    pub d_o: Buffer<T>,
    pub lse: Buffer<f32>,
    pub cu_seqlens_q: Buffer<u32>,
    pub cu_seqlens_k: Buffer<u32>,
    pub dq: Buffer<T>,
    pub dk: Buffer<T>,
    pub dv: Buffer<T>,
    pub scratch: Buffer<f32>,
}

impl<T: Float + Element> AttnBwdBuffers<T> {
    pub fn upload(device: &Device, shape: &AttnShape, x: &BwdInputs<T>) -> Result<Self, AttnError> {
        validate_backward(shape)?;
        Ok(AttnBwdBuffers {
            q: device.upload(&x.q)?,
            k: device.upload(&x.k)?,
            v: device.upload(&x.v)?,
            o: device.upload(&x.o)?,
            d_o: device.upload(&x.d_o)?,
            lse: device.upload(&x.lse)?,
            cu_seqlens_q: device.upload(&shape.cu_seqlens_q())?,
            cu_seqlens_k: device.upload(&shape.cu_seqlens_k())?,
            dq: device.zeros(x.q.len())?,
            dk: device.zeros(x.k.len())?,
            dv: device.zeros(x.v.len())?,
            scratch: device.zeros(backward_scratch_len(shape))?,
        })
    }

    /// The buffers as launch operands.
    pub fn args(&mut self, window: Option<u32>) -> AttnBwdArgs<'_, T> {
        AttnBwdArgs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            o: &self.o,
            d_o: &self.d_o,
            lse: &self.lse,
            cu_seqlens_q: &self.cu_seqlens_q,
            cu_seqlens_k: &self.cu_seqlens_k,
            dq: &mut self.dq,
            dk: &mut self.dk,
            dv: &mut self.dv,
            scratch: &mut self.scratch,
            window,
        }
    }
}

/// Gradients downloaded: dQ, dK, dV.
pub type BwdOutput<T> = (Vec<T>, Vec<T>, Vec<T>);

/// Uploads, runs the backward with `configs`, downloads dQ, dK, dV.
pub fn backward_run<T: Float + Element>(
    device: &Device,
    configs: &BwdConfigs,
    shape: &AttnShape,
    x: &BwdInputs<T>,
    scale: f32,
    window: Option<u32>,
) -> Result<BwdOutput<T>, AttnError> {
    let mut bufs = AttnBwdBuffers::upload(device, shape, x)?;
    backward_launch_configs(device, configs, shape, scale, bufs.args(window))?;
    Ok((
        device.download(&bufs.dq)?,
        device.download(&bufs.dk)?,
        device.download(&bufs.dv)?,
    ))
}
