//! Search strategies: which candidates to time, in which order.
//!
//! A space of at most [`EXHAUSTIVE_LIMIT`] candidates (after pruning) is always timed
//! whole. Larger spaces go through a [`SearchStrategy`]: the tuner asks it for batches of
//! candidates until it returns none or the budget is spent. Strategies see the results of
//! earlier runs (from the cache too), so a resumed search continues where it stopped.

use std::sync::Arc;

use crate::search::{
    History, Outcome, Point, Prior, Resource, SearchParam, SearchSpace, Strategy, StrategyKind,
};
use crate::TuneError;
use warpforge_dsl::Config;

/// Spaces up to this size are searched exhaustively, whatever the strategy.
pub const EXHAUSTIVE_LIMIT: usize = 64;

/// What is known of one candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trial {
    /// Not timed yet.
    Pending,
    /// Median seconds.
    Measured(f64),
    /// Failed (crashed, erred, timed out or gave a wrong output); never retried.
    Failed,
}

/// Chooses candidates to time.
pub trait SearchStrategy {
    fn name(&self) -> &str;

    /// The next candidates to time, as indices into `space` (`trials[i]` is what is
    /// known of `space[i]`). Only pending indices are run; an answer with none ends the
    /// search.
    fn propose(&mut self, space: &[Config], trials: &[Trial]) -> Vec<usize>;

    /// Offers the problem's results on other devices (per candidate, in `space` order), before
    /// the first proposal; returns what the strategy takes from them, for the user, or None
    /// when it ignores them (the default).
    fn use_prior(&mut self, _prior: Arc<Prior>) -> Option<String> {
        None
    }

    /// Offers what compiling each candidate told (each [`Resource`] one value per candidate,
    /// in `space` order), before the first proposal; returns what the strategy takes from it,
    /// for the user, or None when it ignores it (the default).
    fn use_compile_stats(&mut self, _stats: Vec<Resource>) -> Option<String> {
        None
    }
}

/// Every pending candidate, in space order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exhaustive;

impl SearchStrategy for Exhaustive {
    fn name(&self) -> &str {
        "exhaustive"
    }

    fn propose(&mut self, _space: &[Config], trials: &[Trial]) -> Vec<usize> {
        (0..trials.len())
            .filter(|&i| trials[i] == Trial::Pending)
            .collect()
    }
}

/// One of the [`crate::search`] strategies (random, local, surrogate) driving the tuner: it
/// proposes one candidate at a time, seeing every result so far.
pub struct Guided {
    kind: StrategyKind,
    seed: u64,
    inner: Box<dyn Strategy + Send>,
    /// Built from the candidates on the first proposal (the tuner's space does not change).
    space: Option<SearchSpace>,
    /// The candidates' compile statistics, given to the space when it is built.
    compile_stats: Vec<Resource>,
}

impl Guided {
    pub fn new(kind: StrategyKind, seed: u64) -> Guided {
        Guided {
            kind,
            seed,
            inner: kind.build(seed),
            space: None,
            compile_stats: Vec::new(),
        }
    }
}

/// The candidates as a search space: each parameter's values sorted, ids in candidate order.
fn search_space(configs: &[Config]) -> Option<SearchSpace> {
    let names: Vec<String> = configs
        .first()?
        .values
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let params: Vec<SearchParam> = names
        .iter()
        .map(|name| {
            let mut values: Vec<i64> = configs.iter().filter_map(|c| c.get(name)).collect();
            values.sort_unstable();
            values.dedup();
            SearchParam {
                name: name.clone(),
                values,
            }
        })
        .collect();
    let points: Vec<Point> = configs
        .iter()
        .map(|c| {
            params
                .iter()
                .map(|p| {
                    let v = c.get(&p.name).unwrap_or(p.values[0]);
                    p.values.binary_search(&v).unwrap_or(0) as u16
                })
                .collect()
        })
        .collect();
    SearchSpace::new(params, points).ok()
}

impl SearchStrategy for Guided {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn propose(&mut self, space: &[Config], trials: &[Trial]) -> Vec<usize> {
        if self.space.is_none() {
            let stats = std::mem::take(&mut self.compile_stats);
            self.space = search_space(space).map(|s| match s.clone().with_resources(stats) {
                Ok(with_stats) => with_stats,
                Err(e) => {
                    tracing::warn!("compile statistics not used: {e}");
                    s
                }
            });
        }
        let Some(search) = &self.space else {
            // Not expressible as a search space (duplicate configs): time in order.
            return Exhaustive.propose(space, trials);
        };
        let mut history = History::new(trials.len());
        for (id, trial) in trials.iter().enumerate() {
            match trial {
                Trial::Measured(t) => history.record(id, Outcome::Time(*t)),
                Trial::Failed => history.record(id, Outcome::Failed),
                Trial::Pending => {}
            }
        }
        self.inner.next(search, &history).into_iter().collect()
    }

