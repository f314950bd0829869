//! STAND-IN (lead): the plan interface of /work/notes/round3.md, replaced by wt-engine's file.
use std::ops::Range;

pub type SeqId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitRows {
    None,
    Last,
    All,
}

#[derive(Clone, Debug)]
pub struct Chunk {
    pub seq: SeqId,
    pub tokens: Vec<u32>,
    pub start: usize,
    pub pages: Vec<u32>,
    pub logits: LogitRows,
}

#[derive(Clone, Debug)]
pub struct SharedPrefix {
    pub chunks: Range<usize>,
    pub pages: usize,
}

#[derive(Clone, Debug, Default)]
pub struct StepPlan {
    pub chunks: Vec<Chunk>,
    pub shared_prefixes: Vec<SharedPrefix>,
}

impl StepPlan {
    pub fn tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.tokens.len()).sum()
    }
    pub fn decodes(&self) -> usize {
        self.chunks
            .iter()
            .take_while(|c| c.tokens.len() == 1 && c.start > 0)
            .count()
    }
}

pub struct StepLogits {
    pub rows: Vec<Vec<f32>>,
    pub vocab: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("runner: {0}")]
    Runner(String),
}

pub trait StepRunner {
    fn page_size(&self) -> usize;
    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError>;
}
