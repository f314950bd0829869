//! Token sampling: greedy, temperature, top-k, top-p and the repetition penalty, with one
//! seeded random stream per request.
//!
//! The order of the logit transformations is Hugging Face's (`generate` with
//! `RepetitionPenaltyLogitsProcessor`, then the temperature, top-k and top-p warpers):
//!
//! 1. repetition penalty over the distinct tokens of the history (prompt + generated);
//! 2. temperature 0 → argmax (the lowest index on ties), no random draw;
//! 3. otherwise `softmax(logits / T)` in f64, top-k, top-p on the renormalised top-k
//!    distribution, then one uniform draw from the request's own random stream.
//!
//! Reproducibility: each [`Sampler`] owns a xoshiro256** generator seeded from
//! [`SamplingParams::seed`] and draws exactly one number per sampled (non-greedy) token, so
//! a request's tokens depend only on its seed and its logits, never on which other requests
//! share the batch. The generator is written here (not `rand`'s `StdRng`, whose algorithm may
//! change between `rand` versions) so that a seed gives the same tokens in every build.
//!
//! Non-finite logits: a NaN logit is never chosen (it counts as −∞); +∞ logits share all the
//! probability equally (the limit of the softmax). [`Sampler::try_sample`] reports a row with
//! no selectable logit (empty, or every value NaN or −∞) as an error; [`Sampler::sample`]
//! returns token 0 for such a row (documented fallback for callers that cannot fail).

use std::cmp::Ordering;

/// How one request picks its tokens and when it stops. `Default` is greedy decoding of up to
/// 64 tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// The most tokens to generate (≥ 1).
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax). Finite and ≥ 0.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 turns the filter off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability is ≥ `top_p`; in (0, 1],
    /// 1 turns the filter off.
    pub top_p: f32,
    /// Hugging Face's repetition penalty (> 0; 1 = off): a token already in the history has
    /// its logit divided by the penalty when positive, multiplied when negative or zero.
    pub repetition_penalty: f32,
    /// Seed of the request's random stream (unused when greedy).
    pub seed: u64,
    /// Generation stops after any of these tokens is produced.
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

/// A sampling parameter out of range, or a logits row nothing can be sampled from.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("{field} = {value} is out of range: {expected}")]
    OutOfRange {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot sample from an empty logits row")]
    EmptyLogits,
    #[error(
        "no token can be sampled: all {vocab} logits are NaN or -inf ({nan} NaN); the model \
         output is broken"
    )]
    NoFiniteLogit { vocab: usize, nan: usize },
}

impl SamplingParams {
    /// Checks every field's range; the error names the first bad field, its value and the
    /// range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        match self.out_of_range().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every out-of-range field (for reporting them all at once).
    pub fn out_of_range(&self) -> Vec<SamplingError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field, value: &dyn std::fmt::Display, expected| {
            if !ok {
                errors.push(SamplingError::OutOfRange {
                    field,
                    value: value.to_string(),
                    expected,
                });
            }
        };
        check(
            self.max_tokens > 0,
            "max_tokens",
            &self.max_tokens,
            "must be at least 1",
        );
        let t = self.temperature;
        check(
            t.is_finite() && t >= 0.0,
            "temperature",
            &t,
            "must be finite and >= 0 (0 = greedy)",
        );
        let p = self.top_p;
        check(
            p > 0.0 && p <= 1.0,
            "top_p",
            &p,
            "must be in (0, 1] (1 = off)",
        );
        let r = self.repetition_penalty;
        check(
            r.is_finite() && r > 0.0,
            "repetition_penalty",
            &r,
            "must be finite and > 0 (1 = off)",
        );
        errors
    }

    /// Whether the request stops after generating `token`.
    pub fn is_stop_token(&self, token: u32) -> bool {
        self.stop_token_ids.contains(&token)
    }

    /// True when sampling is greedy (no random draw).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// The sampler of one request: its parameters, its random stream and reusable scratch space.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256,
    /// Scaled logits (f64) of the current row.
    scaled: Vec<f64>,
    /// Candidate token ids, filtered and (when a filter needs it) sorted.
    candidates: Vec<u32>,
}

