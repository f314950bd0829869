//! Host side of flash attention: instance lookup, default configs, launch dims, launch on
//! device buffers, a run-and-download helper, deterministic inputs, check problems and
//! their tolerance.

use super::reference::{reference, AttnError, AttnShape};
use super::{flash_attn_fwd_bf16, flash_attn_fwd_f16};
use crate::check::Problem;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// The forward kernel's instance for element type `t` (f16 or bf16).
pub fn def_of(t: ScalarType) -> Option<&'static KernelDef> {
    match t {
        ScalarType::F16 => Some(flash_attn_fwd_f16::def()),
        ScalarType::BF16 => Some(flash_attn_fwd_bf16::def()),
        _ => None,
    }
}

/// The default config for a head dimension (sm_80/sm_90, mma.sync path): the first valid
/// one of 128 query rows over 8 warps (one m16 tile per warp) with 64-key tiles
/// double-buffered — 68 KiB of shared memory and about 128 accumulator/fragment registers
/// per thread at d = 128 — then 64 rows over 4 warps (d = 80, whose 16-byte chunks do not
/// divide over 256 threads), then 64×32 over 4 warps (d = 256, Q in shared memory: exactly 99 KiB, no spills).
pub fn default_config(head_dim: usize) -> Config {
    let space = &flash_attn_fwd_f16::def().space;
    let make = |(bm, bn, warps): (i64, i64, i64)| {
        Config::new()
            .with("HEAD_DIM", head_dim as i64)
            .with("BLOCK_M", bm)
            .with("BLOCK_N", bn)
            .with("WARPS", warps)
            .with("STAGES", 2)
    };
    let preferred = if head_dim > 128 {
        vec![(64, 32, 4)]
    } else {
        vec![(128, 64, 8), (64, 64, 4)]
    };
    preferred
        .into_iter()
        .map(make)
        .find(|c| space.satisfies(c).is_ok())
        .unwrap_or_else(|| space.default_config())
}

/// `config` with `HEAD_DIM` set to the shape's (the problem fixes it; the rest is tunable).
pub fn config_for(config: &Config, shape: &AttnShape) -> Config {
    config.clone().with("HEAD_DIM", shape.head_dim as i64)
}

/// Grid: query tiles of the longest sequence × heads × sequences; blocks past a sequence's
/// end exit at once.
pub fn dims(config: &Config, shape: &AttnShape) -> LaunchDims {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or) as u32;
    let max_q = shape.q_lens.iter().copied().max().unwrap_or(0) as u32;
    LaunchDims {
        grid: [
            max_q.div_ceil(get("BLOCK_M", 128)).max(1),
            shape.heads as u32,
            shape.sequences() as u32,
        ],
        block: [32 * get("WARPS", 8), 1, 1],
    }
}

/// Where K and V live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLayout {
    /// `[total_k, kv_heads, d]`: sequence `b`'s keys are rows `cu_seqlens_k[b]..`.
    Contiguous,
    /// Caches `[pages, page_size, kv_heads, d]`: key `j` of sequence `b` is row
    /// `j % page_size` of page `block_table[b·pages_per_seq + j / page_size]`;
    /// `cu_seqlens_k` still gives the key counts (prefix sums).
    Paged { page_size: u32, pages_per_seq: u32 },
}

/// Device buffers of one attention call: Q, K, V, O in the packed layouts, LSE
/// `[heads, total_q]`, the two u32 prefix-sum arrays and the block table (one unused entry
/// for contiguous K/V).
pub struct AttnBuffers<T: Element> {
    pub q: Buffer<T>,
    pub k: Buffer<T>,
    pub v: Buffer<T>,
    pub o: Buffer<T>,
    pub lse: Buffer<f32>,
    pub cu_seqlens_q: Buffer<u32>,
    pub cu_seqlens_k: Buffer<u32>,
    pub block_table: Buffer<u32>,
    pub kv_layout: KvLayout,
}

impl<T: Element> AttnBuffers<T> {
    /// Uploads Q, contiguous K/V and the prefix sums of `shape`; O and LSE start zeroed.
    pub fn upload(
        device: &Device,
        shape: &AttnShape,
        q: &[T],
        k: &[T],
        v: &[T],
    ) -> Result<Self, AttnError> {
        shape.validate()?;
        let k_n = shape.total_k() * shape.kv_heads * shape.head_dim;
        if k.len() != k_n || v.len() != k_n {
            return Err(AttnError::Shape(format!(
                "K/V hold {}/{} elements; the shape needs {k_n}",
                k.len(),
                v.len()
            )));
        }
        Self::upload_with(device, shape, q, (k, v), &[0], KvLayout::Contiguous)
    }

