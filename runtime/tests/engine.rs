//! Engine tests on synthetic workloads with the FakeRunner (a paged KV cache of token ids
//! whose "model" hashes the context it reads back): every scheduling choice — prefix sharing,
//! chunking, token budget, tiny caches forcing preemption — must give each request the same
//! tokens as running it alone, with no page leaked after any step.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warpforge_runtime::engine::fake::FakeRunner;
use warpforge_runtime::engine::sampling::SamplingParams;
use warpforge_runtime::engine::{
    Completion, Engine, EngineConfig, EngineError, FinishReason, LogitRows, Request, Sequence,
    StepLogits, StepPlan, StepRunner,
};

const VOCAB: usize = 61;

fn config(kv_pages: usize, token_budget: usize) -> EngineConfig {
    EngineConfig {
        kv_pages,
        token_budget,
        max_seqs_hint: 0,
        share_prefixes: true,
        chunk_prefill: true,
        dump_logits: false,
    }
}

fn request(prompt: Vec<u32>, max_tokens: usize, stop: Vec<u32>) -> Request {
    let params = SamplingParams {
        max_tokens,
        stop_token_ids: stop,
        ..Default::default()
    };
    Request { prompt, params }
}

fn random_tokens(rng: &mut StdRng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(0..VOCAB as u32)).collect()
}

/// Requests over a few shared system prompts (one nested in another), random suffixes,
/// random max_tokens, and a random stop token on some (random finishes).
fn workload(seed: u64, n: usize) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = random_tokens(&mut rng, 40);
    let mut nested = base.clone();
    nested.extend(random_tokens(&mut rng, 23));
    let prefixes = [Vec::new(), base, nested, random_tokens(&mut rng, 17)];
    (0..n)
        .map(|_| {
            let mut prompt = prefixes[rng.random_range(0..prefixes.len())].clone();
            let suffix = rng.random_range(1..30);
            prompt.extend(random_tokens(&mut rng, suffix));
            let stop = if rng.random_bool(0.5) {
                vec![rng.random_range(0..VOCAB as u32)]
            } else {
                vec![]
            };
            request(prompt, rng.random_range(1..25), stop)
        })
        .collect()
}

/// Each request run alone in a large cache: the reference tokens.
fn solo(request: &Request, page_size: usize) -> Completion {
    let mut engine = Engine::new(
        FakeRunner::new(512, page_size, VOCAB),
        config(512, 4096),
        vec![request.clone()],
    )
    .unwrap();
    engine.run_to_completion(|_| {}).unwrap().remove(0)
}

fn pages_needed(requests: &[Request], page_size: usize) -> usize {
    let tokens = requests
        .iter()
        .map(|r| r.prompt.len() + r.params.max_tokens - 1);
    tokens.max().unwrap().div_ceil(page_size)
}

/// Runs `requests` to completion, checking every plan against the sequences' state before
/// the step and the block manager after it.
fn run_checked(
    requests: &[Request],
    page_size: usize,
    cfg: EngineConfig,
) -> (Vec<Completion>, Engine<FakeRunner>) {
    let mut runner = FakeRunner::new(cfg.kv_pages, page_size, VOCAB);
    runner.record = true;
    let mut engine = Engine::new(runner, cfg, requests.to_vec()).unwrap();
    let mut finished_events = requests.iter().filter(|r| r.params.max_tokens == 0).count();
    while !engine.is_finished() {
        let before: Vec<Sequence> = engine.scheduler().sequences().to_vec();
        let report = engine.step().unwrap();
        finished_events += report.finished;
        let plan = engine.runner().plans.last().unwrap().clone();
        check_plan(&plan, &before, page_size, &cfg);
        engine.scheduler().check_invariants().unwrap();
        for s in &before {
            let now = engine.scheduler().seq(s.id);
            let scheduled = plan.chunks.iter().any(|c| c.seq == s.id);
            assert!(
                !s.is_decoding()
                    || scheduled
                    || now.status == warpforge_runtime::engine::Status::Waiting,
                "decode of {} stalled",
                s.id
            );
        }
    }
    assert_eq!(
        finished_events,
        requests.len(),
        "each request finishes exactly once"
    );
    let blocks = engine.scheduler().blocks();
    assert_eq!(
        blocks.free_pages(),
        blocks.num_pages(),
        "pages leaked at the end"
    );
    let completions = engine.run_to_completion(|_| {}).unwrap();
    (completions, engine)
}

