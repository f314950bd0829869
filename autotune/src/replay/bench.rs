//! The generalization benchmark: every strategy, seeded many times, on a set of brute-forced
//! spaces, reporting per space and strategy the evaluations to 90, 95 and 99% of the optimum
//! (median and 90th percentile over the runs), the share of runs that miss each target within
//! the budget, and the area under the mean best-so-far curve.
//!
//! Leave-one-GPU-out transfer: where a space's folder holds the same kernel on other GPUs
//! (`<kernel>/<gpu>.json.gz`), the surrogate also runs with those other files as its prior
//! (`surrogate+transfer`, `gp+transfer`), never with the measured space's own file. The strategies have no
//! per-space hyperparameters: every constant is fixed in the code for all spaces.
//!
//! Compile statistics: where a space's file records them for its configs (registers and the
//! like, see [`crate::prune::COMPILE_STATS`]), every strategy runs without them and the
//! surrogate and the GP run once more with them as model features (`surrogate+stats`,
//! `gp+stats`), so the table shows what they are worth.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::{ReplayError, ReplaySpace};
use crate::search::{
    search, History, Prior, Strategy, StrategyKind, SurrogateSearch, SurrogateSettings,
};

/// The fractions of the optimum the benchmark reports unless told others.
pub const TARGETS: [f64; 3] = [0.90, 0.95, 0.99];

/// How the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Seeded runs per space and strategy (seeds `seed0..seed0 + runs`).
    pub runs: usize,
    /// Evaluations per run; a run that has not reached a target by then misses it.
    pub budget: usize,
    pub seed0: u64,
    /// Also run the surrogate with the other GPUs' files of the same kernel as a prior.
    pub transfer: bool,
    /// Only the strategies with these labels (e.g. `surrogate+transfer`); all when empty.
    pub only: Vec<String>,
    /// The fractions of the optimum reported, ascending, each in (0, 1]; a run stops at the
    /// highest (see [`BenchOptions::check`]).
    pub targets: Vec<f64>,
}

impl BenchOptions {
    /// Refuses options the benchmark cannot run: no runs, no budget, or a target outside
    /// (0, 1]. Sorts the targets and drops repeats; no targets means [`TARGETS`].
    pub fn check(mut self) -> Result<BenchOptions, ReplayError> {
        if self.runs == 0 || self.budget == 0 {
            return Err(ReplayError::Options(
                "runs and the evaluation budget must be at least 1".into(),
            ));
        }
        if self.targets.is_empty() {
            self.targets = TARGETS.to_vec();
        }
        for &t in &self.targets {
            fraction_of_optimum(t).map_err(|why| ReplayError::Options(format!("target {why}")))?;
        }
        self.targets.sort_by(f64::total_cmp);
        self.targets.dedup();
        Ok(self)
    }
}

/// `t` if it is a target the benchmark can run, a fraction of the optimum in (0, 1]; else why
/// not.
pub fn fraction_of_optimum(t: f64) -> Result<f64, String> {
    if t > 0.0 && t <= 1.0 {
        Ok(t)
    } else {
        Err(format!(
            "{t} is not a fraction of the optimum in (0, 1] (0.95: within 95% of the best time)"
        ))
    }
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            runs: 50,
            budget: 1000,
            seed0: 0,
            transfer: true,
            only: Vec::new(),
            targets: TARGETS.to_vec(),
        }
    }
}

/// A strategy as benchmarked: a kind, the prior it starts from, if any, (for the surrogate)
/// its settings, and whether it sees the space's compile statistics.
#[derive(Clone)]
pub struct Contender {
    pub label: String,
    pub kind: StrategyKind,
    pub prior: Option<Arc<Prior>>,
    pub settings: SurrogateSettings,
    pub compile_stats: bool,
}

impl Contender {
    pub fn plain(kind: StrategyKind) -> Contender {
        Contender {
            label: kind.name().to_string(),
            kind,
            prior: None,
            settings: SurrogateSettings::default(),
            compile_stats: false,
        }
    }

    /// A fresh strategy for one seeded run.
    fn build(&self, seed: u64) -> Box<dyn Strategy + Send> {
        match self.kind {
            StrategyKind::Surrogate => Box::new(SurrogateSearch::with_settings(
                seed,
                self.prior.clone(),
                self.settings,
            )),
            kind => kind.build_with_prior(seed, self.prior.clone()),
        }
    }
}