    /// Uploads Q and paged K/V caches (`[pages, page_size, kv_heads, d]`) with their block
    /// table (`[sequences, pages_per_seq]`, page indices).
    pub fn upload_paged(
        device: &Device,
        shape: &AttnShape,
        q: &[T],
        (k_cache, v_cache): (&[T], &[T]),
        block_table: &[u32],
        page_size: usize,
        pages_per_seq: usize,
    ) -> Result<Self, AttnError> {
        shape.validate()?;
        let page = page_size * shape.kv_heads * shape.head_dim;
        let bad = |m: String| Err(AttnError::Shape(m));
        if page_size == 0 || k_cache.len() != v_cache.len() || k_cache.len() % page != 0 {
            return bad(format!(
                "K/V caches ({}, {} elements) must be equal whole numbers of pages of {page_size} \
                 rows × {} heads × {} (page_size > 0)",
                k_cache.len(),
                v_cache.len(),
                shape.kv_heads,
                shape.head_dim
            ));
        }
        let pages = k_cache.len() / page;
        let longest = shape.k_lens.iter().copied().max().unwrap_or(0);
        if block_table.len() != shape.sequences() * pages_per_seq
            || pages_per_seq * page_size < longest
        {
            return bad(format!(
                "the block table ({} entries) must be {} sequences × {pages_per_seq} pages, \
                 covering the longest key sequence ({longest})",
                block_table.len(),
                shape.sequences()
            ));
        }
        for (b, &len) in shape.k_lens.iter().enumerate() {
            let used = &block_table[b * pages_per_seq..][..len.div_ceil(page_size)];
            if let Some(&p) = used.iter().find(|&&p| p as usize >= pages) {
                return bad(format!(
                    "sequence {b}: page {p} is past the cache's {pages} pages"
                ));
            }
        }
        let layout = KvLayout::Paged {
            page_size: page_size as u32,
            pages_per_seq: pages_per_seq as u32,
        };
        Self::upload_with(device, shape, q, (k_cache, v_cache), block_table, layout)
    }

    fn upload_with(
        device: &Device,
        shape: &AttnShape,
        q: &[T],
        (k, v): (&[T], &[T]),
        block_table: &[u32],
        kv_layout: KvLayout,
    ) -> Result<Self, AttnError> {
        let q_n = shape.total_q() * shape.heads * shape.head_dim;
        if q.len() != q_n {
            return Err(AttnError::Shape(format!(
                "Q holds {} elements; the shape needs {q_n}",
                q.len()
            )));
        }
        Ok(AttnBuffers {
            q: device.upload(q)?,
            k: device.upload(k)?,
            v: device.upload(v)?,
            o: device.zeros(q_n)?,
            lse: device.zeros(shape.heads * shape.total_q())?,
            cu_seqlens_q: device.upload(&shape.cu_seqlens_q())?,
            cu_seqlens_k: device.upload(&shape.cu_seqlens_k())?,
            block_table: device.upload(block_table)?,
            kv_layout,
        })
    }
}

/// Copies contiguous K and V (`[total_k, kv_heads, d]`) into paged caches of `page_size`
/// rows, pages assigned in a seeded shuffled order with spare pages; rows no key uses hold
/// 1000 (they must never be read). Returns the caches, the block table and pages per
/// sequence — for tests and examples of the paged layout.
pub fn paginate<T: Float>(
    shape: &AttnShape,
    (k, v): (&[T], &[T]),
    page_size: usize,
    seed: u64,
) -> (Vec<T>, Vec<T>, Vec<u32>, usize) {
    let row = shape.kv_heads * shape.head_dim;
    let per_seq = shape
        .k_lens
        .iter()
        .map(|&n| n.div_ceil(page_size))
        .max()
        .unwrap_or(0)
        .max(1);
    let used: usize = shape.k_lens.iter().map(|&n| n.div_ceil(page_size)).sum();
    let pages = used + 3;
    let mut order: Vec<u32> = (0..pages as u32).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in (1..pages).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut table = vec![0u32; shape.sequences() * per_seq];
    let filler = T::from_f32(1000.0);
    let (mut kc, mut vc) = (
        vec![filler; pages * page_size * row],
        vec![filler; pages * page_size * row],
    );
    let (mut next, cu_k) = (0, shape.cu_seqlens_k());
    for (b, &len) in shape.k_lens.iter().enumerate() {
        for p in 0..len.div_ceil(page_size) {
            table[b * per_seq + p] = order[next];
            next += 1;
        }
        for j in 0..len {
            let dst =
                (table[b * per_seq + j / page_size] as usize * page_size + j % page_size) * row;
            let src = (cu_k[b] as usize + j) * row;
            kc[dst..dst + row].copy_from_slice(&k[src..src + row]);
            vc[dst..dst + row].copy_from_slice(&v[src..src + row]);
        }
    }
    (kc, vc, table, per_seq)
}