fn check_plan(plan: &StepPlan, before: &[Sequence], ps: usize, cfg: &EngineConfig) {
    let alone = !cfg.chunk_prefill && plan.chunks.len() == 1;
    assert!(
        plan.tokens() <= cfg.token_budget || alone,
        "budget {} exceeded: {}",
        cfg.token_budget,
        plan.tokens()
    );
    let is_decode: Vec<bool> = plan
        .chunks
        .iter()
        .map(|c| before[c.seq].is_decoding())
        .collect();
    let decodes = is_decode.iter().take_while(|&&d| d).count();
    assert!(
        is_decode[decodes..].iter().all(|&d| !d),
        "a decode after a prefill chunk"
    );
    assert!(plan.decodes() >= decodes);
    let mut seen = vec![false; before.len()];
    for chunk in &plan.chunks {
        assert!(
            !std::mem::replace(&mut seen[chunk.seq], true),
            "sequence {} twice in a step",
            chunk.seq
        );
        let seq = &before[chunk.seq];
        let end = chunk.start + chunk.tokens.len();
        assert!(!chunk.tokens.is_empty());
        assert_eq!(chunk.tokens, seq.tokens[chunk.start..end]);
        assert_eq!(chunk.pages.len(), end.div_ceil(ps));
        let expected_logits = if end == seq.tokens.len() {
            LogitRows::Last
        } else {
            LogitRows::None
        };
        assert_eq!(chunk.logits, expected_logits);
        if seq.status == warpforge_runtime::engine::Status::Running {
            assert_eq!(chunk.start, seq.computed);
            let k = seq.pages.len().min(chunk.pages.len());
            assert_eq!(chunk.pages[..k], seq.pages[..k], "block table changed");
        } else {
            // Newly admitted: starts after whole pages computed by a running sequence.
            assert_eq!(chunk.start % ps, 0);
            assert!(cfg.share_prefixes || chunk.start == 0);
            for (d, page) in chunk.pages[..chunk.start / ps].iter().enumerate() {
                // Held by a sequence that computed it, or free with its content kept (the
                // FakeRunner's read-back catches a stale page).
                if let Some(owner) = before.iter().find(|o| o.pages.contains(page)) {
                    assert_eq!(owner.pages.get(d), Some(page), "shared page {page} moved");
                    assert!(
                        owner.computed >= (d + 1) * ps,
                        "shared page {page} not computed yet"
                    );
                    assert_eq!(owner.tokens[..(d + 1) * ps], seq.tokens[..(d + 1) * ps]);
                }
            }
        }
    }
    for group in &plan.shared_prefixes {
        assert!(group.chunks.len() >= 2 && group.chunks.end <= decodes && group.pages >= 1);
        let first = &plan.chunks[group.chunks.start].pages[..group.pages];
        for chunk in &plan.chunks[group.chunks.clone()] {
            assert_eq!(&chunk.pages[..group.pages], first);
        }
    }
}

#[test]
fn every_scheduling_choice_gives_the_solo_tokens() {
    let (mut preempted, mut saved, mut groups) = (0, 0, 0);
    for (seed, page_size) in [(1, 4), (2, 8), (3, 16)] {
        let requests = workload(seed, 40);
        let reference: Vec<Completion> = requests.iter().map(|r| solo(r, page_size)).collect();
        let tight = pages_needed(&requests, page_size);
        for kv_pages in [tight, tight + 4, 4096] {
            for budget in [7, 32, 256] {
                for (share_prefixes, chunk_prefill) in
                    [(true, true), (false, true), (true, false), (false, false)]
                {
                    let cfg = EngineConfig {
                        share_prefixes,
                        chunk_prefill,
                        ..config(kv_pages, budget)
                    };
                    let (completions, engine) = run_checked(&requests, page_size, cfg);
                    assert_eq!(
                        completions, reference,
                        "seed {seed} page {page_size} {cfg:?}"
                    );
                    let stats = engine.stats();
                    preempted += stats.preemptions;
                    saved += stats.tokens_saved;
                    assert!(share_prefixes || stats.tokens_saved == 0);
                    assert_eq!(stats.padding_tokens, 0);
                    assert!(stats.peak_pages <= kv_pages);
                    groups += engine
                        .runner()
                        .plans
                        .iter()
                        .map(|p| p.shared_prefixes.len())
                        .sum::<usize>();
                }
            }
        }
    }
    assert!(preempted > 0, "no workload forced a preemption");
    assert!(saved > 0, "no prefix was shared");
    assert!(groups > 0, "no shared-prefix decode group");
}

