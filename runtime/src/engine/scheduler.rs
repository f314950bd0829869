//! The scheduler: decides which sequences run how many tokens each step, under a token
//! budget (Sarathi-Serve's stall-free batching), with the batch bounded by KV pages rather
//! than a request count (BatchLLM).
//!
//! Each step, in order:
//! 1. every running decode, one token each, oldest first; a decode that needs a page when
//!    none is free preempts the newest running sequence (recompute: it frees its pages and
//!    waits again, keeping its generated tokens) until it fits;
//! 2. running prompts not yet fully computed, one chunk each (the whole rest when
//!    `chunk_prefill` is off);
//! 3. waiting requests in the prefix tree's order (sharers together, decode-heavy first),
//!    while their pages fit: each starts after the leading pages of its shared prefix whose
//!    K/V is cached (computed by another request, still in use or freed but not yet reused),
//!    sharing them; a request whose prefix a running prompt is computing waits for it.
//!
//! A request admitted whole-prompt reserves the pages of all its tokens at once, so only
//! decodes ever need new pages.

use std::collections::VecDeque;

use super::blocks::BlockManager;
use super::plan::{Chunk, LogitRows, SeqId, SharedPrefix, StepPlan};
use super::prefix::{PrefixCache, PrefixTree};
use super::request::{FinishReason, Request, Sequence, Status};

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// The most tokens computed in one step.
    pub token_budget: usize,
    /// The most running sequences (0: no cap besides KV pages and the token budget).
    pub max_seqs: usize,
    pub share_prefixes: bool,
    pub chunk_prefill: bool,
    /// Ask for the logits of every prompt position.
    pub dump_logits: bool,
}

/// A prefix page a sequence reuses instead of computing: page index `page` of `seq` holds
/// what `from` computed (for copying prompt logits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Borrowed {
    pub seq: SeqId,
    pub page: usize,
    pub from: SeqId,
}

pub struct Scheduler {
    config: SchedulerConfig,
    seqs: Vec<Sequence>,
    blocks: BlockManager,
    tree: PrefixTree,
    cache: PrefixCache,
    waiting: VecDeque<SeqId>,
    /// Admitted sequences, oldest first.
    running: Vec<SeqId>,
    admissions: u64,
    preemptions: usize,
    tokens_saved: usize,
    borrowed: Vec<Borrowed>,
}

