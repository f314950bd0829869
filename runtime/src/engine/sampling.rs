//! Stand-in for wt-sample's sampling module (same names): greedy decoding only, so the engine
//! builds and tests on its own. The real sampler (temperature, top-k, top-p, repetition
//! penalty, seeds) replaces this file at merge.

/// How one request picks its tokens and when it stops. `Default` is greedy decoding of up to
/// 64 tokens. Only `max_tokens` and `stop_token_ids` are honoured by this stand-in.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
    pub stop_token_ids: Vec<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop_token_ids: Vec::new(),
        }
    }
}

/// Picks one request's tokens (greedy in this stand-in).
pub struct Sampler;

impl Sampler {
    pub fn new(_params: &SamplingParams) -> Self {
        Sampler
    }

    /// The argmax of `logits`, the lowest index on ties; NaN never wins.
    pub fn sample(&mut self, logits: &[f32], _history: &[u32]) -> u32 {
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] || logits[best].is_nan() && !x.is_nan() {
                best = i;
            }
        }
        best as u32
    }
}