/// One target's statistics over the runs; `None` evaluations mean "not within the budget".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetStats {
    pub target: f64,
    pub median: Option<usize>,
    pub p90: Option<usize>,
    /// The share of runs that did not reach the target within the budget.
    pub missed: f64,
    /// Random sampling's exact median evaluations to the target (see [`random_median`]).
    pub random_median: usize,
    /// The share of runs that reached the target within `random_median` evaluations: at
    /// least about half for a strategy no worse than random.
    pub within_random: f64,
}

/// One strategy on one space.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyReport {
    pub strategy: String,
    pub runs: usize,
    pub budget: usize,
    pub targets: Vec<TargetStats>,
    /// The mean over runs of the best-so-far fraction of the optimum (optimum / best time,
    /// 0 before anything ran), averaged over the budget's evaluations: 1 is finding the
    /// optimum at once. A run stops at 99% and its curve is held there.
    pub curve_area: f64,
    /// What the strategy took from other devices, if anything.
    pub prior: Option<String>,
}

impl StrategyReport {
    pub fn at(&self, target: f64) -> Option<&TargetStats> {
        self.targets.iter().find(|t| t.target == target)
    }
}

/// Every strategy on one space.
#[derive(Clone, Debug, Serialize)]
pub struct SpaceReport {
    pub space: String,
    pub configs: usize,
    /// The exact median evaluations of uniform random sampling to 95% (see [`random_median`]).
    pub random_median_95: usize,
    pub strategies: Vec<StrategyReport>,
}

/// What one run gave: per target the evaluations to reach it, and its curve's area.
struct RunTrace {
    evals_to: Vec<Option<usize>>,
    curve_area: f64,
}