impl Scheduler {
    /// Requests with `max_tokens == 0` finish at once; the caller has checked that every
    /// other one fits the cache alone.
    pub fn new(
        config: SchedulerConfig,
        requests: &[Request],
        kv_pages: usize,
        page_size: usize,
    ) -> Self {
        let tree = PrefixTree::new(requests, page_size);
        let mut seqs: Vec<Sequence> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| Sequence::new(i, r))
            .collect();
        for seq in seqs.iter_mut().filter(|s| s.max_tokens == 0) {
            seq.status = Status::Finished(FinishReason::Length);
        }
        let waiting = tree
            .order()
            .iter()
            .copied()
            .filter(|&s| !seqs[s].is_finished())
            .collect();
        Scheduler {
            config,
            seqs,
            blocks: BlockManager::new(kv_pages, page_size),
            tree,
            cache: PrefixCache::default(),
            waiting,
            running: Vec::new(),
            admissions: 0,
            preemptions: 0,
            tokens_saved: 0,
            borrowed: Vec::new(),
        }
    }

    pub fn schedule(&mut self) -> StepPlan {
        let mut budget = self.config.token_budget;
        let mut chunks = self.schedule_decodes(&mut budget);
        let shared_prefixes = group_shared_prefixes(&mut chunks);
        self.schedule_prefills(&mut chunks, &mut budget);
        self.admit(&mut chunks, &mut budget);
        StepPlan {
            chunks,
            shared_prefixes,
        }
    }

    fn schedule_decodes(&mut self, budget: &mut usize) -> Vec<Chunk> {
        let decoding: Vec<SeqId> = self
            .running
            .iter()
            .copied()
            .filter(|&s| self.seqs[s].is_decoding())
            .collect();
        let mut chunks = Vec::with_capacity(decoding.len());
        for s in decoding {
            if *budget == 0 {
                break;
            }
            if self.seqs[s].status == Status::Running && self.reserve_decode_page(s) {
                chunks.push(self.chunk(s, 1));
                *budget -= 1;
            }
        }
        chunks
    }

    /// Makes room for `s`'s next token, preempting the newest running sequences (possibly
    /// `s` itself, then returning false).
    fn reserve_decode_page(&mut self, s: SeqId) -> bool {
        loop {
            let seq = &mut self.seqs[s];
            let had = seq.pages.len();
            if self.blocks.grow(&mut seq.pages, seq.computed + 1) {
                self.cache.forget(&seq.pages[had..]);
                return true;
            }
            let victim = *self.running.last().expect("s is running");
            self.preempt(victim);
            if victim == s {
                return false;
            }
        }
    }

    fn preempt(&mut self, s: SeqId) {
        let seq = &mut self.seqs[s];
        self.blocks.release(&mut seq.pages);
        seq.computed = 0;
        seq.status = Status::Waiting;
        self.running.retain(|&r| r != s);
        self.waiting.push_front(s);
        self.preemptions += 1;
    }

    fn schedule_prefills(&mut self, chunks: &mut Vec<Chunk>, budget: &mut usize) {
        for i in 0..self.running.len() {
            let seq = &self.seqs[self.running[i]];
            if *budget == 0 {
                break;
            }
            if seq.is_decoding() || seq.uncomputed() == 0 {
                continue;
            }
            let n = seq.uncomputed().min(*budget);
            chunks.push(self.chunk(seq.id, n));
            *budget -= n;
        }
    }

    fn admit(&mut self, chunks: &mut Vec<Chunk>, budget: &mut usize) {
        let ps = self.blocks.page_size();
        let cap = match self.config.max_seqs {
            0 => self.config.token_budget,
            m => m.min(self.config.token_budget),
        };
        while let Some(&s) = self.waiting.front() {
            if *budget == 0 || self.running.len() >= cap {
                return;
            }
            let path = if self.config.share_prefixes {
                self.tree.path(s)
            } else {
                &[]
            };
            let cached = self.cache.lookup(path);
            if self.prefix_pending(s, cached.len()) {
                return; // its group's prefix is being computed: start after it, sharing it
            }
            let total = self.seqs[s].tokens.len();
            let shared = cached.len() * ps;
            let revived = cached
                .iter()
                .filter(|&&(page, _)| self.blocks.refs(page) == 0)
                .count();
            if !self
                .blocks
                .can_allocate(self.blocks.pages_for(total) - cached.len() + revived)
            {
                return;
            }
            let rest = total - shared;
            let n = if self.config.chunk_prefill {
                rest.min(*budget)
            } else if rest <= *budget || chunks.is_empty() {
                rest // whole; alone when longer than the budget
            } else {
                return;
            };
            self.waiting.pop_front();
            let pages: Vec<u32> = cached.iter().map(|&(page, _)| page).collect();
            let seq = &mut self.seqs[s];
            seq.pages = self.blocks.share(&pages);
            assert!(
                self.blocks.grow(&mut seq.pages, total),
                "checked by can_allocate"
            );
            self.cache.forget(&seq.pages[pages.len()..]);
            seq.computed = shared;
            seq.status = Status::Running;
            seq.admitted_at = self.admissions;
            self.admissions += 1;
            self.running.push(s);
            self.tokens_saved += shared;
            if self.config.dump_logits {
                let borrowed = cached
                    .iter()
                    .enumerate()
                    .map(|(page, &(_, from))| Borrowed { seq: s, page, from });
                self.borrowed.extend(borrowed);
            }
            chunks.push(self.chunk(s, n));
            *budget = budget.saturating_sub(n);
        }
    }

    /// Whether a running prompt is computing pages of `s`'s shared path beyond the `have`
    /// already cached.
    fn prefix_pending(&self, s: SeqId, have: usize) -> bool {
        let path = if self.config.share_prefixes {
            self.tree.path(s)
        } else {
            &[]
        };
        if path.len() <= have {
            return false;
        }
        let ps = self.blocks.page_size();
        self.running.iter().any(|&r| {
            let common = path
                .iter()
                .zip(self.tree.path(r))
                .take_while(|(a, b)| a == b)
                .count();
            common > have && self.seqs[r].computed < common * ps
        })
    }

    /// The next `n` tokens of `s` as a chunk, with the logits rows they need.
    fn chunk(&self, s: SeqId, n: usize) -> Chunk {
        let seq = &self.seqs[s];
        let (start, end) = (seq.computed, seq.computed + n);
        let logits = if self.config.dump_logits && start < seq.prompt_len {
            LogitRows::All
        } else if end == seq.tokens.len() {
            LogitRows::Last
        } else {
            LogitRows::None
        };
        Chunk {
            seq: s,
            tokens: seq.tokens[start..end].to_vec(),
            start,
            pages: seq.pages[..self.blocks.pages_for(end)].to_vec(),
            logits,
        }
    }

    /// Records that `chunk` was computed; returns true when its sequence is now due a new
    /// token (the chunk reached the end of its tokens).
    pub fn complete(&mut self, chunk: &Chunk) -> bool {
        let ps = self.blocks.page_size();
        let seq = &mut self.seqs[chunk.seq];
        let before = seq.computed;
        seq.computed += chunk.tokens.len();
        if self.config.share_prefixes {
            let path = self.tree.path(chunk.seq);
            let full = seq.computed / ps;
            for (d, &node) in path.iter().enumerate().take(full).skip(before / ps) {
                self.cache.register(node, seq.pages[d], chunk.seq);
            }
        }
        seq.computed == seq.tokens.len()
    }

    /// Appends a sampled token to `s`; when that finishes it, frees its pages and returns why.
    pub fn append(&mut self, s: SeqId, token: u32) -> Option<FinishReason> {
        let seq = &mut self.seqs[s];
        let reason = seq.append(token)?;
        seq.status = Status::Finished(reason);
        self.blocks.release(&mut seq.pages);
        self.running.retain(|&r| r != s);
        Some(reason)
    }

    /// Prefix pages reused since the last call (only recorded when dumping logits).
    pub fn take_borrowed(&mut self) -> Vec<Borrowed> {
        std::mem::take(&mut self.borrowed)
    }

    pub fn seq(&self, s: SeqId) -> &Sequence {
        &self.seqs[s]
    }

    pub fn sequences(&self) -> &[Sequence] {
        &self.seqs
    }

    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn tree(&self) -> &PrefixTree {
        &self.tree
    }

    pub fn unfinished(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    pub fn preemptions(&self) -> usize {
        self.preemptions
    }

    /// Prompt tokens not computed because their pages were shared.
    pub fn tokens_saved(&self) -> usize {
        self.tokens_saved
    }

    /// Checks the block manager against the live block tables (tests call it every step).
    pub fn check_invariants(&self) -> Result<(), String> {
        let tables = self.seqs.iter().map(|s| s.pages.as_slice());
        self.blocks.check_invariants(tables)?;
        for s in &self.seqs {
            let running = s.status == Status::Running;
            if running != self.running.contains(&s.id) || running == s.pages.is_empty() {
                return Err(format!(
                    "sequence {} is {:?} with {} pages",
                    s.id,
                    s.status,
                    s.pages.len()
                ));
            }
        }
        Ok(())
    }
}

