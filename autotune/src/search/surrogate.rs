//! Model-guided search: each step evaluates the config of a candidate pool with the highest
//! expected improvement under a random-forest model of log time, with a floor of uniformly
//! random proposals so that the search never does worse than random sampling.
//!
//! - The *pool* is [`POOL`] untried configs drawn uniformly from the whole space plus the
//!   untried neighbours ([`SearchSpace::neighbours`]) of the [`ELITE`] fastest configs so far.
//!   Picking the best of a uniform pool degrades to random sampling when the model knows
//!   nothing, and never walks a whole neighbourhood the way a hill climb does.
//! - The *acquisition* is expected improvement on log time, with the spread of the trees'
//!   predictions as the uncertainty (see [`super::forest::Forest::predict`]).
//! - A share of proposals is plain random: [`RANDOM_SHARE`], raised to [`STALLED_SHARE`] once
//!   [`STALL`] evaluations pass without a new best (the model may be stuck in a wrong basin).
//! - Until [`INITIAL`] evaluations exist the model is not trusted and proposals are random,
//!   unless a [`Prior`] (results of the same kernel on other GPUs) is given: then the first
//!   [`WARM_START`] proposals are the sources' fastest configs, interleaved by rank, and each
//!   source's time becomes a feature of the model (see [`Features`]).
//!
//! Failed configs enter the model as slower than the slowest seen, so it learns to avoid the
//! regions where they fail. The constants are fixed from the literature (SMAC's random share
//! of 0.2, Kernel Tuner's and SMAC's initial designs of 10–20, pools of a few hundred), not
//! fitted to any tuning space.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::index;
use rand::Rng;

use super::features::Features;
use super::forest::{Forest, Samples};
use super::{random_untried, seeded, History, Prior, SearchSpace, Strategy};

/// Random evaluations before the model steers (without a prior).
const INITIAL: usize = 10;
/// With a prior: the sources' fastest configs evaluated first, before the model steers.
const WARM_START: usize = 8;
/// Trees in the forest.
const TREES: usize = 20;
/// Configs drawn uniformly from the space into each step's pool.
const POOL: usize = 256;
/// The fastest configs so far whose neighbours join the pool.
const ELITE: usize = 3;
/// The share of random proposals while the search improves.
const RANDOM_SHARE: f64 = 0.1;
/// The share of random proposals after [`STALL`] evaluations without a new best.
const STALLED_SHARE: f64 = 0.3;
/// Evaluations without a new best after which the search counts as stalled.
const STALL: usize = 30;
/// At most this many evaluations train the model (the fastest half of them, and a random
/// sample of the rest), which bounds a step's cost on long searches.
const MAX_TRAIN: usize = 384;

pub struct SurrogateSearch {
    rng: SmallRng,
    prior: Option<Arc<Prior>>,
    features: Option<Features>,
    /// The warm-start proposals from the prior not yet handed out, first in front.
    warm: Vec<usize>,
    /// The model, and the number of evaluations it was fitted on.
    model: Option<(Forest, usize)>,
}

impl SurrogateSearch {
    pub fn new(seed: u64) -> SurrogateSearch {
        SurrogateSearch::with_prior(seed, None)
    }

    /// A search that starts from `prior`'s results on other devices, when given.
    pub fn with_prior(seed: u64, prior: Option<Arc<Prior>>) -> SurrogateSearch {
        SurrogateSearch {
            rng: seeded(seed),
            prior,
            features: None,
            warm: Vec::new(),
            model: None,
        }
    }

    fn prepare(&mut self, space: &SearchSpace) {
        if self.features.is_some() {
            return;
        }
        self.features = Some(Features::new(space, self.prior.as_deref()));
        if let Some(prior) = &self.prior {
            let mut warm = prior.round_robin(WARM_START);
            warm.reverse();
            self.warm = warm;
        }
    }

    fn features(&self) -> &Features {
        self.features.as_ref().expect("prepared")
    }

    /// Refits the model when enough new evaluations arrived: every step early on, then every
    /// n/16 steps, so a long search refits about logarithmically often.
    fn refresh_model(&mut self, history: &History) {
        let n = history.len();
        let stale = match &self.model {
            None => true,
            Some((_, fitted)) => n >= fitted + (fitted / 16).max(1),
        };
        if stale {
            self.model = self.fit(history).map(|f| (f, n));
        }
    }

