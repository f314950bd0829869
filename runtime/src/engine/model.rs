//! One step of the Llama-family model on warpforge kernels: every layer of every token of a
//! [`StepPlan`] — decodes and prefill chunks packed into one token stream with no padding —
//! runs on the device (`cuda`, or the interpreter on `cpu`); the host only builds the small
//! index arrays (positions, prefix sums, block tables) and reads the logits back.
//!
//! Per layer: RMSNorm → q/k/v GEMMs (tensor cores) → RoPE on Q → K (rotated on the way) and
//! V written into their pages → attention: the leading decode chunks (≤ 16 tokens each) by
//! the paged split-KV decode kernel, the prefill chunks by the flash forward kernel over the
//! same pages → o GEMM → residual add → RMSNorm → fused gate/up GEMM → SwiGLU → down GEMM →
//! residual add. Then the rows whose logits are wanted are gathered, normalized and
//! multiplied by the LM head with f32 output.

use super::plan::{LogitRows, StepPlan};
use super::weights::{DeviceWeights, Linear, LoadError, ModelFloat, Weight};
use crate::model::{Int4Config, ModelConfig, ModelWeights};
use warpforge_dsl::backend::{Backend, DeviceError};
use warpforge_dsl::{Buffer, Config, Device, Element};
use warpforge_kernels::act::host as act;
use warpforge_kernels::attention::{
    self, decode_default_config, decode_splits, AttnArgs, AttnShape, DecodeWorkspace, KvLayout,
    DECODE_MAX_Q,
};
use warpforge_kernels::gemm_tc::{self, Layout};
use warpforge_kernels::int4::host as int4;
use warpforge_kernels::norm::host::{self as norm, Rows};
use warpforge_kernels::prepack::{self, PageWriteBuffers, PageWriteShape};
use warpforge_kernels::rope::{self, RopeShape};

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
    #[error(transparent)]
    Attention(#[from] attention::AttnError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// The paged KV cache: per layer, K and V `[pages, page_size, kv_heads, padded head dim]`.
pub struct KvCache<T: Element> {
    pub k: Vec<Buffer<T>>,
    pub v: Vec<Buffer<T>>,
    pub pages: usize,
    pub page_size: usize,
}

/// The model on a device with its KV cache.
pub struct DeviceModel<T: ModelFloat> {
    device: Device,
    config: ModelConfig,
    weights: DeviceWeights<T>,
    cache: KvCache<T>,
    sm_count: usize,
}

/// What one step's kernels index by, on the device.
struct StepMeta {
    rows: usize,
    /// Leading chunks that go to the decode kernel.
    decodes: usize,
    positions: Buffer<u32>,
    page_cu: Buffer<u32>,
    cache_lens: Buffer<u32>,
    table: Buffer<u32>,
    page_shape: PageWriteShape,
    decode: Option<AttnPart>,
    prefill: Option<AttnPart>,
    /// Hydragen for the plan's shared-prefix groups: the prefix part (every decode row, a
    /// group's rows over its shared pages, the others over no key) and the suffix part
    /// (each decode row over the pages after its group's prefix).
    shared: Option<(AttnPart, AttnPart)>,
}

/// The index arrays of one attention launch.
struct AttnPart {
    shape: AttnShape,
    cu_q: Buffer<u32>,
    cu_k: Buffer<u32>,
    table: Buffer<u32>,
    pages_per_seq: usize,
}

fn prefix_sums(lens: &[usize]) -> Vec<u32> {
    let mut sums = vec![0u32];
    for &n in lens {
        sums.push(sums[sums.len() - 1] + n as u32);
    }
    sums
}

impl<T: ModelFloat> DeviceModel<T> {
    /// Uploads the model and allocates `pages` KV pages of `page_size` tokens; RoPE rows
    /// cover `max_positions`.
    pub fn load(
        device: Device,
        config: &ModelConfig,
        weights: (&ModelWeights, Option<&Int4Config>),
        (pages, page_size): (usize, usize),
        max_positions: usize,
    ) -> Result<Self, LoadError> {
        let w = DeviceWeights::load(&device, config, weights, max_positions)?;
        let page = page_size * config.num_key_value_heads * w.head.padded;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for _ in 0..config.num_hidden_layers {
            k.push(device.zeros(pages * page)?);
            v.push(device.zeros(pages * page)?);
        }
        let sm_count = sm_count(&device);
        Ok(DeviceModel {
            device,
            config: config.clone(),
            weights: w,
            cache: KvCache {
                k,
                v,
                pages,
                page_size,
            },
            sm_count,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn page_size(&self) -> usize {
        self.cache.page_size
    }

    /// (linears on the int4 GEMM, int4 linears dequantized at load).
    pub fn int4_layers(&self) -> (usize, usize) {
        (self.weights.int4_layers, self.weights.dequantized_layers)
    }

    /// Bytes of K and V one token takes in the cache, over all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        let row = self.config.num_key_value_heads * self.weights.head.padded;
        2 * row * self.config.num_hidden_layers * T::SCALAR.size_bytes()
    }

    /// Runs every chunk of `plan` and returns, per chunk, the f32 logits its
    /// [`LogitRows`] asks for (`vocab` floats per row).
    pub fn step(&mut self, plan: &StepPlan) -> Result<Vec<Vec<f32>>, StepError> {
        let meta = self.prepare(plan)?;
        let hidden = self.config.hidden_size;
        let ids: Vec<u32> = plan
            .chunks
            .iter()
            .flat_map(|c| c.tokens.iter().copied())
            .collect();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(StepError::Plan(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        let ids = self.device.upload(&ids)?;
        let mut x = self.device.zeros::<T>(meta.rows * hidden)?;
        let gather = prepack::gather_rows::def().space.default_config();
        prepack::launch_gather_rows(
            &self.device,
            &gather,
            (&self.weights.embed, &ids),
            &mut x,
            hidden,
        )?;
        for l in 0..self.config.num_hidden_layers {
            self.layer(l, &mut x, &meta)?;
        }
        self.logits(plan, &x)
    }

    /// Host bookkeeping of a step: positions, prefix sums, block tables, attention shapes.
    fn prepare(&self, plan: &StepPlan) -> Result<StepMeta, StepError> {
        let chunks = &plan.chunks;
        if chunks.is_empty() || chunks.iter().any(|c| c.tokens.is_empty()) {
            return Err(StepError::Plan(
                "a step needs chunks of at least one token".into(),
            ));
        }
        let page_size = self.cache.page_size;
        let pages_per_seq = chunks
            .iter()
            .map(|c| c.pages.len())
            .max()
            .unwrap_or(1)
            .max(1);
        for (i, c) in chunks.iter().enumerate() {
            let end = c.start + c.tokens.len();
            if c.pages.len() * page_size < end {
                return Err(StepError::Plan(format!(
                    "chunk {i}: {end} tokens need {} pages, the plan gives {}",
                    end.div_ceil(page_size),
                    c.pages.len()
                )));
            }
            if let Some(&p) = c.pages.iter().find(|&&p| p as usize >= self.cache.pages) {
                return Err(StepError::Plan(format!(
                    "chunk {i}: page {p} is past the cache's {} pages",
                    self.cache.pages
                )));
            }
            if end > self.weights.rope_rows {
                return Err(StepError::Plan(format!(
                    "chunk {i}: position {} is past the {} positions served",
                    end - 1,
                    self.weights.rope_rows
                )));
            }
        }
        let table_row = |pages: &[u32]| {
            let mut row = pages.to_vec();
            row.resize(pages_per_seq, 0);
            row
        };
        let lens: Vec<usize> = chunks.iter().map(|c| c.tokens.len()).collect();
        let starts: Vec<usize> = chunks.iter().map(|c| c.start).collect();
        let positions: Vec<u32> = chunks
            .iter()
            .flat_map(|c| (c.start..c.start + c.tokens.len()).map(|p| p as u32))
            .collect();
        let table: Vec<u32> = chunks.iter().flat_map(|c| table_row(&c.pages)).collect();
        let decodes = chunks
            .iter()
            .take_while(|c| c.tokens.len() <= DECODE_MAX_Q)
            .count();
        let (heads, kv_heads, d) = (
            self.config.num_attention_heads,
            self.config.num_key_value_heads,
            self.weights.head.padded,
        );
        let part = |causal: bool,
                    q_lens: Vec<usize>,
                    k_lens: Vec<usize>,
                    rows: Vec<u32>|
         -> Result<AttnPart, StepError> {
            let shape = AttnShape {
                heads,
                kv_heads,
                head_dim: d,
                causal,
                q_lens,
                k_lens,
            };
            Ok(AttnPart {
                cu_q: self.device.upload(&shape.cu_seqlens_q())?,
                cu_k: self.device.upload(&shape.cu_seqlens_k())?,
                table: self.device.upload(&rows)?,
                shape,
                pages_per_seq,
            })
        };
        let k_len = |i: usize| starts[i] + lens[i];
        let decode = match decodes {
            0 => None,
            n => Some(part(
                true,
                lens[..n].to_vec(),
                (0..n).map(k_len).collect(),
                table[..n * pages_per_seq].to_vec(),
            )?),
        };
        // The prefill rows follow the decode rows: a leading sequence of the decode rows'
        // count with no keys keeps the forward kernel's row numbering aligned (its output
        // there is overwritten by the decode kernel, which runs after it).
        let prefill = match decodes == chunks.len() {
            true => None,
            false => {
                let mut q_lens = lens[decodes..].to_vec();
                let mut k_lens: Vec<usize> = (decodes..chunks.len()).map(k_len).collect();
                let mut rows = table[decodes * pages_per_seq..].to_vec();
                if decodes > 0 {
                    q_lens.insert(0, lens[..decodes].iter().sum());
                    k_lens.insert(0, 0);
                    rows.splice(0..0, std::iter::repeat_n(0, pages_per_seq));
                }
                Some(part(true, q_lens, k_lens, rows)?)
            }
        };
        let shared = match shared_prefix_split(plan, decodes, page_size, pages_per_seq)? {
            None => None,
            Some(split) => Some((
                part(false, split.prefix_q, split.prefix_k, split.prefix_table)?,
                part(
                    true,
                    lens[..decodes].to_vec(),
                    split.suffix_k,
                    split.suffix_table,
                )?,
            )),
        };
        let page_shape = PageWriteShape {
            kv_heads,
            head_dim: d,
            rotary_dim: self.weights.head.padded_rotary,
            table_rows: self.weights.rope_rows,
            page_size,
            pages_per_seq,
            lens: lens.clone(),
            cache_lens: starts.clone(),
        };
        Ok(StepMeta {
            rows: positions.len(),
            decodes,
            positions: self.device.upload(&positions)?,
            page_cu: self.device.upload(&prefix_sums(&lens))?,
            cache_lens: self
                .device
                .upload(&starts.iter().map(|&s| s as u32).collect::<Vec<_>>())?,
            table: self.device.upload(&table)?,
            page_shape,
            decode,
            prefill,
            shared,
        })
    }

    /// One decoder layer over the step's `rows` tokens, `x` updated in place.
    fn layer(&mut self, l: usize, x: &mut Buffer<T>, meta: &StepMeta) -> Result<(), StepError> {
        let (rows, hidden) = (meta.rows, self.config.hidden_size);
        let layer = &self.weights.layers[l];
        let h = self.rms_norm(x, &layer.input_norm, rows)?;
        let mut q = self.linear(&h, &layer.q, rows)?;
        let k = self.linear(&h, &layer.k, rows)?;
        let v = self.linear(&h, &layer.v, rows)?;
        self.rotate_q(&mut q, meta)?;
        self.write_kv(l, (&k, &v), meta)?;
        let o = self.attend(l, &q, meta)?;
        let layer = &self.weights.layers[l];
        let attn = self.linear(&o, &layer.o, rows)?;
        self.add(x, &attn, rows * hidden)?;
        let h = self.rms_norm(x, &layer.post_norm, rows)?;
        let gate_up = self.linear(&h, &layer.gate_up, rows)?;
        let inter = self.config.intermediate_size;
        let mut act = self.device.zeros::<T>(rows * inter)?;
        let swiglu = (T::SWIGLU)().space.default_config();
        act::launch_swiglu(&self.device, &swiglu, &gate_up, &mut act, (rows, inter))?;
        let down = self.linear(&act, &layer.down, rows)?;
        self.add(x, &down, rows * hidden)
    }

    fn rms_norm(
        &self,
        x: &Buffer<T>,
        weight: &Buffer<T>,
        rows: usize,
    ) -> Result<Buffer<T>, StepError> {
        let cols = self.config.hidden_size;
        let mut y = self.device.zeros::<T>(rows * cols)?;
        let mut rstd = self.device.zeros::<f32>(rows)?;
        let config = norm_config::<T>(cols);
        let shape = Rows::padded(rows, cols);
        let eps = self.config.rms_norm_eps as f32;
        norm::launch_rmsnorm(
            &self.device,
            &config,
            (x, weight),
            (&mut y, &mut rstd),
            shape,
            eps,
        )?;
        Ok(y)
    }

    /// `x·Wᵀ` on the tensor cores; with a bias, the GEMM writes f32 and the bias add rounds
    /// once (as cuBLAS's epilogue does for `nn.Linear`).
    fn linear(&self, x: &Buffer<T>, w: &Linear<T>, rows: usize) -> Result<Buffer<T>, StepError> {
        let mut y = self.device.zeros::<T>(rows * w.out)?;
        let (m, n, k) = (rows as u32, w.out as u32, w.inp as u32);
        let dense = match &w.w {
            Weight::Dense(b) => b,
            Weight::Int4(q) => {
                self.int4_linear(x, q, rows, &mut y)?;
                return Ok(y);
            }
        };
        let config = gemm_config(rows);
        let Some(bias) = &w.bias else {
            gemm_tc::launch::<T, T>(
                &self.device,
                &config,
                Layout::Nt,
                x,
                dense,
                &mut y,
                (m, n, k),
                (k, k, n),
            )?;
            return Ok(y);
        };
        let mut wide = self.device.zeros::<f32>(rows * w.out)?;
        gemm_tc::launch::<T, f32>(
            &self.device,
            &config,
            Layout::Nt,
            x,
            dense,
            &mut wide,
            (m, n, k),
            (k, k, n),
        )?;
        let add = (T::BIAS_ADD)().space.default_config();
        act::launch_bias_add(&self.device, &add, (&wide, bias), &mut y, (rows, w.out))?;
        Ok(y)
    }

    /// `x·dequant(W)` on the int4 GEMM (activations permuted first for act-order weights).
    fn int4_linear(
        &self,
        x: &Buffer<T>,
        w: &int4::DeviceInt4,
        rows: usize,
        y: &mut Buffer<T>,
    ) -> Result<(), StepError> {
        let p = &w.packed;
        let def = int4::def_of(p.dim, T::SCALAR)
            .ok_or_else(|| StepError::Plan(format!("no int4 GEMM for {}", T::SCALAR)))?;
        let config = int4::default_config(def, rows);
        let mut ws = self
            .device
            .zeros::<f32>(int4::workspace_len(&config, rows, p).max(1))?;
        let ld = p.k as u32;
        match &w.perm {
            None => int4::launch(&self.device, &config, w, x, ld, rows as u32, y, &mut ws)?,
            Some(perm) => {
                let mut permuted = self.device.zeros::<T>(rows * p.k)?;
                int4::permute_activations(&self.device, x, perm, &mut permuted, rows as u32, ld)?;
                int4::launch(
                    &self.device,
                    &config,
                    w,
                    &permuted,
                    ld,
                    rows as u32,
                    y,
                    &mut ws,
                )?;
            }
        }
        Ok(())
    }

    fn add(&self, acc: &mut Buffer<T>, x: &Buffer<T>, len: usize) -> Result<(), StepError> {
        let config = (T::ADD)().space.default_config();
        Ok(act::launch_add(&self.device, &config, acc, x, len)?)
    }

    fn rotate_q(&self, q: &mut Buffer<T>, meta: &StepMeta) -> Result<(), StepError> {
        let head = self.weights.head;
        let shape = RopeShape {
            tokens: meta.rows,
            q_heads: self.config.num_attention_heads,
            k_heads: 0,
            head_dim: head.padded,
            rotary_dim: head.padded_rotary,
            table_rows: self.weights.rope_rows,
        };
        let mut no_k = self.device.zeros::<T>(8)?;
        let config = (T::ROPE)().space.default_config();
        let tables = (&meta.positions, &self.weights.rope_table);
        rope::launch_rope(&self.device, &config, (q, &mut no_k), tables, shape)?;
        Ok(())
    }

    fn write_kv(
        &mut self,
        l: usize,
        (k, v): (&Buffer<T>, &Buffer<T>),
        meta: &StepMeta,
    ) -> Result<(), StepError> {
        let config = (T::KV_PAGE_WRITE)().space.default_config();
        let bufs = PageWriteBuffers {
            cu_seqlens: &meta.page_cu,
            cache_lens: &meta.cache_lens,
            block_table: &meta.table,
            positions: &meta.positions,
            cos_sin: &self.weights.rope_table,
        };
        let caches = (&mut self.cache.k[l], &mut self.cache.v[l]);
        prepack::launch_kv_page_write(
            &self.device,
            &config,
            (k, v),
            caches,
            &bufs,
            &meta.page_shape,
        )?;
        Ok(())
    }

    /// Attention of every row over its sequence's pages: the forward kernel for the
    /// prefill chunks, then the decode kernel for the leading decode chunks.
    fn attend(&self, l: usize, q: &Buffer<T>, meta: &StepMeta) -> Result<Buffer<T>, StepError> {
        let head = self.weights.head;
        let heads = self.config.num_attention_heads;
        let mut o = self.device.zeros::<T>(meta.rows * heads * head.padded)?;
        let mut lse = self.device.zeros::<f32>(meta.rows * heads)?;
        let scale = 1.0 / (head.dim as f32).sqrt();
        let (k, v) = (&self.cache.k[l], &self.cache.v[l]);
        let window = self.config.layer_windows[l];
        let kv = (k, v, self.cache.page_size, window.map(|w| w as u32));
        if let Some(part) = &meta.prefill {
            let config = attention::default_config(head.padded);
            attention::launch_with(
                &self.device,
                &config,
                &part.shape,
                attn_args(q, kv, part, &mut o, &mut lse),
                scale,
            )?;
        }
        if let (Some((prefix, suffix)), None) = (&meta.shared, window) {
            self.shared_prefix_attention(l, q, (prefix, suffix), &mut o)?;
        } else if let Some(part) = &meta.decode {
            let config = decode_default_config(head.padded);
            let splits = self.decode_splits(&config, &part.shape);
            let mut ws = DecodeWorkspace::new(&self.device, &part.shape, splits)?;
            attention::decode_launch_with(
                &self.device,
                &config,
                &part.shape,
                attn_args(q, kv, part, &mut o, &mut lse),
                &mut ws,
                scale,
            )?;
        }
        debug_assert!(meta.decodes == meta.decode.as_ref().map_or(0, |p| p.shape.sequences()));
        Ok(o)
    }

    /// Hydragen over the decode rows `[0, D)`: one non-causal forward launch of every
    /// group's queries against its shared prefix pages (a matrix-matrix product where plain
    /// decode reads the prefix once per sequence), the decode kernel over each row's own
    /// pages after the prefix, and the exact LSE merge of the two into O.
    fn shared_prefix_attention(
        &self,
        l: usize,
        q: &Buffer<T>,
        (prefix, suffix): (&AttnPart, &AttnPart),
        o: &mut Buffer<T>,
    ) -> Result<(), StepError> {
        let head = self.weights.head;
        let heads = self.config.num_attention_heads;
        let rows = suffix.shape.total_q();
        let scale = 1.0 / (head.dim as f32).sqrt();
        let kv = (
            &self.cache.k[l],
            &self.cache.v[l],
            self.cache.page_size,
            None,
        );
        let part_buffers = || -> Result<(Buffer<T>, Buffer<f32>), StepError> {
            Ok((
                self.device.zeros::<T>(rows * heads * head.padded)?,
                self.device.zeros::<f32>(rows * heads)?,
            ))
        };
        let (mut o_pre, mut lse_pre) = part_buffers()?;
        let config = attention::default_config(head.padded);
        let args = attn_args(q, kv, prefix, &mut o_pre, &mut lse_pre);
        attention::launch_with(&self.device, &config, &prefix.shape, args, scale)?;
        let (mut o_suf, mut lse_suf) = part_buffers()?;
        let config = decode_default_config(head.padded);
        let splits = self.decode_splits(&config, &suffix.shape);
        let mut ws = DecodeWorkspace::new(&self.device, &suffix.shape, splits)?;
        let args = attn_args(q, kv, suffix, &mut o_suf, &mut lse_suf);
        attention::decode_launch_with(&self.device, &config, &suffix.shape, args, &mut ws, scale)?;
        let mut lse = self.device.zeros::<f32>(rows * heads)?;
        let merge = attention::merge_pair_def_of(T::SCALAR)
            .map(|d| d.space.default_config())
            .unwrap_or_default();
        attention::merge_pair_launch(
            &self.device,
            &merge,
            (rows, heads, head.padded),
            (&o_pre, &lse_pre),
            (&o_suf, &lse_suf),
            (o, &mut lse),
        )?;
        Ok(())
    }

    /// Split-KV only where a GPU has SMs to fill (the interpreter gains nothing from it).
    fn decode_splits(&self, config: &Config, shape: &AttnShape) -> usize {
        if self.device.backend() != Backend::Cuda {
            return 1;
        }
        let block_n = config.get("BLOCK_N").unwrap_or(32) as usize;
        let tiles = attention::row_tiles(shape);
        decode_splits(&shape.k_lens, shape.kv_heads, tiles, self.sm_count, block_n)
    }

    /// The logits of the rows the plan asks for: gathered, normalized, LM head in f32.
    fn logits(&self, plan: &StepPlan, x: &Buffer<T>) -> Result<Vec<Vec<f32>>, StepError> {
        let mut wanted = Vec::new();
        let mut row = 0u32;
        for c in &plan.chunks {
            let n = c.tokens.len() as u32;
            match c.logits {
                LogitRows::None => {}
                LogitRows::Last => wanted.push(row + n - 1),
                LogitRows::All => wanted.extend(row..row + n),
            }
            row += n;
        }
        let vocab = self.config.vocab_size;
        if wanted.is_empty() {
            return Ok(vec![Vec::new(); plan.chunks.len()]);
        }
        let hidden = self.config.hidden_size;
        let ids = self.device.upload(&wanted)?;
        let mut picked = self.device.zeros::<T>(wanted.len() * hidden)?;
        let gather = prepack::gather_rows::def().space.default_config();
        prepack::launch_gather_rows(&self.device, &gather, (x, &ids), &mut picked, hidden)?;
        let h = self.rms_norm(&picked, &self.weights.norm, wanted.len())?;
        let (head, n) = match &self.weights.lm_head {
            Some(Linear {
                w: Weight::Dense(w),
                out,
                ..
            }) => (w, *out),
            Some(_) => return Err(StepError::Plan("an int4 LM head is not supported".into())),
            None => (&self.weights.embed, vocab),
        };
        let mut out = self.device.zeros::<f32>(wanted.len() * n)?;
        let (m, k) = (wanted.len() as u32, hidden as u32);
        let config = gemm_config(wanted.len());
        gemm_tc::launch::<T, f32>(
            &self.device,
            &config,
            Layout::Nt,
            &h,
            head,
            &mut out,
            (m, n as u32, k),
            (k, k, n as u32),
        )?;
        let all = self.device.download(&out)?;
        let mut rows = all.chunks_exact(n).map(|r| &r[..vocab]);
        Ok(plan
            .chunks
            .iter()
            .map(|c| match c.logits {
                LogitRows::None => Vec::new(),
                LogitRows::Last => rows.next().map(<[f32]>::to_vec).unwrap_or_default(),
                LogitRows::All => (0..c.tokens.len())
                    .flat_map(|_| rows.next().unwrap_or(&[]).to_vec())
                    .collect(),
            })
            .collect())
    }
}

/// Hydragen's host side: the shapes and block tables of the prefix and suffix parts.
struct SharedSplit {
    prefix_q: Vec<usize>,
    prefix_k: Vec<usize>,
    prefix_table: Vec<u32>,
    suffix_k: Vec<usize>,
    suffix_table: Vec<u32>,
}

/// Splits the decode rows by the plan's shared prefixes (`None` without groups): the prefix
/// part's sequences alternate gaps (rows outside any group, no keys: O 0, LSE −∞, weight 0
/// in the merge) and groups (their rows over the shared pages, non-causal: every prefix key
/// precedes every decode token); the suffix part is each decode row over its pages after
/// its group's prefix.
fn shared_prefix_split(
    plan: &StepPlan,
    decodes: usize,
    page_size: usize,
    pages_per_seq: usize,
) -> Result<Option<SharedSplit>, StepError> {
    let mut groups: Vec<_> = plan
        .shared_prefixes
        .iter()
        .filter(|g| g.pages > 0)
        .collect();
    if groups.is_empty() || decodes == 0 {
        return Ok(None);
    }
    groups.sort_by_key(|g| g.chunks.start);
    let chunks = &plan.chunks[..decodes];
    let padded = |pages: &[u32]| {
        let mut row = pages.to_vec();
        row.resize(pages_per_seq, 0);
        row
    };
    let mut split = SharedSplit {
        prefix_q: Vec::new(),
        prefix_k: Vec::new(),
        prefix_table: Vec::new(),
        suffix_k: Vec::new(),
        suffix_table: Vec::new(),
    };
    let mut shared_pages = vec![0usize; decodes];
    let mut next = 0;
    for g in groups {
        let r = g.chunks.clone();
        if r.start < next || r.end > decodes || r.is_empty() {
            return Err(StepError::Plan(format!(
                "shared prefix over chunks {r:?}: groups must be disjoint ranges of the {decodes} \
                 leading decode chunks"
            )));
        }
        let lead = &chunks[r.start].pages;
        for (i, c) in chunks[r.clone()].iter().enumerate() {
            let whole = c.start >= g.pages * page_size;
            if c.pages.len() < g.pages || c.pages[..g.pages] != lead[..g.pages] || !whole {
                return Err(StepError::Plan(format!(
                    "chunk {}: its block table does not begin with its group's {} shared \
                     full pages",
                    r.start + i,
                    g.pages
                )));
            }
            shared_pages[r.start + i] = g.pages;
        }
        let rows_before: usize = chunks[next..r.start].iter().map(|c| c.tokens.len()).sum();
        split.prefix_q.push(rows_before);
        split.prefix_k.push(0);
        split.prefix_table.extend(padded(&[]));
        split
            .prefix_q
            .push(chunks[r.clone()].iter().map(|c| c.tokens.len()).sum());
        split.prefix_k.push(g.pages * page_size);
        split.prefix_table.extend(padded(&lead[..g.pages]));
        next = r.end;
    }
    let rows_after: usize = chunks[next..].iter().map(|c| c.tokens.len()).sum();
    split.prefix_q.push(rows_after);
    split.prefix_k.push(0);
    split.prefix_table.extend(padded(&[]));
    for (c, &p) in chunks.iter().zip(&shared_pages) {
        split
            .suffix_k
            .push(c.start + c.tokens.len() - p * page_size);
        split.suffix_table.extend(padded(&c.pages[p..]));
    }
    Ok(Some(split))
}

/// The operands of one attention launch over the paged cache.
fn attn_args<'a, T: Element>(
    q: &'a Buffer<T>,
    (k, v, page_size, window): (&'a Buffer<T>, &'a Buffer<T>, usize, Option<u32>),
    part: &'a AttnPart,
    o: &'a mut Buffer<T>,
    lse: &'a mut Buffer<f32>,
) -> AttnArgs<'a, T> {
    AttnArgs {
        q,
        k,
        v,
        o,
        lse,
        cu_seqlens_q: &part.cu_q,
        cu_seqlens_k: &part.cu_k,
        block_table: &part.table,
        kv_layout: KvLayout::Paged {
            page_size: page_size as u32,
            pages_per_seq: part.pages_per_seq as u32,
        },
        window,
    }
}

/// A GEMM tile for `m` rows: small M takes a short tile (a decode batch is a few rows).
fn gemm_config(m: usize) -> Config {
    let bm = match m {
        0..=32 => 32,
        33..=64 => 64,
        _ => 128,
    };
    let wm = if bm >= 64 { 2 } else { 1 };
    let candidate = Config::new()
        .with("BM", bm)
        .with("BN", 128)
        .with("BK", 32)
        .with("WM", wm)
        .with("WN", 2)
        .with("STAGES", 3);
    let space = &gemm_tc::gemm_tc_nt_bf16_bf16::def().space;
    match space.check_member(&candidate) {
        Ok(()) => candidate,
        Err(_) => space.default_config(),
    }
}

/// The norm's default, with one warp per row for narrow rows.
fn norm_config<T: ModelFloat>(cols: usize) -> Config {
    let space = &(T::RMSNORM)().space;
    let mut config = space.default_config();
    if cols <= 1024 {
        config.set("ROW_THREADS", 32);
    }
    match space.check_member(&config) {
        Ok(()) => config,
        Err(_) => space.default_config(),
    }
}

/// The GPU's SM count (132 when unknown: an H100 SXM).
fn sm_count(device: &Device) -> usize {
    use cudarc::driver::sys::CUdevice_attribute as A;
    device
        .cuda_stream()
        .and_then(|s| {
            s.context()
                .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .ok()
        })
        .map_or(132, |n| n as usize)
}