#[test]
fn sharing_saves_what_the_prefix_tree_promises_with_room() {
    let requests = workload(9, 30);
    let (_, engine) = run_checked(&requests, 8, config(4096, 4096));
    let tree = engine.scheduler().tree();
    assert!(tree.potential_saving() > 0);
    assert_eq!(engine.stats().tokens_saved, tree.potential_saving());
    assert_eq!(engine.stats().preemptions, 0);
}

#[test]
fn prefix_pages_are_freed_when_the_last_user_finishes() {
    let prefix: Vec<u32> = (0..8).collect(); // two pages of 4
    let requests: Vec<Request> = [3, 9, 20]
        .iter()
        .map(|&max| {
            let mut prompt = prefix.clone();
            prompt.extend([50 + max as u32, 1]);
            request(prompt, max, vec![])
        })
        .collect();
    let mut engine = Engine::new(FakeRunner::new(64, 4, VOCAB), config(64, 64), requests).unwrap();
    let mut prefix_pages = Vec::new();
    let mut max_refs = 0;
    while !engine.is_finished() {
        engine.step().unwrap();
        let sched = engine.scheduler();
        if prefix_pages.is_empty() && sched.seq(0).computed >= 8 {
            prefix_pages = sched.seq(0).pages[..2].to_vec();
        }
        let users = sched
            .sequences()
            .iter()
            .filter(|s| s.pages.starts_with(&prefix_pages))
            .count();
        for &page in &prefix_pages {
            assert_eq!(sched.blocks().refs(page) as usize, users, "page {page}");
            max_refs = max_refs.max(users);
        }
        sched.check_invariants().unwrap();
    }
    assert_eq!(max_refs, 3, "all three requests shared the prefix pages");
    for &page in &prefix_pages {
        assert_eq!(engine.scheduler().blocks().refs(page), 0);
    }
    assert_eq!(engine.stats().tokens_saved, 2 * 8);
}

#[test]
fn prompt_logits_match_the_solo_run_with_sharing_and_chunks() {
    let requests = workload(5, 12);
    let dump = |cfg: EngineConfig, reqs: &[Request]| {
        let cfg = EngineConfig {
            dump_logits: true,
            ..cfg
        };
        let mut engine =
            Engine::new(FakeRunner::new(cfg.kv_pages, 4, VOCAB), cfg, reqs.to_vec()).unwrap();
        engine.run_to_completion(|_| {}).unwrap();
        (0..reqs.len())
            .map(|s| engine.prompt_logits(s).to_vec())
            .collect::<Vec<_>>()
    };
    let batched = dump(config(pages_needed(&requests, 4) + 2, 16), &requests);
    for (s, r) in requests.iter().enumerate() {
        let alone = dump(config(512, 4096), std::slice::from_ref(r)).remove(0);
        assert_eq!(alone.len(), r.prompt.len() * VOCAB);
        for (pos, row) in alone.chunks(VOCAB).enumerate() {
            let next = FakeRunner::next_token(&r.prompt[..=pos], VOCAB) as usize;
            assert_eq!(row[next], 1.0, "solo row {pos}");
        }
        assert_eq!(batched[s], alone, "request {s}");
    }
}