/// Borrowed attention operands: what [`launch_with`] and
/// [`decode_launch_with`](super::decode_launch_with) read and write, so a caller that owns
/// its buffers elsewhere (a runtime's KV cache per layer, a step's Q and O) launches without
/// moving them into an [`AttnBuffers`]. Q/O may hold more rows than the shape covers: the
/// kernels touch only the rows `cu_seqlens_q` names.
pub struct AttnArgs<'a, T: Element> {
    pub q: &'a Buffer<T>,
    pub k: &'a Buffer<T>,
    pub v: &'a Buffer<T>,
    pub o: &'a mut Buffer<T>,
    pub lse: &'a mut Buffer<f32>,
    pub cu_seqlens_q: &'a Buffer<u32>,
    pub cu_seqlens_k: &'a Buffer<u32>,
    pub block_table: &'a Buffer<u32>,
    pub kv_layout: KvLayout,
    /// A causal shape's sliding window: each row sees only its last `w` keys (Mistral,
    /// Qwen2); `None` sees all of them. Ignored when the shape is not causal.
    pub window: Option<u32>,
}

/// The kernels' `causal` argument (forward, decode and backward): 0, 1, or 1 + the window
/// (see `masked`).
pub fn mask_code(causal: bool, window: Option<u32>) -> Result<u32, AttnError> {
    match (causal, window) {
        (false, _) => Ok(0),
        (true, None) => Ok(1),
        (true, Some(w)) if w > 0 && w < u32::MAX => Ok(1 + w),
        (true, Some(w)) => Err(AttnError::Shape(format!(
            "sliding window {w} must be positive"
        ))),
    }
}

impl<T: Element> AttnArgs<'_, T> {
    /// The kernels' `causal` argument for these operands ([`mask_code`]).
    pub fn mask_code(&self, causal: bool) -> Result<u32, AttnError> {
        mask_code(causal, self.window)
    }
}

impl<T: Element> AttnBuffers<T> {
    /// The buffers as launch operands.
    pub fn args(&mut self) -> AttnArgs<'_, T> {
        AttnArgs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            o: &mut self.o,
            lse: &mut self.lse,
            cu_seqlens_q: &self.cu_seqlens_q,
            cu_seqlens_k: &self.cu_seqlens_k,
            block_table: &self.block_table,
            kv_layout: self.kv_layout,
            window: None,
        }
    }
}

impl KvLayout {
    /// `(page_size, pages_per_seq)` as the kernels take them (0, 0 when contiguous).
    pub fn page_args(self) -> (u32, u32) {
        match self {
            KvLayout::Contiguous => (0, 0),
            KvLayout::Paged {
                page_size,
                pages_per_seq,
            } => (page_size, pages_per_seq),
        }
    }
}

/// Checks the softmax scale both attention launches take.
pub(crate) fn check_scale(scale: f32) -> Result<(), AttnError> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(AttnError::Shape(format!(
            "softmax scale {scale} must be positive and finite"
        )));
    }
    Ok(())
}

/// Launches `flash_attn_fwd_{T}` on buffers already on `device` (`config`'s HEAD_DIM is
/// replaced by the shape's). `scale` is the softmax scale (usually 1/√d); it is folded with
/// log2(e) into the exp2 argument.
pub fn launch<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    bufs: &mut AttnBuffers<T>,
    scale: f32,
) -> Result<(), AttnError> {
    launch_with(device, config, shape, bufs.args(), scale)
}

