//! The inference engine's host side: a batch of requests goes in, completions come out.
//!
//! ```text
//! requests ─► PrefixTree (order, shared paths)
//!   Engine::step:  Scheduler::schedule ─► StepPlan ─► StepRunner::run ─► StepLogits
//!                  ─► Sampler per finished chunk ─► Scheduler::append (finish → free pages)
//! ```
//! The scheduler and block manager are pure bookkeeping over token and page ids; the runner
//! (model + KV cache memory + kernels) only executes plans.

pub mod blocks;
pub mod fake;
pub mod layout;
pub mod model;
pub mod plan;
pub mod prefix;
pub mod request;
pub mod runner;
pub mod sampling;
pub mod scheduler;
pub mod weights;

pub use plan::{
    Chunk, EngineError, LogitRows, SeqId, SharedPrefix, StepLogits, StepPlan, StepRunner,
};
pub use request::{Completion, FinishReason, Request, Sequence, Status};

use sampling::Sampler;
use scheduler::{Scheduler, SchedulerConfig};

#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// KV cache pages (of the runner's page size) the scheduler may hand out.
    pub kv_pages: usize,
    /// The most tokens computed in one step (decodes + prefill chunks).
    pub token_budget: usize,
    /// The most sequences running at once (0: only KV pages and the token budget limit it).
    pub max_seqs_hint: usize,
    /// Compute prompt prefix pages shared by several requests once.
    pub share_prefixes: bool,
    /// Split prompts into chunks that fill each step's budget (off: whole prompts only).
    pub chunk_prefill: bool,
    /// Keep the logits of every prompt position ([`Engine::prompt_logits`]).
    pub dump_logits: bool,
}

/// Counters over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub steps: usize,
    /// Prefill tokens computed, recomputation after preemption included.
    pub prompt_tokens_computed: usize,
    pub decode_tokens: usize,
    /// Prompt tokens not computed because their prefix pages were shared.
    pub tokens_saved: usize,
    /// Padding tokens computed: always 0 (chunks are packed).
    pub padding_tokens: usize,
    pub peak_pages: usize,
    pub preemptions: usize,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    pub step: usize,
    pub decodes: usize,
    pub prefill_tokens: usize,
    pub chunks: usize,
    pub finished: usize,
    /// Tokens sampled this step (one per decode and per completed prompt).
    pub sampled: usize,
    /// Requests finished so far, of `requests`.
    pub done: usize,
    pub requests: usize,
    pub pages_used: usize,
}

pub struct Engine<R: StepRunner> {
    runner: R,
    scheduler: Scheduler,
    samplers: Vec<Sampler>,
    completions: Vec<Option<Completion>>,
    /// Per request, with dump_logits: `prompt_len · vocab` floats once computed.
    prompt_logits: Vec<Vec<f32>>,
    stats: EngineStats,
}

impl<R: StepRunner> Engine<R> {
    /// Checks every request against the cache (an error names the first that can never
    /// fit) and queues them all.
    pub fn new(
        runner: R,
        config: EngineConfig,
        requests: Vec<Request>,
    ) -> Result<Self, EngineError> {
        let page_size = runner.page_size();
        if page_size == 0 || config.kv_pages == 0 || config.token_budget == 0 {
            return Err(EngineError::Config(format!(
                "page size {page_size}, kv_pages {} and token_budget {} must all be at least 1",
                config.kv_pages, config.token_budget
            )));
        }
        for (seq, r) in requests.iter().enumerate() {
            let (prompt, max_tokens) = (r.prompt.len(), r.params.max_tokens);
            if prompt == 0 {
                return Err(EngineError::EmptyPrompt { seq });
            }
            // The last generated token is never written to the cache.
            let needed = (prompt + max_tokens.max(1) - 1).div_ceil(page_size);
            if needed > config.kv_pages {
                let kv_pages = config.kv_pages;
                return Err(EngineError::RequestTooLarge {
                    seq,
                    prompt,
                    max_tokens,
                    needed,
                    kv_pages,
                    page_size,
                });
            }
        }
        let sched = SchedulerConfig {
            token_budget: config.token_budget,
            max_seqs: config.max_seqs_hint,
            share_prefixes: config.share_prefixes,
            chunk_prefill: config.chunk_prefill,
            dump_logits: config.dump_logits,
        };
        let scheduler = Scheduler::new(sched, &requests, config.kv_pages, page_size);
        let completions = scheduler
            .sequences()
            .iter()
            .map(|s| {
                s.is_finished().then(|| Completion {
                    tokens: Vec::new(),
                    finish: FinishReason::Length,
                })
            })
            .collect();
        Ok(Engine {
            runner,
            scheduler,
            samplers: requests.iter().map(|r| Sampler::new(&r.params)).collect(),
            completions,
            prompt_logits: vec![Vec::new(); requests.len()],
            stats: EngineStats::default(),
        })
    }