/// Loads `files` and benchmarks every strategy on each; `progress` hears of each space done.
pub fn benchmark(
    files: &[PathBuf],
    options: BenchOptions,
    mut progress: impl FnMut(&SpaceReport),
) -> Result<Vec<SpaceReport>, ReplayError> {
    let options = options.check()?;
    let spaces: Vec<ReplaySpace> = files
        .iter()
        .map(|f| ReplaySpace::load(f))
        .collect::<Result<_, _>>()?;
    let mut reports = Vec::new();
    for (i, (path, space)) in files.iter().zip(&spaces).enumerate() {
        let mut contenders: Vec<Contender> = StrategyKind::ALL
            .into_iter()
            .map(Contender::plain)
            .collect();
        if options.transfer {
            let others = files
                .iter()
                .zip(&spaces)
                .enumerate()
                .filter(|&(j, (other, _))| j != i && other.parent() == path.parent())
                .map(|(_, (other, s))| (device_name(other), s))
                .collect::<Vec<_>>();
            let prior = space.prior_from(others.iter().map(|(n, s)| (n.as_str(), *s)));
            if let Some(prior) = prior.map(Arc::new) {
                for kind in [StrategyKind::Surrogate, StrategyKind::Gp] {
                    contenders.push(Contender {
                        label: format!("{kind}+transfer"),
                        prior: Some(prior.clone()),
                        ..Contender::plain(kind)
                    });
                }
            }
        }
        if !space.space().resources().is_empty() {
            for kind in [StrategyKind::Surrogate, StrategyKind::Gp] {
                contenders.push(Contender {
                    label: format!("{kind}+stats"),
                    compile_stats: true,
                    ..Contender::plain(kind)
                });
            }
        }
        if !options.only.is_empty() {
            contenders.retain(|c| options.only.contains(&c.label));
        }
        let report = SpaceReport {
            space: path.display().to_string(),
            configs: space.len(),
            random_median_95: random_median(space, 0.95),
            strategies: contenders
                .iter()
                .map(|c| strategy_report(space, c, &options))
                .collect(),
        };
        progress(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// A space file's device: its name without `.json.gz`.
fn device_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    name.trim_end_matches(".json.gz").to_string()
}

/// `options.runs` seeded runs of one contender on one space.
pub fn strategy_report(
    space: &ReplaySpace,
    contender: &Contender,
    options: &BenchOptions,
) -> StrategyReport {
    let bare;
    let space = if contender.compile_stats || space.space().resources().is_empty() {
        space
    } else {
        bare = space.without_resources();
        &bare
    };
    let traces: Vec<RunTrace> = (0..options.runs as u64)
        .into_par_iter()
        .map(|i| run_once(space, contender, options.seed0.wrapping_add(i), options))
        .collect();
    let targets = options
        .targets
        .iter()
        .enumerate()
        .map(|(t, &target)| {
            let mut evals: Vec<usize> = traces
                .iter()
                .map(|r| r.evals_to[t].unwrap_or(usize::MAX))
                .collect();
            evals.sort_unstable();
            let missed = evals.iter().filter(|&&e| e == usize::MAX).count();
            let within = |e: usize| (e != usize::MAX).then_some(e);
            let runs = traces.len().max(1) as f64;
            let random = random_median(space, target);
            TargetStats {
                target,
                median: within(percentile(&evals, 0.5)),
                p90: within(percentile(&evals, 0.9)),
                missed: missed as f64 / runs,
                random_median: random,
                within_random: evals.iter().filter(|&&e| e <= random).count() as f64 / runs,
            }
        })
        .collect();
    let curve_area = traces.iter().map(|r| r.curve_area).sum::<f64>() / traces.len().max(1) as f64;
    let strategy = contender.build(0);
    StrategyReport {
        strategy: contender.label.clone(),
        runs: options.runs,
        budget: options.budget,
        targets,
        curve_area,
        prior: strategy.describe(),
    }
}

/// One seeded run, until the highest target is reached or the budget is spent.
fn run_once(
    space: &ReplaySpace,
    contender: &Contender,
    seed: u64,
    options: &BenchOptions,
) -> RunTrace {
    let (budget, targets) = (options.budget, &options.targets);
    let optimum = space.best_time();
    let last = space.threshold(targets.last().copied().unwrap_or(1.0));
    let mut strategy = contender.build(seed);
    let history = search(
        space.space(),
        strategy.as_mut(),
        |id| space.evaluate(id),
        |h| h.len() >= budget || h.best().is_some_and(|(_, t)| t <= last),
    );
    trace(&history, optimum, budget, targets)
}

fn trace(history: &History, optimum: f64, budget: usize, targets: &[f64]) -> RunTrace {
    let mut best = f64::INFINITY;
    let mut evals_to = vec![None; targets.len()];
    let mut area = 0.0;
    let mut fraction = 0.0;
    for (n, (_, outcome)) in history.trials().iter().enumerate().take(budget) {
        if let Some(t) = outcome.time() {
            best = best.min(t);
        }
        fraction = if best.is_finite() {
            optimum / best
        } else {
            0.0
        };
        for (slot, &target) in evals_to.iter_mut().zip(targets) {
            if slot.is_none() && best <= optimum / target {
                *slot = Some(n + 1);
            }
        }
        area += fraction;
    }
    // The run stopped at the highest target (or with the space exhausted): the curve is held
    // there, which understates the area by at most 1 − that target.
    area += fraction * budget.saturating_sub(history.len()) as f64;
    RunTrace {
        evals_to,
        curve_area: area / budget.max(1) as f64,
    }
}

/// Evaluations `strategy` (seeded with `seed`) needs to find a config within `target` of the
/// optimum (time ≤ best / target), failed evaluations included. Capped at the space size.
pub fn evals_to_target(
    space: &ReplaySpace,
    strategy: StrategyKind,
    seed: u64,
    target: f64,
) -> usize {
    let threshold = space.threshold(target);
    let mut strategy = strategy.build(seed);
    let history = search(
        space.space(),
        strategy.as_mut(),
        |id| space.evaluate(id),
        |h| h.best().is_some_and(|(_, t)| t <= threshold),
    );
    history.len().min(space.len())
}

/// The exact median evaluations of uniform random sampling without replacement to reach
/// `target`: the smallest k with P(no hit in k draws) ≤ 1/2, where failed configs are draws
/// too. No simulation, so "never worse than random" is checked against the true figure.
pub fn random_median(space: &ReplaySpace, target: f64) -> usize {
    let (n, hits) = (space.len() as f64, space.hits(target) as f64);
    let mut none = 1.0;
    for k in 0..space.len() {
        none *= (n - hits - k as f64) / (n - k as f64);
        // A tolerance, so that a product of ratios that is exactly 1/2 counts as 1/2.
        if none <= 0.5 + 1e-12 {
            return k + 1;
        }
    }
    space.len()
}

/// The nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
