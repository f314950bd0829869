//! The device model (every layer on warpforge kernels, here on the CPU interpreter) against
//! the transformers fixture and the host reference.

use serde_json::Value;
use std::path::{Path, PathBuf};
use warpforge_dsl::prelude::bf16;
use warpforge_dsl::Device;
use warpforge_runtime::engine::model::DeviceModel;
use warpforge_runtime::engine::plan::{Chunk, LogitRows, StepPlan};
use warpforge_runtime::model::ModelDir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn pages(first: u32, n: usize) -> Vec<u32> {
    (first..first + n as u32).collect()
}

/// Transformers' logits of prompt `i` (`[len, vocab]` f32; the forward ran in f32).
fn expected_logits(name: &str, i: usize) -> Vec<f32> {
    let bytes =
        std::fs::read(fixtures().join(format!("{name}.expected-logits.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(&format!("prompt.{i}")).unwrap();
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn fixture(name: &str) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let prompts = expected["prompts"].as_array().unwrap();
    (
        prompts.iter().map(|p| ids(&p["ids"])).collect(),
        prompts.iter().map(|p| ids(&p["greedy"])).collect(),
    )
}

/// Every prompt packed into one prefill step; the worst |logit − transformers| over all,
/// as a fraction of its tolerance (`unit`: the format's precision).
fn packed_prefill_error<F: FloatModel>(name: &str, unit: f32) -> f32 {
    let dir = fixtures().join(name);
    let model = ModelDir::open(&dir).unwrap();
    let mut dev = F::load(&model);
    let (prompts, _) = fixture(name);
    let mut next_page = 0u32;
    let chunks: Vec<Chunk> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = p.len().div_ceil(16);
            let c = Chunk {
                seq: i,
                tokens: p.clone(),
                start: 0,
                pages: pages(next_page, n),
                logits: LogitRows::All,
            };
            next_page += n as u32;
            c
        })
        .collect();
    let out = dev.step(&StepPlan {
        chunks,
        shared_prefixes: vec![],
    });
    let vocab = model.config.vocab_size;
    let mut worst = 0f32;
    for (i, p) in prompts.iter().enumerate() {
        let want = expected_logits(name, i);
        assert_eq!(out[i].len(), p.len() * vocab);
        let max = out[i]
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let tol = tolerance(unit, &want);
        println!(
            "{name} prompt {i}: {} tokens, max |logit diff| {max:.4} (tolerance {tol:.4})",
            p.len()
        );
        worst = worst.max(max / tol);
    }
    worst
}

/// Tolerance, relative to the prompt's largest |logit|: the kernels round every activation
/// to the compute type, as PyTorch does in that type, so the distance to transformers' f32
/// forward is a few units of the format's precision (2^-8 for bf16, 2^-11 for f16) times
/// the logits' size. Measured: Llama bf16 0.036 of 3.9 (2.4 units), f16 0.004 (2.1 units);
/// Qwen2 bf16 0.23 of 27.9 (2.2 units), f16 0.025 (1.8 units). Bound: 4 units.
fn tolerance(unit: f32, logits: &[f32]) -> f32 {
    4.0 * unit * logits.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Greedy decoding with hand-written plans: `schedule(step, seq)` says how many prompt
/// tokens of `seq` to prefill in that step (0: wait); once a prompt is in, each step decodes
/// one token (decodes first in the plan, then prefill chunks).
fn greedy_with<F: FloatModel>(
    name: &str,
    prompts: &[Vec<u32>],
    new_tokens: usize,
    chunk: usize,
    stagger: bool,
) -> Vec<Vec<u32>> {
    let dir = fixtures().join(name);
    let model = ModelDir::open(&dir).unwrap();
    let mut dev = F::load(&model);
    let per_seq = 8usize;
    let mut done: Vec<usize> = vec![0; prompts.len()]; // prompt tokens in the cache
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut step = 0;
    while out.iter().any(|o| o.len() < new_tokens) {
        let mut decodes = Vec::new();
        let mut prefills = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let pages: Vec<u32> = (0..per_seq as u32)
                .map(|j| i as u32 * per_seq as u32 + j)
                .collect();
            if done[i] == p.len() {
                if out[i].len() < new_tokens {
                    let pos = p.len() + out[i].len() - 1;
                    decodes.push(Chunk {
                        seq: i,
                        tokens: vec![*out[i].last().unwrap()],
                        start: pos,
                        pages,
                        logits: LogitRows::Last,
                    });
                }
            } else if !stagger || step >= i {
                let n = chunk.min(p.len() - done[i]);
                let last = done[i] + n == p.len();
                prefills.push(Chunk {
                    seq: i,
                    tokens: p[done[i]..done[i] + n].to_vec(),
                    start: done[i],
                    pages,
                    logits: if last {
                        LogitRows::Last
                    } else {
                        LogitRows::None
                    },
                });
            }
        }
        let chunks: Vec<Chunk> = decodes.into_iter().chain(prefills).collect();
        let logits = dev.step(&StepPlan {
            chunks: chunks.clone(),
            shared_prefixes: vec![],
        });
        for (c, l) in chunks.iter().zip(logits) {
            if c.logits == LogitRows::None {
                done[c.seq] += c.tokens.len();
                continue;
            }
            if done[c.seq] < prompts[c.seq].len() {
                done[c.seq] += c.tokens.len();
            }
            out[c.seq].push(argmax(&l));
        }
        step += 1;
    }
    out
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

trait FloatModel {
    fn load(model: &ModelDir) -> Self;
    fn step(&mut self, plan: &StepPlan) -> Vec<Vec<f32>>;
}

impl FloatModel for DeviceModel<bf16> {
    fn load(model: &ModelDir) -> Self {
        DeviceModel::load(
            Device::cpu(),
            &model.config,
            (&model.weights, None),
            (64, 16),
            128,
        )
        .unwrap()
    }
    fn step(&mut self, plan: &StepPlan) -> Vec<Vec<f32>> {
        DeviceModel::step(self, plan).unwrap()
    }
}

impl FloatModel for DeviceModel<warpforge_dsl::prelude::f16> {
    fn load(model: &ModelDir) -> Self {
        DeviceModel::load(
            Device::cpu(),
            &model.config,
            (&model.weights, None),
            (64, 16),
            128,
        )
        .unwrap()
    }
    fn step(&mut self, plan: &StepPlan) -> Vec<Vec<f32>> {
        DeviceModel::step(self, plan).unwrap()
    }
}

#[test]
fn packed_prefill_logits_match_transformers() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let bf = packed_prefill_error::<DeviceModel<bf16>>(name, 2f32.powi(-8));
        let half =
            packed_prefill_error::<DeviceModel<warpforge_dsl::prelude::f16>>(name, 2f32.powi(-11));
        println!("{name}: worst diff / tolerance: bf16 {bf:.2}, f16 {half:.2}");
        assert!(bf <= 1.0, "{name} bf16: {bf} of the tolerance");
        assert!(half <= 1.0, "{name} f16: {half} of the tolerance");
    }
}