/// Orders decode chunks by block table, so sequences sharing leading pages are contiguous,
/// and returns the groups of two or more that share at least their first page.
fn group_shared_prefixes(decodes: &mut [Chunk]) -> Vec<SharedPrefix> {
    decodes.sort_by(|a, b| a.pages.cmp(&b.pages));
    let mut groups = Vec::new();
    let mut i = 0;
    while i < decodes.len() {
        let mut j = i + 1;
        let mut pages = usize::MAX;
        while j < decodes.len() && decodes[j].pages[0] == decodes[i].pages[0] {
            pages = pages.min(common_prefix(&decodes[j - 1].pages, &decodes[j].pages));
            j += 1;
        }
        if j - i >= 2 {
            groups.push(SharedPrefix {
                chunks: i..j,
                pages,
            });
        }
        i = j;
    }
    groups
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SamplingParams;

    fn config(token_budget: usize) -> SchedulerConfig {
        SchedulerConfig {
            token_budget,
            max_seqs: 0,
            share_prefixes: true,
            chunk_prefill: true,
            dump_logits: false,
        }
    }

    fn requests(prompts: &[Vec<u32>], max_tokens: usize) -> Vec<Request> {
        let params = SamplingParams {
            max_tokens,
            ..Default::default()
        };
        prompts
            .iter()
            .map(|p| Request {
                prompt: p.clone(),
                params: params.clone(),
            })
            .collect()
    }

    /// Runs a plan as if every sampled token were `token`.
    fn finish_step(sched: &mut Scheduler, plan: &StepPlan, token: u32) {
        for chunk in &plan.chunks {
            if sched.complete(chunk) {
                sched.append(chunk.seq, token);
            }
        }
        sched.check_invariants().unwrap();
    }

    #[test]
    fn a_decode_out_of_pages_preempts_the_newest_keeping_its_tokens() {
        let reqs = requests(&[vec![1; 4], vec![2; 4]], 8);
        let mut sched = Scheduler::new(config(16), &reqs, 3, 4);
        let plan = sched.schedule();
        assert_eq!(
            plan.chunks
                .iter()
                .map(|c| (c.seq, c.tokens.len()))
                .collect::<Vec<_>>(),
            [(0, 4), (1, 4)]
        );
        finish_step(&mut sched, &plan, 9);
        // Both need a second page; one is free: request 1 (the newest) yields to request 0.
        let plan = sched.schedule();
        assert_eq!(plan.chunks.len(), 1);
        assert_eq!(
            (
                plan.chunks[0].seq,
                plan.chunks[0].start,
                plan.chunks[0].pages.len()
            ),
            (0, 4, 2)
        );
        assert_eq!(sched.preemptions(), 1);
        let preempted = sched.seq(1);
        assert_eq!((preempted.status, preempted.computed), (Status::Waiting, 0));
        assert_eq!(preempted.generated(), [9], "generated tokens are kept");
        finish_step(&mut sched, &plan, 9);
    }

    #[test]
    fn sharers_wait_for_the_prefix_then_start_after_it() {
        let prefix: Vec<u32> = (0..8).collect();
        let prompts: Vec<Vec<u32>> = (0..3)
            .map(|i| [prefix.clone(), vec![100 + i]].concat())
            .collect();
        let mut sched = Scheduler::new(config(64), &requests(&prompts, 4), 16, 4);
        let plan = sched.schedule();
        assert_eq!(
            plan.chunks.len(),
            1,
            "the others wait while the prefix is computed"
        );
        let provider = plan.chunks[0].clone();
        finish_step(&mut sched, &plan, 7);
        let plan = sched.schedule();
        let starts: Vec<(usize, usize)> = plan
            .chunks
            .iter()
            .map(|c| (c.start, c.tokens.len()))
            .collect();
        assert_eq!(
            starts,
            [(9, 1), (8, 1), (8, 1)],
            "one decode, then two prompts after the prefix"
        );
        for chunk in &plan.chunks[1..] {
            assert_eq!(chunk.pages[..2], provider.pages[..2]);
        }
        assert_eq!(sched.tokens_saved(), 16);
        assert_eq!(sched.blocks().refs(provider.pages[0]), 3);
    }

    #[test]
    fn decodes_sharing_pages_form_contiguous_groups() {
        let chunk = |pages: &[u32]| Chunk {
            seq: 0,
            tokens: vec![0],
            start: 0,
            pages: pages.to_vec(),
            logits: LogitRows::Last,
        };
        let mut decodes = vec![
            chunk(&[1, 2, 5]),
            chunk(&[3, 4]),
            chunk(&[1, 2, 6]),
            chunk(&[1, 7]),
            chunk(&[3, 8]),
        ];
        let groups = group_shared_prefixes(&mut decodes);
        let order: Vec<&[u32]> = decodes.iter().map(|c| c.pages.as_slice()).collect();
        assert_eq!(
            order,
            [&[1, 2, 5][..], &[1, 2, 6], &[1, 7], &[3, 4], &[3, 8]]
        );
        assert_eq!(
            groups,
            [
                SharedPrefix {
                    chunks: 0..3,
                    pages: 1
                },
                SharedPrefix {
                    chunks: 3..5,
                    pages: 1
                }
            ]
        );
    }
}
