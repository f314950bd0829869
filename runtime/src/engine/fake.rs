//! A runner without a model, for tests and benchmarks: it keeps a paged KV cache of token
//! ids and positions, writes each chunk's tokens through its block table, and reads every
//! sequence's context back through the table to make the logits. The next token is a hash
//! of the context read back, so a wrong `start`, a wrong page, a page overwritten while
//! another sequence still reads it, or a stale page shows up as different tokens (or an
//! error naming the slot), exactly as a real model would produce different text.

use super::plan::{LogitRows, StepLogits, StepPlan, StepRunner};
use super::EngineError;

pub struct FakeRunner {
    page_size: usize,
    vocab: usize,
    /// (token, position) per cache slot; page `p` holds slots `p·page_size..(p+1)·page_size`.
    kv: Vec<Option<(u32, usize)>>,
    /// Step in which each slot was last written (catches two writes in one step).
    written_in: Vec<usize>,
    steps: usize,
    /// Every plan run, when recording.
    pub plans: Vec<StepPlan>,
    pub record: bool,
}

impl FakeRunner {
    pub fn new(num_pages: usize, page_size: usize, vocab: usize) -> Self {
        FakeRunner {
            page_size,
            vocab,
            kv: vec![None; num_pages * page_size],
            written_in: vec![usize::MAX; num_pages * page_size],
            steps: 0,
            plans: Vec::new(),
            record: false,
        }
    }

    /// The token the fake model predicts after `context`.
    pub fn next_token(context: &[u32], vocab: usize) -> u32 {
        let h = context.iter().fold(FNV_OFFSET, |h, &t| fnv(h, t));
        (h % vocab as u64) as u32
    }

    fn slot(&self, pages: &[u32], pos: usize) -> Result<usize, EngineError> {
        let page = pages.get(pos / self.page_size).ok_or_else(|| {
            EngineError::runner(format!(
                "position {pos} is past the block table ({} pages)",
                pages.len()
            ))
        })?;
        Ok(*page as usize * self.page_size + pos % self.page_size)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(h: u64, token: u32) -> u64 {
    token
        .to_le_bytes()
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl StepRunner for FakeRunner {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn run(&mut self, plan: &StepPlan) -> Result<StepLogits, EngineError> {
        self.steps += 1;
        for chunk in &plan.chunks {
            if chunk.pages.len() != (chunk.start + chunk.tokens.len()).div_ceil(self.page_size) {
                return Err(EngineError::runner(format!(
                    "sequence {}: block table of {} pages",
                    chunk.seq,
                    chunk.pages.len()
                )));
            }
            for (i, &token) in chunk.tokens.iter().enumerate() {
                let slot = self.slot(&chunk.pages, chunk.start + i)?;
                if std::mem::replace(&mut self.written_in[slot], self.steps) == self.steps {
                    return Err(EngineError::runner(format!(
                        "slot {slot} written twice in one step"
                    )));
                }
                self.kv[slot] = Some((token, chunk.start + i));
            }
        }
        let mut rows = Vec::with_capacity(plan.chunks.len());
        for chunk in &plan.chunks {
            let end = chunk.start + chunk.tokens.len();
            let first_row = match chunk.logits {
                LogitRows::None => end,
                LogitRows::Last => end - 1,
                LogitRows::All => chunk.start,
            };
            let mut h = FNV_OFFSET;
            let mut out = Vec::with_capacity((end - first_row) * self.vocab);
            for pos in 0..end {
                let slot = self.slot(&chunk.pages, pos)?;
                match self.kv[slot] {
                    Some((token, p)) if p == pos => h = fnv(h, token),
                    other => {
                        return Err(EngineError::runner(format!(
                            "sequence {} position {pos}: slot {slot} holds {other:?}",
                            chunk.seq
                        )))
                    }
                }
                if pos >= first_row {
                    let next = (h % self.vocab as u64) as usize;
                    out.extend((0..self.vocab).map(|v| if v == next { 1.0 } else { 0.0 }));
                }
            }
            rows.push(out);
        }
        if self.record {
            self.plans.push(plan.clone());
        }
        Ok(StepLogits {
            rows,
            vocab: self.vocab,
        })
    }
}