#[test]
fn a_prompt_longer_than_the_budget_runs_alone_without_chunking() {
    let requests = vec![
        request(vec![1; 5], 6, vec![]),
        request(vec![2; 40], 3, vec![]),
        request(vec![3; 5], 2, vec![]),
    ];
    let cfg = EngineConfig {
        chunk_prefill: false,
        ..config(64, 16)
    };
    let (completions, engine) = run_checked(&requests, 4, cfg);
    let long = engine
        .runner()
        .plans
        .iter()
        .find(|p| p.chunks.iter().any(|c| c.tokens.len() == 40))
        .unwrap();
    assert_eq!(long.chunks.len(), 1);
    assert_eq!(completions.len(), 3);
}

#[test]
fn decode_heavy_requests_are_admitted_first() {
    let requests = vec![
        request(vec![1; 30], 2, vec![]),
        request(vec![2; 3], 20, vec![]),
    ];
    let (_, engine) = run_checked(&requests, 4, config(64, 64));
    let first = &engine.runner().plans[0];
    assert_eq!(first.chunks[0].seq, 1, "ratio 20/3 before 2/30");
}

#[test]
fn a_request_that_can_never_fit_is_named() {
    let requests = vec![
        request(vec![1; 8], 4, vec![]),
        request(vec![1; 30], 10, vec![]),
    ];
    let err = Engine::new(FakeRunner::new(8, 4, VOCAB), config(8, 16), requests)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            EngineError::RequestTooLarge {
                seq: 1,
                needed: 10,
                kv_pages: 8,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("request 1 needs 10 KV pages"),
        "{err}"
    );
    let empty = Engine::new(
        FakeRunner::new(8, 4, VOCAB),
        config(8, 16),
        vec![request(vec![], 4, vec![])],
    );
    assert!(matches!(
        empty.err().unwrap(),
        EngineError::EmptyPrompt { seq: 0 }
    ));
}

#[test]
fn max_tokens_zero_and_stop_tokens_finish_as_told() {
    let prompt = vec![4, 5, 6];
    let first = FakeRunner::next_token(&prompt, VOCAB);
    let requests = vec![
        request(prompt.clone(), 0, vec![]),
        request(prompt.clone(), 10, vec![first]),
        request(prompt, 3, vec![]),
    ];
    let (completions, _) = run_checked(&requests, 4, config(16, 16));
    assert_eq!(
        completions[0],
        Completion {
            tokens: vec![],
            finish: FinishReason::Length
        }
    );
    assert_eq!(
        completions[1],
        Completion {
            tokens: vec![first],
            finish: FinishReason::Stop
        }
    );
    assert_eq!(completions[2].tokens.len(), 3);
    assert_eq!(completions[2].finish, FinishReason::Length);
}

struct Failing(usize);

impl StepRunner for Failing {
    fn page_size(&self) -> usize {
        4
    }
    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError> {
        match self.0 {
            0 => Err(EngineError::runner("device lost")),
            _ => Ok(StepLogits {
                rows: vec![vec![0.0; 3]; plan.chunks.len()],
                vocab: self.0,
            }),
        }
    }
}

#[test]
fn runner_errors_and_bad_logits_are_reported() {
    let reqs = vec![request(vec![1, 2, 3], 2, vec![])];
    let mut engine = Engine::new(Failing(0), config(8, 8), reqs.clone()).unwrap();
    let err = engine.step().unwrap_err();
    assert!(
        matches!(err, EngineError::Runner(_)) && err.to_string().contains("device lost"),
        "{err}"
    );
    let mut engine = Engine::new(Failing(5), config(8, 8), reqs).unwrap();
    let err = engine.step().unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::LogitsShape {
                got: 3,
                expected: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn max_seqs_hint_caps_the_running_sequences() {
    let requests = workload(11, 20);
    let reference: Vec<Completion> = requests.iter().map(|r| solo(r, 8)).collect();
    let cfg = EngineConfig {
        max_seqs_hint: 3,
        ..config(4096, 256)
    };
    let (completions, engine) = run_checked(&requests, 8, cfg);
    assert_eq!(completions, reference);
    assert!(engine.runner().plans.iter().all(|p| p.chunks.len() <= 3));
    assert!(engine.runner().plans.iter().any(|p| p.chunks.len() == 3));
}