    /// Schedules, runs and samples one step.
    pub fn step(&mut self) -> Result<StepReport, EngineError> {
        let plan = self.scheduler.schedule();
        if plan.chunks.is_empty() {
            return Err(EngineError::Stalled {
                unfinished: self.scheduler.unfinished(),
            });
        }
        let logits = self.runner.run(&plan)?;
        check_shapes(&plan, &logits)?;
        self.copy_borrowed_logits(logits.vocab);
        let mut report = StepReport {
            chunks: plan.chunks.len(),
            ..Default::default()
        };
        for (chunk, rows) in plan.chunks.iter().zip(&logits.rows) {
            self.postprocess(chunk, rows, logits.vocab, &mut report);
        }
        Ok(self.end_step(report))
    }

    /// Updates the run's counters and completes the step's report.
    fn end_step(&mut self, mut report: StepReport) -> StepReport {
        let blocks = self.scheduler.blocks();
        report.step = self.stats.steps;
        report.done = self.completions.iter().filter(|c| c.is_some()).count();
        report.requests = self.completions.len();
        report.pages_used = blocks.used_pages();
        self.stats.steps += 1;
        self.stats.peak_pages = blocks.peak_used();
        self.stats.preemptions = self.scheduler.preemptions();
        self.stats.tokens_saved = self.scheduler.tokens_saved();
        report
    }

    fn postprocess(&mut self, chunk: &Chunk, rows: &[f32], vocab: usize, report: &mut StepReport) {
        let s = chunk.seq;
        if self.scheduler.seq(s).is_decoding() {
            report.decodes += 1;
            self.stats.decode_tokens += 1;
        } else {
            report.prefill_tokens += chunk.tokens.len();
            self.stats.prompt_tokens_computed += chunk.tokens.len();
        }
        if chunk.logits == LogitRows::All {
            self.store_prompt_logits(s, chunk.start, rows, vocab);
        }
        if !self.scheduler.complete(chunk) {
            return;
        }
        let seq = self.scheduler.seq(s);
        let token = self.samplers[s].sample(&rows[rows.len() - vocab..], &seq.tokens);
        report.sampled += 1;
        if let Some(finish) = self.scheduler.append(s, token) {
            let tokens = self.scheduler.seq(s).generated().to_vec();
            self.completions[s] = Some(Completion { tokens, finish });
            report.finished += 1;
        }
    }

    /// Keeps the rows of prompt positions `first..` (rows past the prompt are recomputed
    /// generated tokens, not prompt logits).
    fn store_prompt_logits(&mut self, s: SeqId, first: usize, rows: &[f32], vocab: usize) {
        let prompt_len = self.scheduler.seq(s).prompt_len;
        if first >= prompt_len {
            return;
        }
        let dst = &mut self.prompt_logits[s];
        dst.resize(prompt_len * vocab, 0.0);
        let end = (first * vocab + rows.len()).min(dst.len());
        dst[first * vocab..end].copy_from_slice(&rows[..end - first * vocab]);
    }

    /// Prompt logits of shared prefix pages come from the sequence that computed them.
    fn copy_borrowed_logits(&mut self, vocab: usize) {
        let ps = self.runner.page_size();
        for b in self.scheduler.take_borrowed() {
            let range = b.page * ps * vocab..(b.page + 1) * ps * vocab;
            let rows = self.prompt_logits[b.from][range].to_vec();
            self.store_prompt_logits(b.seq, b.page * ps, &rows, vocab);
        }
    }

    pub fn is_finished(&self) -> bool {
        self.completions.iter().all(|c| c.is_some())
    }

    /// Steps until every request is complete; returns the completions in input order.
    pub fn run_to_completion(
        &mut self,
        mut progress: impl FnMut(&StepReport),
    ) -> Result<Vec<Completion>, EngineError> {
        while !self.is_finished() {
            let report = self.step()?;
            progress(&report);
        }
        Ok(self.completions.iter().flatten().cloned().collect())
    }

    /// The logits of every prompt position of request `seq` (`prompt_len · vocab` floats,
    /// row-major), once its prompt is computed with `dump_logits` on; empty otherwise.
    pub fn prompt_logits(&self, seq: SeqId) -> &[f32] {
        &self.prompt_logits[seq]
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    pub fn runner(&self) -> &R {
        &self.runner
    }

    pub fn runner_mut(&mut self) -> &mut R {
        &mut self.runner
    }
}

fn check_shapes(plan: &StepPlan, logits: &StepLogits) -> Result<(), EngineError> {
    for (i, chunk) in plan.chunks.iter().enumerate() {
        let expected = match chunk.logits {
            LogitRows::None => 0,
            LogitRows::Last => logits.vocab,
            LogitRows::All => chunk.tokens.len() * logits.vocab,
        };
        let got = logits.rows.get(i).map_or(0, Vec::len);
        if got != expected || logits.vocab == 0 || logits.rows.len() != plan.chunks.len() {
            return Err(EngineError::LogitsShape {
                chunk: i,
                seq: chunk.seq,
                got,
                expected,
            });
        }
    }
    Ok(())
}
