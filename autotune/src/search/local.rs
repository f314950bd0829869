//! Greedy local search: first-improvement hill climbing over neighbours (one parameter moved to
//! an adjacent value, see [`SearchSpace::neighbours`]), in random order, restarting from a
//! random untried config at a local optimum.
//!
//! The first climb starts from the best of [`INITIAL`] random configs rather than from the
//! first one: a config's neighbours resemble it, so climbing from a single random start
//! samples worse than random sampling where good configs are common and scattered.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use super::{seeded, History, Outcome, RandomOrder, SearchSpace, Strategy};

/// Random configs evaluated before the first climb.
const INITIAL: usize = 5;

pub struct LocalSearch {
    rng: SmallRng,
    starts: Option<RandomOrder>,
    /// The config climbed from, and its time.
    current: Option<(usize, f64)>,
    /// Neighbours of `current` not yet compared with it, in random order.
    queue: Vec<usize>,
    /// The config proposed last; its outcome is in the history at the next call.
    pending: Option<usize>,
    /// Whether the first climb has begun (after the initial sample).
    climbing: bool,
}

impl LocalSearch {
    pub fn new(seed: u64) -> LocalSearch {
        LocalSearch {
            rng: seeded(seed),
            starts: None,
            current: None,
            queue: Vec::new(),
            pending: None,
            climbing: false,
        }
    }

    /// Moves to `id` if it improves on the current config.
    fn absorb(&mut self, space: &SearchSpace, id: usize, outcome: Outcome) {
        let Outcome::Time(t) = outcome else { return };
        if self.current.is_none_or(|(_, c)| t < c) {
            self.current = Some((id, t));
            self.queue = space.neighbours(id);
            self.queue.shuffle(&mut self.rng);
        }
    }
}

impl Strategy for LocalSearch {
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        let rng = &mut self.rng;
        let starts = self
            .starts
            .get_or_insert_with(|| RandomOrder::new(space.len(), rng));
        if history.len() < INITIAL {
            return starts.next_untried(history);
        }
        if !self.climbing {
            self.climbing = true;
            if let Some((best, t)) = history.best() {
                self.current = Some((best, t));
                self.queue = space.neighbours(best);
                self.queue.shuffle(&mut self.rng);
            }
        }
        if let Some(p) = self.pending.take() {
            if let Some(outcome) = history.outcome(p) {
                self.absorb(space, p, outcome);
            }
        }
        while let Some(n) = self.queue.pop() {
            match history.outcome(n) {
                // Known already (from an earlier climb): compare for free.
                Some(outcome) => self.absorb(space, n, outcome),
                None => {
                    self.pending = Some(n);
                    return Some(n);
                }
            }
        }
        // A local optimum (or no start yet, or a failed start): restart.
        let rng = &mut self.rng;
        let start = self
            .starts
            .get_or_insert_with(|| RandomOrder::new(space.len(), rng))
            .next_untried(history)?;
        self.current = None;
        self.pending = Some(start);
        Some(start)
    }
}