/// [`launch`] on borrowed operands.
pub fn launch_with<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    bufs: AttnArgs<'_, T>,
    scale: f32,
) -> Result<(), AttnError> {
    shape.validate()?;
    let def = def_of(T::SCALAR).ok_or_else(|| {
        AttnError::Shape(format!(
            "flash attention takes f16 or bf16, not {}",
            T::SCALAR
        ))
    })?;
    check_scale(scale)?;
    let config = config_for(config, shape);
    let (page_size, pages_per_seq) = bufs.kv_layout.page_args();
    let mask = bufs.mask_code(shape.causal)?;
    let mut args = [
        Arg::slice(bufs.q),
        Arg::slice(bufs.k),
        Arg::slice(bufs.v),
        Arg::slice_mut(bufs.o),
        Arg::slice_mut(bufs.lse),
        Arg::slice(bufs.cu_seqlens_q),
        Arg::slice(bufs.cu_seqlens_k),
        Arg::value(shape.heads as u32),
        Arg::value(shape.kv_heads as u32),
        Arg::value(scale * std::f32::consts::LOG2_E),
        Arg::value(mask),
        Arg::slice(bufs.block_table),
        Arg::value(pages_per_seq),
        Arg::value(page_size),
    ];
    device.launch(def, &config, dims(&config, shape), &mut args)?;
    Ok(())
}

/// Uploads, launches and downloads: O (`[total_q, heads, d]`) and LSE (`[heads, total_q]`).
pub fn run<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    (q, k, v): (&[T], &[T], &[T]),
    scale: f32,
) -> Result<(Vec<T>, Vec<f32>), AttnError> {
    let mut bufs = AttnBuffers::upload(device, shape, q, k, v)?;
    launch(device, config, shape, &mut bufs, scale)?;
    Ok((device.download(&bufs.o)?, device.download(&bufs.lse)?))
}

/// Deterministic inputs for `shape`: Q uniform in [−2, 2] (peaked softmax rows at small
/// d), K and V in [−1, 1], each rounded to T.
pub fn inputs<T: Float>(shape: &AttnShape) -> (Vec<T>, Vec<T>, Vec<T>) {
    let seed = shape
        .to_problem()
        .dims
        .iter()
        .fold(17u64, |h, &x| h.wrapping_mul(31).wrapping_add(x as u64));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen = |n: usize, r: f32| -> Vec<T> {
        (0..n)
            .map(|_| T::from_f32(rng.random_range(-r..=r)))
            .collect()
    };
    let (q_n, k_n) = (
        shape.total_q() * shape.heads * shape.head_dim,
        shape.total_k() * shape.kv_heads * shape.head_dim,
    );
    (gen(q_n, 2.0), gen(k_n, 1.0), gen(k_n, 1.0))
}

/// Small check shapes: ragged varlen batches (lengths 1, odd, not tile multiples), causal
/// with k_len < q_len (fully masked rows) and k_len > q_len (a cached prefix), GQA ratios
/// 1, 3 and 8, head dims 64 and 128.
pub fn problems() -> Vec<Problem> {
    let shape = |heads, kv_heads, head_dim, causal, q: &[usize], k: &[usize]| AttnShape {
        heads,
        kv_heads,
        head_dim,
        causal,
        q_lens: q.to_vec(),
        k_lens: k.to_vec(),
    };
    [
        shape(2, 2, 64, false, &[1, 37], &[1, 37]),
        shape(3, 1, 64, true, &[5, 40, 17], &[3, 40, 33]),
        shape(8, 1, 128, true, &[19], &[19]),
        shape(2, 2, 128, false, &[9, 70], &[70, 9]),
    ]
    .iter()
    .map(AttnShape::to_problem)
    .collect()
}

/// Allowed error on O, relative to max(1, |want|), for element type `t` with |V| ≤ 1.
///
/// The inputs are exact in T and both sides see the same values. The kernel rounds each
/// probability p to T before P·V (relative error ≤ u = 2^-11 for f16, 2^-8 for bf16) while
/// the row sum l uses the unrounded p, so |Σ δ_j p_j v_j| / l ≤ u·max|v|; O is rounded once
/// to T (≤ u·|O| ≤ u) and the reference's exact O rounded to T again (≤ u): 3u in all.
/// f32 accumulation (QKᵀ over d ≤ 256 terms, sums of ≤ a few hundred keys), the FMA'd exp2
/// argument (|s·c| ≤ ~40, error ≤ 40·2^-24) and ex2.approx (≤ 2^-22 relative; the
/// interpreter models it as exact) add < 1e-5.
pub fn tolerance_o(t: ScalarType) -> f64 {
    let u = if t == ScalarType::BF16 {
        2f64.powi(-8)
    } else {
        2f64.powi(-11)
    };
    3.0 * u + 1e-5
}

