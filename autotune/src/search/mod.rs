//! Search strategies over a discrete tuning space.
//!
//! A space is a list of parameters, each with an ordered list of values, and the set of
//! *admissible* configs: those that satisfy the kernel's declared constraints. A config is
//! written as a [`Point`], one value index per parameter, and named by its id, its position in
//! [`SearchSpace::points`]. The constraints are known before anything runs, so strategies only
//! ever propose admissible configs; inadmissible ones cost nothing, as a tuner prunes them
//! without a GPU.
//!
//! An *evaluation* is one run of a config on the device (here: one lookup in a replayed cache,
//! see [`crate::replay`]). An evaluation may fail (the config does not compile or does not run);
//! a failed evaluation still counts, as a failed compile costs time on a real GPU.
//!
//! The interface is ask/tell through a shared [`History`]: [`Strategy::next`] proposes the next
//! config given everything evaluated so far; the driver ([`search`]) evaluates it and records the
//! outcome. A strategy never proposes a config already in the history: every evaluation counted
//! is a distinct config, and [`History::record`] rejects a repeat.

mod features;
mod forest;
mod gp;
mod local;
mod prior;
mod random;
mod surrogate;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use warpforge_dsl::space::{Config, TuneSpace};

pub use gp::GpSearch;
pub use local::LocalSearch;
pub use prior::{Prior, PriorSource};
pub use random::RandomSearch;
pub use surrogate::{SurrogateSearch, SurrogateSettings};

/// A config as one value index per parameter, in the space's parameter order.
pub type Point = Box<[u16]>;

/// One tunable parameter: its name and its values, in order (neighbours are adjacent values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchParam {
    pub name: String,
    pub values: Vec<i64>,
}

/// Why a space could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpaceError {
    #[error("parameter `{0}` has no values: give it at least one")]
    NoValues(String),
    #[error("parameter `{0}` has {1} values; at most 65536 are supported")]
    TooManyValues(String, usize),
    #[error("config {point:?} has {got} indices but the space has {want} parameters")]
    Arity {
        point: Vec<u16>,
        got: usize,
        want: usize,
    },
    #[error("config {point:?}: index {index} of `{name}` is outside its {len} values")]
    OutOfRange {
        point: Vec<u16>,
        name: String,
        index: u16,
        len: usize,
    },
    #[error("config {0:?} is listed twice")]
    Duplicate(Vec<u16>),
    #[error("the space has no admissible config: check the values and constraints")]
    Empty,
    #[error("resource `{name}` has {got} values but the space has {want} configs")]
    ResourceLength {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("resource `{name}`: value {value} of config {id} is not a finite number")]
    ResourceValue {
        name: String,
        id: usize,
        value: String,
    },
}

/// A quantity of every config known before anything runs: a compile statistic (registers per
/// thread, shared memory per block, the occupancy they allow). The surrogate's model sees each
/// as a feature; strategies never need one.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    /// Per config id.
    pub values: Vec<f64>,
}

impl Resource {
    /// The named quantities of `rows` (one row per config id, a value per name or None where
    /// unknown, e.g. a config that failed to compile) that at least half the configs know,
    /// the unknown values filled with the median so that they stand out in no direction.
    pub fn from_rows<const N: usize>(names: [&str; N], rows: &[[Option<f64>; N]]) -> Vec<Resource> {
        (0..N)
            .filter_map(|k| {
                let mut known: Vec<f64> = rows
                    .iter()
                    .filter_map(|row| row[k])
                    .filter(|v| v.is_finite())
                    .collect();
                if known.is_empty() || known.len() * 2 < rows.len() {
                    return None;
                }
                known.sort_by(f64::total_cmp);
                let median = known[known.len() / 2];
                let value = |row: &[Option<f64>; N]| row[k].filter(|v| v.is_finite());
                Some(Resource {
                    name: names[k].to_string(),
                    values: rows
                        .iter()
                        .map(|row| value(row).unwrap_or(median))
                        .collect(),
                })
            })
            .collect()
    }
}

