//! The Llama-family forward pass in f32 on the host, with a KV cache, and greedy decoding:
//! the oracle the kernel engine is checked against, checked itself against Hugging Face
//! transformers (`runtime/tests/model_parity.rs`).
//!
//! It follows transformers' `LlamaForCausalLM` op for op and in the same f32 rounding
//! places where that is cheap (RoPE angles `pos * inv_freq` in f32, `x*cos + rotate_half(x)*sin`
//! as two f32 products), and accumulates dot products and norms in f64, which is at least as
//! accurate as PyTorch's f32 kernels. Simple loops, no speed tricks: it is a reference.

use super::config::ModelConfig;
use super::int4::{self, Int4Config};
use super::weights::{expected_tensors, ModelWeights, WeightsError};
use super::{ModelDir, ModelError};

/// Logits of consecutive positions: `rows × vocab`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    pub vocab: usize,
    pub values: Vec<f32>,
}

impl Logits {
    /// Number of positions.
    pub fn rows(&self) -> usize {
        self.values.len() / self.vocab
    }

    /// The logits of position `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.vocab..(i + 1) * self.vocab]
    }

    /// The logits of the last position.
    pub fn last(&self) -> &[f32] {
        self.row(self.rows() - 1)
    }
}

/// The index of the largest value, the first one on ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Keys and values (after RoPE) of every position processed so far, per layer:
/// `k[layer]` is `[positions][kv_heads × head_dim]`, likewise `v`.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `y = x Wᵀ + b` with `W` `[out, in]` (PyTorch's layout).
#[derive(Clone, Debug)]
struct Linear {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// `x` is `[n, inputs]`; the result `[n, outputs]`.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        linear(
            x,
            &self.weight,
            self.bias.as_deref(),
            self.inputs,
            self.outputs,
        )
    }
}

/// `x Wᵀ + b`: `x` `[n, inputs]`, `w` `[outputs, inputs]`; dot products accumulated in f64.
fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, inputs: usize, outputs: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len() / inputs * outputs);
    for x_row in x.chunks_exact(inputs) {
        for (o, w_row) in w.chunks_exact(inputs).enumerate() {
            let value = dot(x_row, w_row) as f32;
            y.push(bias.map_or(value, |b| value + b[o]));
        }
    }
    y
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The input a decoder layer's linears read, as [`HostModel::layer_forward`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearInput {
    /// The normed hidden state q/k/v read.
    Attention,
    /// The attention output o_proj reads.
    AttentionOutput,
    /// The normed hidden state gate/up read.
    Mlp,
    /// The SwiGLU product down_proj reads.
    MlpOutput,
}

impl LinearInput {
    /// The linears (suffixes after `model.layers.{i}.`) that read this input.
    pub fn linears(self) -> &'static [&'static str] {
        match self {
            LinearInput::Attention => &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            LinearInput::AttentionOutput => &["self_attn.o_proj"],
            LinearInput::Mlp => &["mlp.gate_proj", "mlp.up_proj"],
            LinearInput::MlpOutput => &["mlp.down_proj"],
        }
    }
}

#[derive(Clone, Debug)]
struct Layer {
    input_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    window: Option<usize>,
}

/// A Llama-family model with every weight widened to f32 on the host.
#[derive(Clone, Debug)]
pub struct HostModel {
    config: ModelConfig,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when tied to `embed`.
    lm_head: Option<Vec<f32>>,
    /// transformers' `inv_freq` buffer: the f64 frequencies rounded to f32.
    inv_freq: Vec<f32>,
}

impl HostModel {
    /// Loads a model directory (config and weights; the tokenizer is not needed).
    /// An int4 directory's linears are dequantized ([`HostModel::from_int4`]).
    pub fn load(dir: &std::path::Path) -> Result<Self, ModelError> {
        let model = ModelDir::open(dir)?;
        match &model.quant {
            None => Ok(Self::from_weights(&model.config, &model.weights)?),
            Some(quant) => Self::from_int4(&model.config, &model.weights, quant),
        }
    }