/// Allowed absolute error on LSE (f32 statistics): the scores are f32 sums of exact
/// products (≤ d·2^-24·|q||k|), the row sums f32 (≤ n·2^-24 relative): 1e-4 covers d ≤ 256
/// and thousands of keys.
pub const TOLERANCE_LSE: f64 = 1e-4;

/// The kernel's output for a check problem, as f32s: O (`[total_q, heads, d]`) followed by
/// LSE (`[heads, total_q]`, −∞ for rows with no visible key), with the default scale.
pub fn output<T: Float + Element>(
    device: &Device,
    config: &Config,
    problem: &Problem,
) -> Result<Vec<f32>, AttnError> {
    let shape = AttnShape::from_problem(problem)?;
    let (q, k, v) = inputs::<T>(&shape);
    let (o, lse) = run(device, config, &shape, (&q, &k, &v), shape.default_scale())?;
    Ok(o.into_iter().map(T::to_f32).chain(lse).collect())
}

/// The reference for the same problem, laid out as [`output`]: O rounded to T, LSE in f32.
pub fn expected<T: Float>(problem: &Problem) -> Result<Vec<f32>, AttnError> {
    let shape = AttnShape::from_problem(problem)?;
    let (q, k, v) = inputs::<T>(&shape);
    let r = reference(&shape, &q, &k, &v, shape.default_scale());
    let o = r.o.iter().map(|&x| T::from_f32(x as f32).to_f32());
    Ok(o.chain(r.lse.iter().map(|&x| x as f32)).collect())
}

/// Compares a kernel result with the reference: O within [`tolerance_o`] (relative to
/// max(1, |want|)), LSE within [`TOLERANCE_LSE`], −∞ exactly where the reference has it.
/// Returns the first mismatch as a message.
pub fn compare<T: Float + Element>(
    shape: &AttnShape,
    got: (&[T], &[f32]),
    want: &super::reference::AttnOutput,
) -> Result<(f64, f64), String> {
    compare_within(shape, got, want, tolerance_o(T::SCALAR))
}

/// [`compare`] with an explicit tolerance on O (relative to max(1, |want|)); composed
/// results (merged parts, each rounded to T) need a few more roundings' worth.
pub fn compare_within<T: Float + Element>(
    shape: &AttnShape,
    (o, lse): (&[T], &[f32]),
    want: &super::reference::AttnOutput,
    tol: f64,
) -> Result<(f64, f64), String> {
    let mut worst = (0f64, 0f64);
    for (i, (&g, &w)) in o.iter().zip(&want.o).enumerate() {
        let err = (g.to_f32() as f64 - w).abs();
        worst.0 = worst.0.max(err);
        if err.is_nan() || err > tol * w.abs().max(1.0) {
            let d = shape.head_dim;
            return Err(format!(
                "O[row {}, head {}, dim {}] = {}, want {w} (tolerance {tol:.2e})",
                i / d / shape.heads,
                i / d % shape.heads,
                i % d,
                g.to_f32()
            ));
        }
    }
    for (i, (&g, &w)) in lse.iter().zip(&want.lse).enumerate() {
        let (g, err) = (g as f64, (g as f64 - w).abs());
        let ok = if w == f64::NEG_INFINITY {
            g == w
        } else {
            err <= TOLERANCE_LSE
        };
        if w.is_finite() {
            worst.1 = worst.1.max(err);
        }
        if !ok {
            let n = shape.total_q();
            return Err(format!(
                "LSE[head {}, row {}] = {g}, want {w}",
                i / n,
                i % n
            ));
        }
    }
    if o.len() != want.o.len() || lse.len() != want.lse.len() {
        return Err(format!(
            "sizes differ: O {} vs {}, LSE {} vs {}",
            o.len(),
            want.o.len(),
            lse.len(),
            want.lse.len()
        ));
    }
    Ok(worst)
}