/// A discrete tuning space: parameters and the admissible configs.
#[derive(Clone, Debug)]
pub struct SearchSpace {
    params: Vec<SearchParam>,
    points: Vec<Point>,
    ids: HashMap<Point, usize>,
    resources: Vec<Resource>,
}

impl SearchSpace {
    /// A space whose admissible configs are `admissible` (in that order, which fixes the ids).
    pub fn new(
        params: Vec<SearchParam>,
        admissible: impl IntoIterator<Item = Point>,
    ) -> Result<SearchSpace, SpaceError> {
        for p in &params {
            if p.values.is_empty() {
                return Err(SpaceError::NoValues(p.name.clone()));
            }
            if p.values.len() > usize::from(u16::MAX) + 1 {
                return Err(SpaceError::TooManyValues(p.name.clone(), p.values.len()));
            }
        }
        let mut space = SearchSpace {
            params,
            points: Vec::new(),
            ids: HashMap::new(),
            resources: Vec::new(),
        };
        for point in admissible {
            space.check_point(&point)?;
            if space
                .ids
                .insert(point.clone(), space.points.len())
                .is_some()
            {
                return Err(SpaceError::Duplicate(point.to_vec()));
            }
            space.points.push(point);
        }
        if space.points.is_empty() {
            return Err(SpaceError::Empty);
        }
        Ok(space)
    }

    /// The space of a kernel's declared tunables: the configs satisfying its constraints.
    pub fn from_tune_space(tune: &TuneSpace) -> Result<SearchSpace, SpaceError> {
        let params: Vec<SearchParam> = tune
            .params
            .iter()
            .map(|p| SearchParam {
                name: p.name.clone(),
                values: p.values.clone(),
            })
            .collect();
        let points: Vec<Point> = tune
            .configs()
            .into_iter()
            .map(|c| {
                params
                    .iter()
                    .map(|p| {
                        let v = c.get(&p.name).unwrap_or(p.values[0]);
                        p.values.iter().position(|&x| x == v).unwrap_or(0) as u16
                    })
                    .collect::<Point>()
            })
            .collect();
        // Params with no values make `configs()` empty; `new` reports them by name.
        SearchSpace::new(params, points)
    }

    fn check_point(&self, point: &[u16]) -> Result<(), SpaceError> {
        if point.len() != self.params.len() {
            return Err(SpaceError::Arity {
                point: point.to_vec(),
                got: point.len(),
                want: self.params.len(),
            });
        }
        for (p, &i) in self.params.iter().zip(point) {
            if usize::from(i) >= p.values.len() {
                return Err(SpaceError::OutOfRange {
                    point: point.to_vec(),
                    name: p.name.clone(),
                    index: i,
                    len: p.values.len(),
                });
            }
        }
        Ok(())
    }

    pub fn params(&self) -> &[SearchParam] {
        &self.params
    }