    /// The model fitted to log time (failures as slower than the slowest).
    fn fit(&mut self, history: &History) -> Option<Forest> {
        let logs = history
            .trials()
            .iter()
            .filter_map(|t| t.1.time())
            .map(f64::ln);
        let (best, worst) = logs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
        if !best.is_finite() || self.features().dims() == 0 {
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
        let features = self.features();
        let x: Vec<f32> = train
            .iter()
            .flat_map(|&(id, _)| features.row(id).iter().copied())
            .collect();
        let y: Vec<f64> = train.iter().map(|t| t.1).collect();
        let data = Samples {
            x: &x,
            dims: features.dims(),
            y: &y,
        };
        Some(Forest::fit(&data, TREES, &mut self.rng))
    }

    /// Whether this step is a random one: the floor, raised when the search stalls.
    fn random_turn(&mut self, history: &History) -> bool {
        let share = if evaluations_since_best(history) >= STALL {
            STALLED_SHARE
        } else {
            RANDOM_SHARE
        };
        self.rng.random_bool(share)
    }

    /// The candidates of this step: a uniform sample of untried configs and the untried
    /// neighbours of the fastest configs so far.
    fn pool(&mut self, space: &SearchSpace, history: &History) -> Vec<usize> {
        let mut pool = Vec::with_capacity(POOL + 64);
        for _ in 0..POOL {
            match random_untried(history, &mut self.rng) {
                Some(id) => pool.push(id),
                None => break,
            }
        }
        for (id, _) in fastest(history, ELITE) {
            pool.extend(
                space
                    .neighbours(id)
                    .into_iter()
                    .filter(|&n| !history.tried(n)),
            );
        }
        pool.sort_unstable();
        pool.dedup();
        pool
    }

    /// The pool's config with the highest expected improvement over the best log time.
    fn best_of_pool(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        let best = history.best()?.1.ln();
        let pool = self.pool(space, history);
        let (forest, _) = self.model.as_ref()?;
        let features = self.features();
        pool.into_iter()
            .map(|id| {
                let (mean, spread) = forest.predict(features.row(id));
                (id, expected_improvement(best, mean, spread))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id)
    }
}

impl Strategy for SurrogateSearch {
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        self.prepare(space);
        if history.len() >= space.len() {
            return None;
        }
        while let Some(id) = self.warm.pop() {
            if !history.tried(id) {
                return Some(id);
            }
        }
        let initial = if self.prior.is_some() { 2 } else { INITIAL };
        if history.len() < initial || self.random_turn(history) {
            return random_untried(history, &mut self.rng);
        }
        self.refresh_model(history);
        match self.best_of_pool(space, history) {
            Some(id) => Some(id),
            None => random_untried(history, &mut self.rng),
        }
    }

    fn describe(&self) -> Option<String> {
        self.prior.as_ref().map(|p| p.describe())
    }
}

/// Evaluations since the best so far was found (all of them when nothing has run).
fn evaluations_since_best(history: &History) -> usize {
    let Some((best, _)) = history.best() else {
        return history.len();
    };
    let at = history.trials().iter().position(|t| t.0 == best);
    history.len() - 1 - at.unwrap_or(0)
}

/// The `k` fastest evaluated configs.
fn fastest(history: &History, k: usize) -> Vec<(usize, f64)> {
    let mut timed: Vec<(usize, f64)> = history
        .trials()
        .iter()
        .filter_map(|&(id, o)| o.time().map(|t| (id, t)))
        .collect();
    timed.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
    timed.truncate(k);
    timed
}

/// Expected improvement below `best` of a normal(mean, spread) prediction; with no spread,
/// the plain improvement, so a certain gain still ranks.
fn expected_improvement(best: f64, mean: f64, spread: f64) -> f64 {
    if spread <= 1e-12 {
        return (best - mean).max(0.0);
    }
    let z = (best - mean) / spread;
    (best - mean) * normal_cdf(z) + spread * normal_pdf(z)
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The standard normal CDF through erfc (Abramowitz–Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-1.96) - 0.024_997_895).abs() < 1e-6);
    }

    #[test]
    fn expected_improvement_rewards_low_means_and_spread() {
        let best = 1.0;
        assert!(expected_improvement(best, 0.5, 0.1) > expected_improvement(best, 0.9, 0.1));
        assert!(expected_improvement(best, 1.2, 0.5) > expected_improvement(best, 1.2, 0.1));
        assert_eq!(expected_improvement(best, 1.5, 0.0), 0.0);
        assert!((expected_improvement(best, 0.7, 0.0) - 0.3).abs() < 1e-12);
    }
}
