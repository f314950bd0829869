//! Requests, their results, and the per-sequence state the scheduler keeps.

use super::plan::SeqId;
use super::sampling::SamplingParams;

/// One prompt to complete.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was generated (it is the last of the tokens).
    Stop,
    /// `max_tokens` tokens were generated.
    Length,
}

/// The generated tokens of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not admitted yet, or preempted (holds no pages).
    Waiting,
    /// Admitted: holds the pages of its block table.
    Running,
    Finished(FinishReason),
}

/// A request as the scheduler tracks it: a handful of counters and the block table.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub id: SeqId,
    /// Prompt followed by the generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    pub max_tokens: usize,
    pub stop_token_ids: Vec<u32>,
    /// Tokens whose K/V is in the cache (`tokens[..computed]`).
    pub computed: usize,
    /// Page ids holding `tokens[..computed]` and room for what is scheduled next.
    pub pages: Vec<u32>,
    pub status: Status,
    /// Order of admission among running sequences (the newest is preempted first).
    pub admitted_at: u64,
}

impl Sequence {
    pub fn new(id: SeqId, request: &Request) -> Self {
        Sequence {
            id,
            tokens: request.prompt.clone(),
            prompt_len: request.prompt.len(),
            max_tokens: request.params.max_tokens,
            stop_token_ids: request.params.stop_token_ids.clone(),
            computed: 0,
            pages: Vec::new(),
            status: Status::Waiting,
            admitted_at: 0,
        }
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Tokens still to run before the next token can be sampled.
    pub fn uncomputed(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// A running sequence whose next step is one decode token (its prompt is prefilled and
    /// only the last sampled token is not yet in the cache).
    pub fn is_decoding(&self) -> bool {
        self.status == Status::Running && !self.generated().is_empty() && self.uncomputed() == 1
    }

    /// Appends a sampled token; returns the finish reason when the sequence is done.
    pub fn append(&mut self, token: u32) -> Option<FinishReason> {
        self.tokens.push(token);
        if self.stop_token_ids.contains(&token) {
            Some(FinishReason::Stop)
        } else if self.generated().len() >= self.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, Status::Finished(_))
    }
}