    /// The same space with `resources` (one value per config id each) replacing any it had.
    pub fn with_resources(mut self, resources: Vec<Resource>) -> Result<SearchSpace, SpaceError> {
        for r in &resources {
            if r.values.len() != self.points.len() {
                return Err(SpaceError::ResourceLength {
                    name: r.name.clone(),
                    got: r.values.len(),
                    want: self.points.len(),
                });
            }
            if let Some((id, &value)) = r.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SpaceError::ResourceValue {
                    name: r.name.clone(),
                    id,
                    value: value.to_string(),
                });
            }
        }
        self.resources = resources;
        Ok(self)
    }

    /// The same space without resources.
    pub fn without_resources(mut self) -> SearchSpace {
        self.resources.clear();
        self
    }

    /// The configs' known resources (none unless given by [`SearchSpace::with_resources`]).
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The admissible configs; a config's id is its position here.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The number of admissible configs.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Always false: a space has at least one admissible config.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn point(&self, id: usize) -> &[u16] {
        &self.points[id]
    }

    /// The id of an admissible config; None for one outside the space.
    pub fn id_of(&self, point: &[u16]) -> Option<usize> {
        self.ids.get(point).copied()
    }

    /// The config of an id, by parameter name and value.
    pub fn config(&self, id: usize) -> Config {
        let mut c = Config::new();
        for (p, &i) in self.params.iter().zip(self.point(id)) {
            c.set(&p.name, p.values[usize::from(i)]);
        }
        c
    }

    /// The neighbours of a config: each parameter moved to the adjacent value in each
    /// direction. Where that is inadmissible, the nearest repair (one other parameter moved
    /// as little as possible) stands in, else the nearest admissible value further along: a
    /// constraint such as "a stride only with a tile larger than 1" must not wall off a region.
    pub fn neighbours(&self, id: usize) -> Vec<usize> {
        let here = self.point(id);
        let mut out = Vec::new();
        for p in 0..self.params.len() {
            let len = self.params[p].values.len() as i32;
            for dir in [-1i32, 1] {
                let mut v = i32::from(here[p]) + dir;
                while (0..len).contains(&v) {
                    if let Some(n) = self.with_value(here, p, v as u16) {
                        out.push(n);
                        break;
                    }
                    v += dir;
                }
            }
        }
        out
    }

    /// The configs one parameter away: each parameter set to each of its other values (with
    /// the nearest repair where that alone is inadmissible, as in [`SearchSpace::neighbours`]).
    pub fn moves(&self, id: usize) -> Vec<usize> {
        let here = self.point(id);
        let mut out = Vec::new();
        for p in 0..self.params.len() {
            for v in 0..self.params[p].values.len() as u16 {
                if v != here[p] {
                    out.extend(self.with_value(here, p, v));
                }
            }
        }
        out
    }

    /// `point` with parameter `p` set to value index `v`, or if that is inadmissible, the
    /// admissible config that also moves one other parameter the fewest steps.
    fn with_value(&self, point: &[u16], p: usize, v: u16) -> Option<usize> {
        let mut probe = point.to_vec();
        probe[p] = v;
        if let Some(id) = self.id_of(&probe) {
            return Some(id);
        }
        let widest = self
            .params
            .iter()
            .map(|q| q.values.len())
            .max()
            .unwrap_or(0) as i32;
        for step in 1..widest {
            for q in (0..self.params.len()).filter(|&q| q != p) {
                let here = i32::from(point[q]);
                for w in [here - step, here + step] {
                    if (0..self.params[q].values.len() as i32).contains(&w) {
                        probe[q] = w as u16;
                        if let Some(id) = self.id_of(&probe) {
                            return Some(id);
                        }
                    }
                }
                probe[q] = point[q];
            }
        }
        None
    }
}

/// What one evaluation gave: a time (lower is better), or a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Time(f64),
    Failed,
}

impl Outcome {
    pub fn time(self) -> Option<f64> {
        match self {
            Outcome::Time(t) => Some(t),
            Outcome::Failed => None,
        }
    }
}

/// The configs evaluated so far, in order, with their outcomes.
#[derive(Clone, Debug)]
pub struct History {
    trials: Vec<(usize, Outcome)>,
    outcomes: Vec<Option<Outcome>>,
    best: Option<(usize, f64)>,
}

impl History {
    /// An empty history for a space of `len` configs.
    pub fn new(len: usize) -> History {
        History {
            trials: Vec::new(),
            outcomes: vec![None; len],
            best: None,
        }
    }

    /// Records an evaluation.
    ///
    /// # Panics
    /// If `id` was already evaluated: strategies never repeat a config, so a repeat is a bug in
    /// the strategy, and counting it would inflate its evaluations.
    pub fn record(&mut self, id: usize, outcome: Outcome) {
        assert!(
            self.outcomes[id].is_none(),
            "config {id} evaluated twice: a strategy must never repeat a config"
        );
        self.outcomes[id] = Some(outcome);
        self.trials.push((id, outcome));
        if let Outcome::Time(t) = outcome {
            if self.best.is_none_or(|(_, b)| t < b) {
                self.best = Some((id, t));
            }
        }
    }

    /// The evaluations, in order.
    pub fn trials(&self) -> &[(usize, Outcome)] {
        &self.trials
    }

    /// The number of evaluations so far.
    pub fn len(&self) -> usize {
        self.trials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trials.is_empty()
    }

