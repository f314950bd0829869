//! What the scheduler hands the runner for one step, and what the runner hands back.
//!
//! The contract between host bookkeeping (scheduler, block manager) and the model runner:
//! a [`StepPlan`] lists the chunks of tokens to compute, each with its sequence's block table;
//! the runner writes their K/V into those pages, runs attention over `0..start + tokens.len()`
//! of each sequence, and returns the logits rows the chunks ask for ([`StepLogits`]).

use std::ops::Range;

/// Index of a request in input order.
pub type SeqId = usize;

/// Which rows of a chunk need logits back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitRows {
    /// No logits (a prompt piece that does not end the prompt).
    None,
    /// The last row only (a decode, or the chunk that ends the tokens to prefill).
    Last,
    /// Every row (prompt chunks when the prompt logits are dumped).
    All,
}

/// A run of consecutive tokens of one sequence computed in this step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub seq: SeqId,
    /// Token ids to run (1 for a decode).
    pub tokens: Vec<u32>,
    /// Position of `tokens[0]` = tokens of this sequence already in the KV cache.
    pub start: usize,
    /// The sequence's block table: exactly the page ids covering `start + tokens.len()` tokens.
    pub pages: Vec<u32>,
    pub logits: LogitRows,
}

/// Decode chunks `chunks` (a contiguous range of [`StepPlan::chunks`], all single-token
/// decodes) whose block tables begin with the same `pages` page ids: shared-prefix (Hydragen)
/// attention computes the prefix part once for the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPrefix {
    pub chunks: Range<usize>,
    pub pages: usize,
}

/// One step of work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Decode chunks first (one token each, ordered so `SharedPrefix` groups are contiguous),
    /// then prefill chunks (prompt pieces under the token budget).
    pub chunks: Vec<Chunk>,
    pub shared_prefixes: Vec<SharedPrefix>,
}

impl StepPlan {
    /// Tokens computed in this step (the packed batch size: no padding).
    pub fn tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.tokens.len()).sum()
    }

    /// The leading single-token chunks. These are the decodes, plus a one-token prompt tail
    /// directly after them when there is one: that is the same computation (one query over
    /// the cached K/V and itself), so the runner may treat both alike.
    pub fn decodes(&self) -> usize {
        self.chunks
            .iter()
            .take_while(|c| c.tokens.len() == 1)
            .count()
    }
}

/// The logits a runner returns for one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLogits {
    /// Per chunk: `LogitRows::None` → empty, `Last` → `vocab` floats, `All` →
    /// `tokens.len() · vocab` floats (row-major, one row per token).
    pub rows: Vec<Vec<f32>>,
    pub vocab: usize,
}

/// Executes step plans: owns the model and the KV cache pages the plans index.
pub trait StepRunner {
    /// Tokens per KV page.
    fn page_size(&self) -> usize;
    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError>;
}

/// Why the engine could not run a batch.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("request {seq} has an empty prompt; give it at least one token")]
    EmptyPrompt { seq: SeqId },
    #[error(
        "request {seq} needs {needed} KV pages (a {prompt}-token prompt plus up to {max_tokens} \
         generated tokens, {page_size} tokens a page) but the whole cache has {kv_pages}; \
         give the cache more pages or lower the request's max_tokens"
    )]
    RequestTooLarge {
        seq: SeqId,
        prompt: usize,
        max_tokens: usize,
        needed: usize,
        kv_pages: usize,
        page_size: usize,
    },
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error(
        "the runner returned logits of the wrong shape for chunk {chunk} (sequence {seq}): \
         {got} floats, expected {expected}"
    )]
    LogitsShape {
        chunk: usize,
        seq: SeqId,
        got: usize,
        expected: usize,
    },
    #[error("the scheduler found no work while {unfinished} requests are unfinished (a bug)")]
    Stalled { unfinished: usize },
    #[error("the runner failed: {0}")]
    Runner(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl EngineError {
    /// Wraps a runner's own error (or a message) as [`EngineError::Runner`].
    pub fn runner(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        EngineError::Runner(err.into())
    }
}