impl Sampler {
    /// A sampler for one request. The parameters are taken as they are: call
    /// [`SamplingParams::validate`] first (out-of-range values give unspecified tokens, but
    /// never a panic).
    pub fn new(params: &SamplingParams) -> Self {
        Sampler {
            params: params.clone(),
            rng: Xoshiro256::seeded(params.seed),
            scaled: Vec::new(),
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token from one row of logits (`vocab` floats); `history` is the prompt and
    /// the tokens generated so far (for the repetition penalty). A row with no selectable
    /// logit gives token 0; use [`Sampler::try_sample`] to see that as an error.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.try_sample(logits, history).unwrap_or(0)
    }

    /// [`Sampler::sample`], with an error for an empty row or a row whose logits are all NaN
    /// or −∞ (after the penalty).
    pub fn try_sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, SamplingError> {
        if logits.is_empty() {
            return Err(SamplingError::EmptyLogits);
        }
        self.load_penalized(logits, history);
        if self.params.is_greedy() {
            return argmax(&self.scaled).ok_or_else(|| no_finite(logits));
        }
        self.sample_softmax().ok_or_else(|| no_finite(logits))
    }

    /// Copies the row into `scaled` as f64 with the repetition penalty applied (NaN → −∞).
    fn load_penalized(&mut self, logits: &[f32], history: &[u32]) {
        self.scaled.clear();
        self.scaled.extend(logits.iter().map(|&l| {
            if l.is_nan() {
                f64::NEG_INFINITY
            } else {
                f64::from(l)
            }
        }));
        let penalty = self.params.repetition_penalty;
        if penalty == 1.0 {
            return;
        }
        // Each distinct history token is penalised once, however often it occurs.
        let mut seen: Vec<u32> = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        let penalty = f64::from(penalty);
        for &token in &seen {
            if let Some(l) = self.scaled.get_mut(token as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }

    /// Temperature, top-k, top-p and the draw over `scaled`; `None` when nothing is
    /// selectable. One `exp` per vocabulary entry; the candidate list is built (and sorted)
    /// only when a filter is on.
    fn sample_softmax(&mut self) -> Option<u32> {
        let max = self
            .scaled
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            return None;
        }
        // In place: logits -> unnormalised probabilities exp((l - max) / T). With +inf
        // logits, the limit of the softmax gives the +inf tokens all the mass.
        let inv_t = 1.0 / f64::from(self.params.temperature);
        for l in self.scaled.iter_mut() {
            *l = match max == f64::INFINITY {
                true => f64::from(u8::from(*l == f64::INFINITY)),
                false => ((*l - max) * inv_t).exp(),
            };
        }
        let weights = &self.scaled;
        let vocab = weights.len();
        let (k, top_p) = (self.params.top_k, f64::from(self.params.top_p));
        if (k == 0 || k >= vocab) && top_p >= 1.0 {
            let u = self.rng.next_f64();
            return draw(u, (0..vocab as u32).map(|i| (i, weights[i as usize])));
        }
        let cands = &mut self.candidates;
        cands.clear();
        cands.extend((0..vocab as u32).filter(|&i| weights[i as usize] > 0.0));
        // Most likely first, the lowest index first among equals.
        let order = |a: &u32, b: &u32| -> Ordering {
            let (wa, wb) = (weights[*a as usize], weights[*b as usize]);
            wb.total_cmp(&wa).then(a.cmp(b))
        };
        if k > 0 && k < cands.len() {
            cands.select_nth_unstable_by(k - 1, order);
            cands.truncate(k);
        }
        if top_p < 1.0 {
            let total: f64 = cands.iter().map(|&i| weights[i as usize]).sum();
            prefilter_top_p(cands, weights, top_p * total);
            cands.sort_unstable_by(order);
            let mut cumulative = 0.0;
            let keep = cands.iter().position(|&i| {
                cumulative += weights[i as usize];
                cumulative >= top_p * total
            });
            cands.truncate(keep.map_or(cands.len(), |n| n + 1));
        }
        let u = self.rng.next_f64();
        draw(u, cands.iter().map(|&i| (i, weights[i as usize])))
    }
}

/// Drops candidates that cannot be in the top-p set, so only a few need sorting: with
/// candidates bucketed by the binary exponent of their weight, the buckets from the top down
/// to the first one where the mass reaches `mass` hold every token of the smallest
/// most-likely set whose mass reaches it. The result of the sort and cut is unchanged.
fn prefilter_top_p(cands: &mut Vec<u32>, weights: &[f64], mass: f64) {
    let exponent = |w: f64| ((w.to_bits() >> 52) & 0x7ff) as usize;
    let mut bucket_mass = [0.0f64; 2048];
    for &i in cands.iter() {
        let w = weights[i as usize];
        bucket_mass[exponent(w)] += w;
    }
    let mut cumulative = 0.0;
    let mut lowest = 0;
    for e in (0..2048).rev() {
        cumulative += bucket_mass[e];
        if cumulative >= mass {
            lowest = e;
            break;
        }
    }
    cands.retain(|&i| exponent(weights[i as usize]) >= lowest);
}

/// Inverse-CDF draw: the first token whose cumulative weight exceeds `u` × the total
/// (`u` in [0, 1)); `None` when no weight is positive.
fn draw(u: f64, weights: impl Iterator<Item = (u32, f64)> + Clone) -> Option<u32> {
    let total: f64 = weights.clone().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let target = u * total;
    let mut cumulative = 0.0;
    let mut last = None;
    for (i, w) in weights.filter(|&(_, w)| w > 0.0) {
        cumulative += w;
        if target < cumulative {
            return Some(i);
        }
        last = Some(i);
    }
    // Rounding can leave `target` just above the final cumulative sum.
    last
}

/// The index of the largest value, the lowest index on ties; `None` when every value is −∞.
fn argmax(values: &[f64]) -> Option<u32> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v > f64::NEG_INFINITY && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i as u32)
}

fn no_finite(logits: &[f32]) -> SamplingError {
    SamplingError::NoFiniteLogit {
        vocab: logits.len(),
        nan: logits.iter().filter(|l| l.is_nan()).count(),
    }
}

/// xoshiro256** (Blackman and Vigna, 2018), seeded by SplitMix64 as its authors recommend:
/// small, fast, statistically strong, and fixed here so a seed means the same stream forever.
#[derive(Clone, Debug)]
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn seeded(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Xoshiro256 {
            s: [splitmix(), splitmix(), splitmix(), splitmix()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;
