//! The engine's host side on a synthetic batch (256 requests, 8 shared system prompts of
//! 64–512 tokens, varied suffixes and output lengths, 16-token pages): prints the counted
//! work — prompt tokens computed with and without prefix sharing, packed vs padded tokens,
//! steps per chunk size — then times the scheduler (criterion) with a runner that does no
//! model work, so the time is the bookkeeping per batch.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warpforge_runtime::engine::sampling::SamplingParams;
use warpforge_runtime::engine::{
    Engine, EngineConfig, EngineError, LogitRows, Request, StepLogits, StepPlan, StepRunner,
};

const PAGE: usize = 16;
const VOCAB: usize = 64;

/// Returns deterministic logits (next token from the position) and counts the work.
#[derive(Default)]
struct CountingRunner {
    packed: usize,
    /// Prefill tokens if each step's prompt pieces were padded to the longest one.
    padded: usize,
}

impl StepRunner for CountingRunner {
    fn page_size(&self) -> usize {
        PAGE
    }

    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError> {
        let prefill = &plan.chunks[plan.decodes()..];
        let longest = prefill.iter().map(|c| c.tokens.len()).max().unwrap_or(0);
        self.packed += prefill.iter().map(|c| c.tokens.len()).sum::<usize>();
        self.padded += prefill.len() * longest;
        let rows = plan.chunks.iter().map(|c| {
            let n = match c.logits {
                LogitRows::None => 0,
                LogitRows::Last => 1,
                LogitRows::All => c.tokens.len(),
            };
            let next = (c.start + c.tokens.len()) * 7 % VOCAB;
            (0..n * VOCAB)
                .map(|i| if i % VOCAB == next { 1.0 } else { 0.0 })
                .collect()
        });
        Ok(StepLogits {
            rows: rows.collect(),
            vocab: VOCAB,
        })
    }
}

fn batch() -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(13);
    let tokens = |rng: &mut StdRng, n| {
        (0..n)
            .map(|_| rng.random_range(0..VOCAB as u32))
            .collect::<Vec<_>>()
    };
    let systems: Vec<Vec<u32>> = (0..8)
        .map(|_| {
            let n = rng.random_range(64..=512);
            tokens(&mut rng, n)
        })
        .collect();
    (0..256)
        .map(|_| {
            let mut prompt = if rng.random_bool(0.8) {
                systems[rng.random_range(0..8)].clone()
            } else {
                Vec::new()
            };
            let suffix = rng.random_range(16..256);
            prompt.extend(tokens(&mut rng, suffix));
            let params = SamplingParams {
                max_tokens: rng.random_range(8..128),
                ..Default::default()
            };
            Request { prompt, params }
        })
        .collect()
}

fn config(token_budget: usize, share_prefixes: bool) -> EngineConfig {
    EngineConfig {
        kv_pages: 2048,
        token_budget,
        max_seqs_hint: 0,
        share_prefixes,
        chunk_prefill: true,
        dump_logits: false,
    }
}

fn run(requests: &[Request], cfg: EngineConfig) -> Engine<CountingRunner> {
    let mut engine =
        Engine::new(CountingRunner::default(), cfg, requests.to_vec()).expect("batch fits");
    engine
        .run_to_completion(|_| {})
        .expect("fake runs cannot fail");
    engine
}

fn report(requests: &[Request]) {
    let prompt: usize = requests.iter().map(|r| r.prompt.len()).sum();
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    println!(
        "engine batch: {} requests, {prompt} prompt tokens, pages of {PAGE}, 2048 pages",
        requests.len()
    );
    println!(
        "  static padded batch (every prompt to the longest): {} tokens",
        requests.len() * longest
    );
    for budget in [64, 256, 1024] {
        for share in [false, true] {
            let engine = run(requests, config(budget, share));
            let (s, r) = (engine.stats(), engine.runner());
            println!(
                "  budget {budget:>4} sharing {:<5}: steps {:>5}, prompt tokens computed {:>6} (saved {:>6}, tree promises {:>6}), packed {:>6} vs padded-per-step {:>6}, peak pages {:>4}, preemptions {}",
                share, s.steps, s.prompt_tokens_computed, s.tokens_saved,
                engine.scheduler().tree().potential_saving(), r.packed, r.padded, s.peak_pages, s.preemptions
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let requests = batch();
    report(&requests);
    for budget in [256, 1024] {
        c.bench_function(
            &format!("engine/schedule_256_requests/budget_{budget}"),
            |b| b.iter(|| run(&requests, config(budget, true)).stats().steps),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
