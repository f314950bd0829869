//! Surrogate-guided local search: hill climbing whose every choice is ranked by a random-forest
//! model of log time, fitted to all evaluations so far.
//!
//! - *Climbing* is first-improvement over [`SearchSpace::neighbours`], as in
//!   [`super::LocalSearch`], but the next neighbour tried is the one with the lowest lower
//!   confidence bound (mean − [`CLIMB_KAPPA`]·spread of the trees) instead of a random one, so
//!   a climb takes the promising step first and rarely walks every neighbour.
//! - *Restarting* (at a local optimum, or after a failed start) goes to the untried config of the
//!   whole space with the lowest bound (mean − [`RESTART_KAPPA`]·spread) instead of a random
//!   one: a region the model believes fast, or knows too little about.
//!
//! Until [`INITIAL`] evaluations exist the model is not trusted: neighbours go in random order
//! and restarts are uniformly random, which doubles as the initial sample. Failed configs enter
//! the model as slower than the slowest seen, so it learns to avoid the regions where they fail.
//! Features are each parameter's value rank and power-of-two alignment (see [`Column::of`]).

use rand::rngs::SmallRng;
use rand::seq::{index, SliceRandom};
use rand::Rng;

use super::forest::{Forest, Samples};
use super::{random_untried, seeded, History, Outcome, SearchSpace, Strategy};

/// Evaluations before the model steers.
const INITIAL: usize = 10;
/// Trees in the forest.
const TREES: usize = 20;
/// Weight of the model's uncertainty when ordering a climb's neighbours.
const CLIMB_KAPPA: f64 = 2.0;
/// Weight of the model's uncertainty when choosing where to restart.
const RESTART_KAPPA: f64 = 1.0;
/// At most this many evaluations train the model (the fastest half of them, and a random
/// sample of the rest), which bounds a step's cost on long searches.
const MAX_TRAIN: usize = 512;

pub struct SurrogateSearch {
    rng: SmallRng,
    /// Per config, its features (see [`Column`]), `dims` of them, flattened.
    features: Vec<f32>,
    dims: usize,
    prepared: bool,
    /// The config climbed from, and its time.
    current: Option<(usize, f64)>,
    /// Neighbours of `current` not yet compared with it.
    queue: Vec<usize>,
    /// The config proposed last; its outcome is in the history at the next call.
    pending: Option<usize>,
}

impl SurrogateSearch {
    pub fn new(seed: u64) -> SurrogateSearch {
        SurrogateSearch {
            rng: seeded(seed),
            features: Vec::new(),
            dims: 0,
            prepared: false,
            current: None,
            queue: Vec::new(),
            pending: None,
        }
    }

    fn prepare(&mut self, space: &SearchSpace) {
        if self.prepared {
            return;
        }
        self.prepared = true;
        let columns: Vec<Column> = space
            .params()
            .iter()
            .enumerate()
            .flat_map(|(i, p)| Column::of(i, &p.values))
            .collect();
        self.dims = columns.len();
        self.features = space
            .points()
            .iter()
            .flat_map(|pt| columns.iter().map(|c| c.table[usize::from(pt[c.param])]))
            .collect();
    }

    fn row(&self, id: usize) -> &[f32] {
        &self.features[id * self.dims..(id + 1) * self.dims]
    }

    /// Moves the climb to `id` if it improves on the current config.
    fn absorb(&mut self, space: &SearchSpace, id: usize, outcome: Outcome) {
        let Outcome::Time(t) = outcome else { return };
        if self.current.is_none_or(|(_, c)| t < c) {
            self.current = Some((id, t));
            self.queue = space.neighbours(id);
            self.queue.shuffle(&mut self.rng);
        }
    }

    /// Compares the queued neighbours that are already evaluated, moving to any improvement,
    /// until only untried neighbours are left.
    fn settle(&mut self, space: &SearchSpace, history: &History) {
        loop {
            let before = self.current;
            let known: Vec<usize> = self
                .queue
                .iter()
                .copied()
                .filter(|&n| history.tried(n))
                .collect();
            self.queue.retain(|&n| !history.tried(n));
            for n in known {
                if let Some(outcome) = history.outcome(n) {
                    self.absorb(space, n, outcome);
                }
            }
            if self.current == before {
                return;
            }
        }
    }