/// Whole prompts, chunks of 16 and of 7 tokens with staggered arrivals (decodes mixed with
/// prefill chunks in one step, the decode kernel for chunks of ≤ 16 tokens): every schedule
/// gives transformers' greedy tokens, in bf16 and f16 — for Llama (GQA, Llama-3 RoPE,
/// untied head) and Qwen2 (q/k/v biases, tied embeddings, a sliding window of 8 on its
/// second layer).
#[test]
fn greedy_continuations_match_transformers_under_every_schedule() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let (prompts, want) = fixture(name);
        let n = want[0].len();
        for (chunk, stagger) in [(64, false), (16, true), (7, true)] {
            let got = greedy_with::<DeviceModel<bf16>>(name, &prompts, n, chunk, stagger);
            assert_eq!(
                got, want,
                "{name} bf16, chunks of {chunk}, staggered {stagger}"
            );
            let got = greedy_with::<DeviceModel<warpforge_dsl::prelude::f16>>(
                name, &prompts, n, chunk, stagger,
            );
            assert_eq!(
                got, want,
                "{name} f16, chunks of {chunk}, staggered {stagger}"
            );
        }
    }
}

/// Hydragen: prompts 3 and 4 share their first 36 tokens, so two full pages of 16. Prompt
/// 4 reuses prompt 3's two prefix pages (its prefill starts at token 32) and, decoding, the
/// two attend to them through one shared-prefix launch, beside prompt 2 outside any group;
/// the greedy tokens are transformers' (and the same as without sharing, above).
#[test]
fn shared_prefix_pages_and_hydragen_decode_match_transformers() {
    use warpforge_runtime::engine::plan::SharedPrefix;
    for name in ["tiny-llama"] {
        let (prompts, want) = fixture(name);
        let model = ModelDir::open(&fixtures().join(name)).unwrap();
        let mut dev = <DeviceModel<bf16> as FloatModel>::load(&model);
        let (p2, p3, p4) = (&prompts[2], &prompts[3], &prompts[4]);
        assert_eq!(p3[..36], p4[..36]);
        let tables = [vec![10u32, 11, 12], vec![0, 1, 2, 3], vec![0, 1, 5, 6]];
        let chunk = |seq: usize, tokens: &[u32], start: usize| Chunk {
            seq,
            tokens: tokens.to_vec(),
            start,
            pages: tables[seq].clone(),
            logits: LogitRows::Last,
        };
        // Step 1: prompts 2 and 3 whole.
        let first = FloatModel::step(
            &mut dev,
            &StepPlan {
                chunks: vec![chunk(0, p2, 0), chunk(1, p3, 0)],
                shared_prefixes: vec![],
            },
        );
        let mut out = [vec![argmax(&first[0])], vec![argmax(&first[1])], vec![]];
        // Step 2: decodes of 2 and 3, then prompt 4 after the shared 32 tokens.
        let second = FloatModel::step(
            &mut dev,
            &StepPlan {
                chunks: vec![
                    chunk(0, &out[0], p2.len()),
                    chunk(1, &out[1], p3.len()),
                    chunk(2, &p4[32..], 32),
                ],
                shared_prefixes: vec![],
            },
        );
        for (i, l) in second.iter().enumerate() {
            out[i].push(argmax(l));
        }
        // Then decodes: 3 and 4 in one shared-prefix group of 2 pages.
        let lens = [p2.len(), p3.len(), p4.len()];
        while out[2].len() < want[4].len() {
            let chunks = (0..3)
                .map(|i| chunk(i, &out[i][out[i].len() - 1..], lens[i] + out[i].len() - 1))
                .collect();
            let plan = StepPlan {
                chunks,
                shared_prefixes: vec![SharedPrefix {
                    chunks: 1..3,
                    pages: 2,
                }],
            };
            for (i, l) in FloatModel::step(&mut dev, &plan).iter().enumerate() {
                out[i].push(argmax(l));
            }
        }
        assert_eq!(out[2], want[4], "{name}: prompt 4 through the shared pages");
        assert_eq!(out[1][..want[3].len()], want[3], "{name}: prompt 3");
        assert_eq!(
            out[0][..want[2].len()],
            want[2],
            "{name}: prompt 2 beside the group"
        );
    }
}