    /// Widens every tensor the config names to f32 (shapes checked).
    pub fn from_weights(
        config: &ModelConfig,
        weights: &ModelWeights,
    ) -> Result<Self, WeightsError> {
        Self::build(config, weights, |name, shape| {
            Ok(weights.tensor(name, shape)?.to_f32())
        })
    }

    /// [`from_weights`](Self::from_weights) for an int4 directory: each linear stored as
    /// int4 is dequantized exactly ([`int4::linear`]), the oracle for int4 kernels.
    pub fn from_int4(
        config: &ModelConfig,
        weights: &ModelWeights,
        quant: &Int4Config,
    ) -> Result<Self, ModelError> {
        Self::build(config, weights, |name, shape| {
            let prefix = name.strip_suffix(".weight").unwrap_or(name);
            Ok(int4::linear(weights, Some(quant), prefix, shape[0], shape[1])?.to_f32())
        })
    }

    /// The model from `linear_weight(name, shape)` for linear weights (`[out, in]`) and
    /// f32-widened tensors for the rest.
    fn build<E: From<WeightsError>>(
        config: &ModelConfig,
        weights: &ModelWeights,
        linear_weight: impl Fn(&str, &[usize]) -> Result<Vec<f32>, E>,
    ) -> Result<Self, E> {
        let shapes: std::collections::HashMap<String, Vec<usize>> =
            expected_tensors(config).into_iter().collect();
        let read = |name: &str| -> Result<Vec<f32>, E> {
            Ok(weights.tensor(name, &shapes[name])?.to_f32())
        };
        let linear = |prefix: &str, bias: bool| -> Result<Linear, E> {
            let name = format!("{prefix}.weight");
            let shape = &shapes[&name];
            Ok(Linear {
                weight: linear_weight(&name, shape)?,
                bias: bias.then(|| read(&format!("{prefix}.bias"))).transpose()?,
                outputs: shape[0],
                inputs: shape[1],
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_norm: read(&format!("{p}.input_layernorm.weight"))?,
                q: linear(&format!("{p}.self_attn.q_proj"), config.qkv_bias)?,
                k: linear(&format!("{p}.self_attn.k_proj"), config.qkv_bias)?,
                v: linear(&format!("{p}.self_attn.v_proj"), config.qkv_bias)?,
                o: linear(&format!("{p}.self_attn.o_proj"), config.o_bias)?,
                post_norm: read(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: linear(&format!("{p}.mlp.gate_proj"), false)?,
                up: linear(&format!("{p}.mlp.up_proj"), false)?,
                down: linear(&format!("{p}.mlp.down_proj"), false)?,
                window: config.layer_windows[i],
            });
        }
        let lm_head = match config.tie_word_embeddings {
            true => None,
            false => Some(read("lm_head.weight")?),
        };
        Ok(HostModel {
            config: config.clone(),
            embed: read("model.embed_tokens.weight")?,
            layers,
            norm: read("model.norm.weight")?,
            lm_head,
            inv_freq: config.rope_inv_freq().iter().map(|&f| f as f32).collect(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Replaces the weight (`[out, in]`) of linear `proj` (one of [`LinearInput::linears`])
    /// of decoder layer `layer`, e.g. by its quantized value.
    ///
    /// # Panics
    /// On an unknown layer or linear, or a weight of another size (caller bugs).
    pub fn set_linear_weight(&mut self, layer: usize, proj: &str, weight: Vec<f32>) {
        let l = &mut self.layers[layer];
        let linear = match proj {
            "self_attn.q_proj" => &mut l.q,
            "self_attn.k_proj" => &mut l.k,
            "self_attn.v_proj" => &mut l.v,
            "self_attn.o_proj" => &mut l.o,
            "mlp.gate_proj" => &mut l.gate,
            "mlp.up_proj" => &mut l.up,
            "mlp.down_proj" => &mut l.down,
            _ => panic!("no linear {proj:?} in a decoder layer"),
        };
        assert_eq!(weight.len(), linear.weight.len(), "{proj} weight size");
        linear.weight = weight;
    }

    /// The weight (`[out, in]`) of linear `proj` of decoder layer `layer`.
    pub fn linear_weight(&self, layer: usize, proj: &str) -> Option<&[f32]> {
        let l = self.layers.get(layer)?;
        let linear = match proj {
            "self_attn.q_proj" => &l.q,
            "self_attn.k_proj" => &l.k,
            "self_attn.v_proj" => &l.v,
            "self_attn.o_proj" => &l.o,
            "mlp.gate_proj" => &l.gate,
            "mlp.up_proj" => &l.up,
            "mlp.down_proj" => &l.down,
            _ => return None,
        };
        Some(&linear.weight)
    }

    /// An empty KV cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        let layers = self.config.num_hidden_layers;
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Runs `tokens` at positions `cache.len()..`, appending their keys and values to the
    /// cache, and returns the logits of each of them.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Logits, ModelError> {
        let c = &self.config;
        let mut x = self.embed(tokens, cache.len)?;
        for l in 0..self.layers.len() {
            self.layer_forward(l, &mut x, cache, &mut |_, _| {});
        }
        cache.len += tokens.len();
        let normed = self.rms_norm(&x, &self.norm);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(Logits {
            vocab: c.vocab_size,
            values: linear(&normed, head, None, c.hidden_size, c.vocab_size),
        })
    }

    /// The embeddings `[tokens, hidden]` of `tokens` at positions `start..` (the position
    /// only names an out-of-vocabulary token in the error).
    pub fn embed(&self, tokens: &[u32], start: usize) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let h = c.hidden_size;
        let mut x = Vec::with_capacity(tokens.len() * h);
        for (i, &id) in tokens.iter().enumerate() {
            if id as usize >= c.vocab_size {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    position: start + i,
                    vocab: c.vocab_size,
                });
            }
            x.extend_from_slice(&self.embed[id as usize * h..(id as usize + 1) * h]);
        }
        Ok(x)
    }

    /// Decoder layer `l` on the hidden states `x` (`[n, hidden]`, positions `cache.len()..`,
    /// updated in place), appending to the layer's cache (the caller advances the length
    /// once all layers ran). `observe` sees each input of the layer's linears (calibration
    /// for quantization).
    pub fn layer_forward(
        &self,
        l: usize,
        x: &mut [f32],
        cache: &mut KvCache,
        observe: &mut dyn FnMut(LinearInput, &[f32]),
    ) {
        let c = &self.config;
        let (layer, start) = (&self.layers[l], cache.len);
        let normed = self.rms_norm(x, &layer.input_norm);
        observe(LinearInput::Attention, &normed);
        let mut q = layer.q.apply(&normed);
        let mut k = layer.k.apply(&normed);
        let v = layer.v.apply(&normed);
        self.rotate(&mut q, c.q_dim(), start);
        self.rotate(&mut k, c.kv_dim(), start);
        cache.k[l].extend_from_slice(&k);
        cache.v[l].extend_from_slice(&v);
        let attended = self.attention(&q, &cache.k[l], &cache.v[l], start, layer.window);
        observe(LinearInput::AttentionOutput, &attended);
        add(x, &layer.o.apply(&attended));
        let normed = self.rms_norm(x, &layer.post_norm);
        observe(LinearInput::Mlp, &normed);
        let gate = layer.gate.apply(&normed);
        let up = layer.up.apply(&normed);
        let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
        observe(LinearInput::MlpOutput, &act);
        add(x, &layer.down.apply(&act));
    }

    /// The logits of every position of `tokens`, from an empty cache.
    pub fn prompt_logits(&self, tokens: &[u32]) -> Result<Logits, ModelError> {
        self.forward(tokens, &mut self.new_cache())
    }

    /// [`prompt_logits`](Self::prompt_logits) of each sequence of a batch (independently).
    pub fn forward_batch(&self, sequences: &[Vec<u32>]) -> Result<Vec<Logits>, ModelError> {
        sequences.iter().map(|s| self.prompt_logits(s)).collect()
    }

    /// Greedy decoding: up to `max_new_tokens` argmax tokens after `prompt`, stopping after
    /// the first one in `stop_ids`. Returns the generated tokens only.
    pub fn greedy(
        &self,
        prompt: &[u32],
        max_new_tokens: usize,
        stop_ids: &[u32],
    ) -> Result<Vec<u32>, ModelError> {
        let mut cache = self.new_cache();
        let mut generated = Vec::with_capacity(max_new_tokens);
        if max_new_tokens == 0 {
            return Ok(generated);
        }
        let mut logits = self.forward(prompt, &mut cache)?;
        loop {
            let next = argmax(logits.last());
            generated.push(next);
            if generated.len() == max_new_tokens || stop_ids.contains(&next) {
                return Ok(generated);
            }
            logits = self.forward(&[next], &mut cache)?;
        }
    }

    /// `LlamaRMSNorm` per row: `weight * (x / sqrt(mean(x²) + eps))`.
    fn rms_norm(&self, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let eps = self.config.rms_norm_eps;
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(weight.len()) {
            let mean_square = dot(row, row) / row.len() as f64;
            let rstd = 1.0 / (mean_square + eps).sqrt();
            out.extend(
                row.iter()
                    .zip(weight)
                    .map(|(&v, &w)| w * (v as f64 * rstd) as f32),
            );
        }
        out
    }

    /// RoPE in place on `[n, heads × head_dim]` rows at positions `start..`, rotate-half
    /// form: `x * cos + rotate_half(x) * sin`, pairs `(i, i + d/2)`.
    fn rotate(&self, x: &mut [f32], width: usize, start: usize) {
        let d = self.config.head_dim;
        let half = d / 2;
        for (t, row) in x.chunks_exact_mut(width).enumerate() {
            // transformers: freqs = inv_freq (f32) * position (f32), cos/sin of that f32.
            let pos = (start + t) as f32;
            let (cos, sin): (Vec<f32>, Vec<f32>) = self
                .inv_freq
                .iter()
                .map(|&f| {
                    let angle = (pos * f) as f64;
                    (angle.cos() as f32, angle.sin() as f32)
                })
                .unzip();
            for head in row.chunks_exact_mut(d) {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * cos[i] - b * sin[i];
                    head[i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }

    /// Causal GQA attention of `q` (`[n, heads × d]`, positions `start..`) over the cached
    /// `k`, `v` (`[start + n, kv_heads × d]`), softmax in f64 over the visible keys.
    fn attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        start: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let c = &self.config;
        let (d, q_dim, kv_dim) = (c.head_dim, c.q_dim(), c.kv_dim());
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f32; q.len()];
        for (t, q_row) in q.chunks_exact(q_dim).enumerate() {
            let pos = start + t;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for head in 0..c.num_attention_heads {
                let kv_off = (head / c.group_size()) * d;
                let qh = &q_row[head * d..(head + 1) * d];
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| dot(qh, &k[j * kv_dim + kv_off..j * kv_dim + kv_off + d]) * scale)
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let o = &mut out[t * q_dim + head * d..t * q_dim + (head + 1) * d];
                for (i, o_i) in o.iter_mut().enumerate() {
                    let mut acc = 0f64;
                    for (w, j) in weights.iter().zip(first..=pos) {
                        acc += w * v[j * kv_dim + kv_off + i] as f64;
                    }
                    *o_i = (acc / total) as f32;
                }
            }
        }
        out
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// `x * sigmoid(x)`, as `torch.nn.functional.silu`.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }

    #[test]
    fn linear_applies_rows_and_bias() {
        // W = [[1, 2], [3, 4], [5, 6]], x = [[1, 1], [0, 2]]
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = linear(&[1.0, 1.0, 0.0, 2.0], &w, Some(&[0.5, 0.0, -1.0]), 2, 3);
        assert_eq!(y, vec![3.5, 7.0, 10.0, 4.5, 8.0, 11.0]);
    }

    #[test]
    fn silu_matches_its_definition() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