    /// The outcome of `id`, if it was evaluated.
    pub fn outcome(&self, id: usize) -> Option<Outcome> {
        self.outcomes[id]
    }

    pub fn tried(&self, id: usize) -> bool {
        self.outcomes[id].is_some()
    }

    /// The fastest config so far and its time.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }
}

/// A search strategy, driven by [`search`].
pub trait Strategy {
    /// The next config to evaluate: the id of a config of `space` not in `history`; None when
    /// the strategy has nothing left to try (every strategy here returns None only once the
    /// whole space is evaluated).
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize>;

    /// What the strategy takes from outside the space (a [`Prior`]), for the user; None when
    /// it searches from scratch.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// Runs `strategy` until `stop` says so (checked after each evaluation) or it has nothing left.
pub fn search(
    space: &SearchSpace,
    strategy: &mut dyn Strategy,
    mut evaluate: impl FnMut(usize) -> Outcome,
    mut stop: impl FnMut(&History) -> bool,
) -> History {
    let mut history = History::new(space.len());
    while let Some(id) = strategy.next(space, &history) {
        history.record(id, evaluate(id));
        if stop(&history) {
            break;
        }
    }
    history
}

/// The strategies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// Uniform random sampling without replacement.
    Random,
    /// Hill climbing over neighbours, with random restarts.
    LocalSearch,
    /// Expected improvement under a random-forest model over a pool of random configs and
    /// the fastest configs' neighbours, with a floor of random proposals.
    Surrogate,
    /// Bayesian optimisation: a Gaussian process over parameters and their pairs, lower
    /// confidence bound over a pool of random configs.
    Gp,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::Random,
        StrategyKind::LocalSearch,
        StrategyKind::Surrogate,
        StrategyKind::Gp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Random => "random",
            StrategyKind::LocalSearch => "local",
            StrategyKind::Surrogate => "surrogate",
            StrategyKind::Gp => "gp",
        }
    }

    /// A fresh strategy; the same seed gives the same sequence of proposals.
    pub fn build(self, seed: u64) -> Box<dyn Strategy + Send> {
        self.build_with_prior(seed, None)
    }

    /// A fresh strategy that uses `prior` (results on other devices) if it can: the surrogate
    /// and the GP do; random and local search ignore it.
    pub fn build_with_prior(
        self,
        seed: u64,
        prior: Option<Arc<Prior>>,
    ) -> Box<dyn Strategy + Send> {
        match self {
            StrategyKind::Random => Box::new(RandomSearch::new(seed)),
            StrategyKind::LocalSearch => Box::new(LocalSearch::new(seed)),
            StrategyKind::Surrogate => Box::new(SurrogateSearch::with_prior(seed, prior)),
            StrategyKind::Gp => Box::new(GpSearch::with_prior(seed, prior)),
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown strategy name.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown search strategy `{0}`: use random, local, surrogate or gp")]
pub struct UnknownStrategy(pub String);

impl FromStr for StrategyKind {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<StrategyKind, UnknownStrategy> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

/// The space's ids in a seeded random order, handed out skipping those already tried.
#[derive(Clone, Debug)]
struct RandomOrder {
    order: Vec<usize>,
    cursor: usize,
}

impl RandomOrder {
    fn new(len: usize, rng: &mut SmallRng) -> RandomOrder {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(rng);
        RandomOrder { order, cursor: 0 }
    }

    /// The next untried id, or None when every id is tried.
    fn next_untried(&mut self, history: &History) -> Option<usize> {
        while let Some(&id) = self.order.get(self.cursor) {
            self.cursor += 1;
            if !history.tried(id) {
                return Some(id);
            }
        }
        None
    }
}

/// A random untried id, None when all are tried: uniform by rejection sampling while most are
/// untried, else the first untried after a random offset.
fn random_untried(history: &History, rng: &mut SmallRng) -> Option<usize> {
    let len = history.outcomes.len();
    for _ in 0..64 {
        let id = rng.random_range(0..len);
        if !history.tried(id) {
            return Some(id);
        }
    }
    let start = rng.random_range(0..len);
    (start..len).chain(0..start).find(|&id| !history.tried(id))
}

fn seeded(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}