    /// The model fitted to log time, once there are enough evaluations to trust it.
    fn model(&mut self, history: &History) -> Option<Forest> {
        if self.dims == 0 || history.len() < INITIAL {
            return None;
        }
        let logs = history
            .trials()
            .iter()
            .filter_map(|t| t.1.time())
            .map(f64::ln);
        let (best, worst) = logs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
        if !best.is_finite() {
            return None;
        }
        let failed = worst + 0.5 * (worst - best).max(0.1);
        let mut train: Vec<(usize, f64)> = history
            .trials()
            .iter()
            .map(|&(id, o)| (id, o.time().map_or(failed, f64::ln)))
            .collect();
        if train.len() > MAX_TRAIN {
            train.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
            let rest = train.split_off(MAX_TRAIN / 2);
            let picks = index::sample(&mut self.rng, rest.len(), MAX_TRAIN - train.len());
            train.extend(picks.into_iter().map(|i| rest[i]));
        }
        let x: Vec<f32> = train
            .iter()
            .flat_map(|&(id, _)| self.row(id).iter().copied())
            .collect();
        let y: Vec<f64> = train.iter().map(|t| t.1).collect();
        let data = Samples {
            x: &x,
            dims: self.dims,
            y: &y,
        };
        Some(Forest::fit(&data, TREES, &mut self.rng))
    }

    /// Of `candidates`, the one with the lowest bound `mean − kappa·spread`; ties go to the
    /// earliest, so callers pass candidates in random order.
    fn lowest_bound(
        &self,
        forest: &Forest,
        kappa: f64,
        candidates: impl Iterator<Item = usize>,
    ) -> Option<usize> {
        candidates
            .map(|id| {
                let (mean, spread) = forest.predict(self.row(id));
                (id, mean - kappa * spread)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id)
    }

    /// The next neighbour of the climb to evaluate, removed from the queue.
    fn climb(&mut self, forest: Option<&Forest>) -> Option<usize> {
        let at = match forest {
            Some(f) => {
                let ids = self.queue.iter().copied();
                let best = self.lowest_bound(f, CLIMB_KAPPA, ids)?;
                self.queue.iter().position(|&n| n == best)?
            }
            None => self.queue.len().checked_sub(1)?,
        };
        Some(self.queue.swap_remove(at))
    }

    /// Where to start the next climb.
    fn restart(
        &mut self,
        space: &SearchSpace,
        history: &History,
        forest: Option<&Forest>,
    ) -> Option<usize> {
        let Some(f) = forest else {
            return random_untried(history, &mut self.rng);
        };
        // Scan from a random offset, so ties do not always go to the lowest id.
        let start = self.rng.random_range(0..space.len());
        let ids = (start..space.len()).chain(0..start);
        self.lowest_bound(f, RESTART_KAPPA, ids.filter(|&id| !history.tried(id)))
    }
}

impl Strategy for SurrogateSearch {
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        self.prepare(space);
        if history.len() >= space.len() {
            return None;
        }
        if let Some(p) = self.pending.take() {
            if let Some(outcome) = history.outcome(p) {
                self.absorb(space, p, outcome);
            }
        }
        self.settle(space, history);
        let forest = self.model(history);
        let next = match self.climb(forest.as_ref()) {
            Some(n) => Some(n),
            None => {
                // A local optimum, or no climb yet: restart.
                self.current = None;
                self.restart(space, history, forest.as_ref())
            }
        };
        self.pending = next;
        next
    }
}

/// One model feature: a function of one parameter's value index, as a table.
struct Column {
    param: usize,
    table: Vec<f32>,
}

impl Column {
    /// The features of a parameter: its value's rank, scaled to [0, 1], and its power-of-two
    /// alignment (trailing zero bits), because GPU kernels often care whether a size is a
    /// multiple of a warp or a bank count more than how large it is: 64 and 128 threads in y
    /// may be fast while 72 and 120 between them are slow. A parameter with one value gives none.
    fn of(param: usize, values: &[i64]) -> Vec<Column> {
        let len = values.len();
        if len < 2 {
            return Vec::new();
        }
        let rank = (0..len).map(|i| i as f32 / (len - 1) as f32).collect();
        let mut out = vec![Column { param, table: rank }];
        if values.iter().all(|&v| v > 0) {
            let zeros: Vec<u32> = values.iter().map(|v| v.trailing_zeros().min(16)).collect();
            let most = zeros.iter().copied().max().unwrap_or(0);
            if zeros.iter().any(|&z| z != most) {
                let table = zeros.iter().map(|&z| z as f32 / most as f32).collect();
                out.push(Column { param, table });
            }
        }
        out
    }
}