    fn use_prior(&mut self, prior: Arc<Prior>) -> Option<String> {
        self.inner = self.kind.build_with_prior(self.seed, Some(prior));
        self.inner.describe()
    }

    fn use_compile_stats(&mut self, stats: Vec<Resource>) -> Option<String> {
        let names: Vec<&str> = stats.iter().map(|r| r.name.as_str()).collect();
        let said = format!("its model sees the compile statistics {}", names.join(", "));
        let modelled = matches!(self.kind, StrategyKind::Surrogate | StrategyKind::Gp);
        let used = modelled && !stats.is_empty();
        self.compile_stats = stats;
        used.then_some(said)
    }
}

/// Strategy names [`strategy_by_name`] knows.
pub const STRATEGIES: &[&str] = &["exhaustive", "random", "local", "surrogate", "gp"];

/// The strategy called `name` (the default for large spaces is `gp`).
pub fn strategy_by_name(name: &str) -> Result<Box<dyn SearchStrategy>, TuneError> {
    if name == "exhaustive" {
        return Ok(Box::new(Exhaustive));
    }
    match name.parse::<StrategyKind>() {
        Ok(kind) => Ok(Box::new(Guided::new(kind, 0x5eed))),
        Err(_) => Err(TuneError::UnknownStrategy {
            name: name.to_string(),
            known: STRATEGIES.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_proposes_only_pending() {
        let space = vec![Config::new(); 4];
        let trials = [
            Trial::Pending,
            Trial::Measured(1.0),
            Trial::Failed,
            Trial::Pending,
        ];
        assert_eq!(Exhaustive.propose(&space, &trials), [0, 3]);
        assert!(Exhaustive
            .propose(&space, &[Trial::Failed, Trial::Measured(2.0)])
            .is_empty());
        assert_eq!(strategy_by_name("exhaustive").unwrap().name(), "exhaustive");
        assert_eq!(strategy_by_name("surrogate").unwrap().name(), "surrogate");
        let e = strategy_by_name("bayes").err().unwrap().to_string();
        assert!(e.contains("`bayes`") && e.contains("exhaustive"), "{e}");
    }

    #[test]
    fn a_prior_from_another_device_decides_the_first_proposal() {
        use crate::search::PriorSource;
        let space: Vec<Config> = (0..10)
            .flat_map(|a| (0..10).map(move |b| Config::new().with("A", a).with("B", b)))
            .collect();
        // The other device found candidate 37 fastest, then 81.
        let outcomes = (0..space.len())
            .map(|i| {
                let t = match i {
                    37 => 1.0,
                    81 => 2.0,
                    _ => 10.0 + i as f64,
                };
                Some(Outcome::Time(t))
            })
            .collect();
        let prior = Prior::new(vec![PriorSource {
            name: "H100".into(),
            outcomes,
        }])
        .unwrap();
        let mut s = Guided::new(StrategyKind::Surrogate, 3);
        let said = s.use_prior(Arc::new(prior)).unwrap();
        assert!(said.contains("(H100)"), "{said}");
        let mut trials = vec![Trial::Pending; space.len()];
        assert_eq!(s.propose(&space, &trials), [37]);
        trials[37] = Trial::Measured(5.0);
        assert_eq!(s.propose(&space, &trials), [81]);
        assert!(Exhaustive.use_prior(Arc::new(Prior::default())).is_none());
    }

    #[test]
    fn guided_strategies_propose_each_candidate_once_until_all_are_known() {
        let space: Vec<Config> = (0..4)
            .flat_map(|a| (0..5).map(move |b| Config::new().with("A", a).with("B", b * 8)))
            .collect();
        for name in ["random", "local", "surrogate", "gp"] {
            let mut s = strategy_by_name(name).unwrap();
            // Compile statistics in the model's features change nothing of the contract.
            let registers = Resource {
                name: "num_regs".into(),
                values: (0..space.len()).map(|i| (i % 3) as f64).collect(),
            };
            let said = s.use_compile_stats(vec![registers]);
            assert_eq!(
                said.is_some(),
                name == "surrogate" || name == "gp",
                "{name}"
            );
            let mut trials = vec![Trial::Pending; space.len()];
            let mut proposed = 0;
            loop {
                let next = s.propose(&space, &trials);
                if next.is_empty() {
                    break;
                }
                for i in next {
                    assert_eq!(trials[i], Trial::Pending, "{name} proposed {i} twice");
                    let c = &space[i];
                    trials[i] =
                        Trial::Measured((c.get("A").unwrap() * 10 + c.get("B").unwrap()) as f64);
                    proposed += 1;
                }
            }
            assert_eq!(proposed, space.len(), "{name}");
        }
    }
}
