//! The tuning loop of one problem: reuse what the cache knows, check each new candidate's
//! output against the default config's, time it, record every outcome.

use crate::bench::{compare, measure, Bench, Measurement, RunFailure, SamplePolicy};
use crate::cache::{config_text, Outcome, ResultRecord, TuneCache};
use crate::kernel::TuneKernel;
use crate::key::{Bucket, EntryKey};
use crate::prune::{Pruning, COMPILE_STATS};
use crate::search::Resource;
use crate::shapes::ProblemShape;
use crate::strategy::{Exhaustive, SearchStrategy, Trial, EXHAUSTIVE_LIMIT};
use crate::transfer::prior_from_caches;
use crate::TuneError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use warpforge_dsl::Config;

/// How to tune.
#[derive(Clone, Copy, Debug, Default)]
pub struct TuneOptions {
    pub policy: SamplePolicy,
    /// No candidate is started after this instant (the `--budget`).
    pub deadline: Option<Instant>,
}

/// What the tuner reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A problem starts, with this many candidates left to time.
    Problem {
        kernel: &'a str,
        bucket: Bucket,
        pending: usize,
    },
    /// A candidate finished.
    Candidate {
        kernel: &'a str,
        config: &'a Config,
        result: &'a Result<Measurement, RunFailure>,
    },
}

/// The outcome of one problem.
#[derive(Clone, Debug)]
pub struct ProblemReport {
    pub kernel: String,
    pub shape: ProblemShape,
    pub bucket: Bucket,
    pub default: Config,
    /// The fastest config whose output matched the default's.
    pub best: Option<(Config, Measurement)>,
    pub default_time: Option<Measurement>,
    /// Dropped before timing.
    pub pruned: usize,
    /// Timed in this run.
    pub timed: usize,
    /// Known from the cache (timed or failed before).
    pub reused: usize,
    /// Every failed candidate (this run's and earlier ones), with the reason.
    pub failed: Vec<(Config, String)>,
    /// Not tried: the budget ran out or the device was lost.
    pub skipped: usize,
    /// Why the problem could not be tuned at all.
    pub error: Option<String>,
    /// What the search took from other devices' caches (see [`crate::transfer`]), if anything.
    pub transfer: Option<String>,
}

impl ProblemReport {
    /// The default config's time over the best's.
    pub fn speedup(&self) -> Option<f64> {
        let (_, best) = self.best.as_ref()?;
        let default = self.default_time?;
        (best.median > 0.0).then(|| default.median / best.median)
    }

    /// Whether anything went wrong (a failed candidate or a problem-level error).
    pub fn has_failures(&self) -> bool {
        self.error.is_some() || !self.failed.is_empty()
    }
}

/// Tunes problems on one bench, recording into one cache.
pub struct Tuner<'a> {
    bench: &'a mut dyn Bench,
    cache: &'a mut TuneCache,
    options: TuneOptions,
    progress: Box<dyn FnMut(Progress) + 'a>,
}

/// One problem in flight.
struct Problem<'k> {
    kernel: &'k TuneKernel,
    key: EntryKey,
    shape: ProblemShape,
    space: Vec<Config>,
    hashes: Vec<String>,
    trials: Vec<Trial>,
    times: Vec<Option<Measurement>>,
}

impl<'a> Tuner<'a> {
    pub fn new(bench: &'a mut dyn Bench, cache: &'a mut TuneCache, options: TuneOptions) -> Self {
        Tuner {
            bench,
            cache,
            options,
            progress: Box::new(|_| {}),
        }
    }

    pub fn on_progress(mut self, f: impl FnMut(Progress) + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    /// Tunes `kernel` at `shape` over the candidates `pruning` kept (plus the default
    /// config, the reference, always). Spaces of at most [`EXHAUSTIVE_LIMIT`] candidates
    /// are searched exhaustively, larger ones with `strategy`. The cache is saved at the
    /// end; only a failure to save it (or a bad shape) is an error.
    pub fn tune(
        &mut self,
        kernel: &TuneKernel,
        shape: &ProblemShape,
        pruning: &Pruning,
        strategy: &mut dyn SearchStrategy,
    ) -> Result<ProblemReport, TuneError> {
        let mut p = self.problem(kernel, shape, pruning)?;
        let default = kernel.default_config();
        let mut report = ProblemReport {
            kernel: kernel.name().to_string(),
            shape: shape.clone(),
            bucket: p.key.bucket,
            default: default.clone(),
            best: None,
            default_time: None,
            // Compile-time pruning, plus configs the problem's layout rules out.
            pruned: pruning
                .pruned
                .iter()
                .filter(|x| x.config != default)
                .count()
                + pruning
                    .kept
                    .iter()
                    .filter(|x| x.config != default && !kernel.admits(&x.config, &shape.dims))
                    .count(),
            timed: 0,
            reused: p.trials.iter().filter(|t| **t != Trial::Pending).count(),
            failed: Vec::new(),
            skipped: 0,
            error: None,
            transfer: None,
        };
        let mut exhaustive = Exhaustive;
        let strategy: &mut dyn SearchStrategy = if p.space.len() <= EXHAUSTIVE_LIMIT {
            &mut exhaustive
        } else {
            let others = self.cache.other_devices();
            if let Some(prior) = prior_from_caches(&others, &p.key, &p.space) {
                report.transfer = strategy.use_prior(Arc::new(prior));
                if let Some(t) = &report.transfer {
                    tracing::info!("{} {:?}: {t}", kernel.name(), p.key.bucket);
                }
            }
            if let Some(said) = strategy.use_compile_stats(compile_stats(pruning, &p.space)) {
                tracing::debug!("{} {:?}: {said}", kernel.name(), p.key.bucket);
            }
            strategy
        };
        let pending = p.trials.iter().filter(|t| **t == Trial::Pending).count();
        (self.progress)(Progress::Problem {
            kernel: kernel.name(),
            bucket: p.key.bucket,
            pending,
        });
        if pending > 0 {
            if let Err(e) = self.search(&mut p, &default, strategy, &mut report) {
                report.error = Some(e);
            }
            self.cache.save()?;
        }
        report.skipped = p.trials.iter().filter(|t| **t == Trial::Pending).count();
        self.summarize(&p, &mut report);
        Ok(report)
    }

    /// The candidates (default first) with what the cache knows of them.
    fn problem<'k>(
        &self,
        kernel: &'k TuneKernel,
        shape: &ProblemShape,
        pruning: &Pruning,
    ) -> Result<Problem<'k>, TuneError> {
        let key = kernel.entry_key(&shape.dims)?;
        let default = kernel.default_config();
        let mut space = vec![default.clone()];
        space.extend(
            pruning
                .kept
                .iter()
                .map(|c| c.config.clone())
                .filter(|c| *c != default && kernel.admits(c, &shape.dims)),
        );
        let hashes = space
            .iter()
            .map(|c| kernel.config_hash(c))
            .collect::<Result<Vec<_>, _>>()?;
        let entry = self.cache.entry(&key);
        let known = |i: usize| entry.and_then(|e| e.result(&space[i], &hashes[i]));
        let (trials, times) = (0..space.len())
            .map(|i| match known(i).map(|r| &r.outcome) {
                None => (Trial::Pending, None),
                Some(Outcome::Failed { .. }) => (Trial::Failed, None),
                Some(&Outcome::Measured {
                    median_ns,
                    spread,
                    samples,
                }) => {
                    let m = Measurement {
                        median: median_ns * 1e-9,
                        spread,
                        samples,
                    };
                    (Trial::Measured(m.median), Some(m))
                }
            })
            .unzip();
        Ok(Problem {
            kernel,
            key,
            shape: shape.clone(),
            space,
            hashes,
            trials,
            times,
        })
    }

    /// Prepares the problem, computes the reference output and runs the strategy's
    /// proposals until it stops, the budget is spent or the device is lost.
    fn search(
        &mut self,
        p: &mut Problem,
        default: &Config,
        strategy: &mut dyn SearchStrategy,
        report: &mut ProblemReport,
    ) -> Result<(), String> {
        if p.trials[0] == Trial::Failed {
            return Err("the default config (the reference) failed in an earlier run".into());
        }
        if self.out_of_time() {
            return Ok(());
        }
        self.bench
            .prepare(&p.shape)
            .map_err(|e| format!("cannot set up the problem: {e}"))?;
        let reference = match self.reference(default) {
            Ok(out) => out,
            Err(failure) => {
                self.record(p, 0, Err(failure.clone()));
                return Err(format!("the default config (the reference) {failure}"));
            }
        };
        loop {
            let batch: Vec<usize> = strategy
                .propose(&p.space, &p.trials)
                .into_iter()
                .filter(|&i| p.trials.get(i) == Some(&Trial::Pending))
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            for i in batch {
                if self.out_of_time() || !self.bench.healthy() {
                    return Ok(());
                }
                let result = self.run_candidate(&p.space[i], &reference);
                (self.progress)(Progress::Candidate {
                    kernel: p.kernel.name(),
                    config: &p.space[i],
                    result: &result,
                });
                report.timed += result.is_ok() as usize;
                self.record(p, i, result);
            }
        }
    }

    fn out_of_time(&self) -> bool {
        self.options.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn reference(&mut self, default: &Config) -> Result<Vec<f32>, RunFailure> {
        if self.bench.accumulates() {
            self.bench.restore()?;
        }
        self.bench.output(default)
    }

    /// Checks the candidate's output against the reference, then times it.
    fn run_candidate(
        &mut self,
        config: &Config,
        reference: &[f32],
    ) -> Result<Measurement, RunFailure> {
        if self.bench.accumulates() {
            self.bench.restore()?;
        }
        let out = self.bench.output(config)?;
        compare(reference, &out, self.bench.tolerance()).map_err(RunFailure::WrongOutput)?;
        measure(self.bench, config, &self.options.policy)
    }

    fn record(&mut self, p: &mut Problem, i: usize, result: Result<Measurement, RunFailure>) {
        let outcome = match &result {
            // Rounded for the reader of the file: 0.1 ns, and the spread to 1e-5.
            Ok(m) => Outcome::Measured {
                median_ns: (m.median * 1e10).round() / 10.0,
                spread: (m.spread * 1e5).round() / 1e5,
                samples: m.samples,
            },
            Err(f) => Outcome::Failed {
                reason: f.to_string(),
            },
        };
        p.trials[i] = match result {
            Ok(m) => {
                p.times[i] = Some(m);
                Trial::Measured(m.median)
            }
            Err(_) => Trial::Failed,
        };
        let record = ResultRecord {
            config: config_text(&p.space[i]),
            config_hash: p.hashes[i].clone(),
            outcome,
        };
        self.cache.record(&p.key, &p.shape.dims, record);
    }

    fn summarize(&self, p: &Problem, report: &mut ProblemReport) {
        report.default_time = p.times[0];
        let best = (0..p.space.len())
            .filter_map(|i| p.times[i].map(|m| (i, m)))
            .min_by(|a, b| a.1.median.total_cmp(&b.1.median));
        report.best = best.map(|(i, m)| (p.space[i].clone(), m));
        let entry = self.cache.entry(&p.key);
        for (i, config) in p.space.iter().enumerate() {
            if p.trials[i] != Trial::Failed {
                continue;
            }
            let reason = entry
                .and_then(|e| e.result(config, &p.hashes[i]))
                .and_then(|r| match &r.outcome {
                    Outcome::Failed { reason } => Some(reason.clone()),
                    Outcome::Measured { .. } => None,
                })
                .unwrap_or_else(|| "failed".into());
            report.failed.push((config.clone(), reason));
        }
    }
}

/// The compile statistics of each config of `space` that pruning kept (the default config,
/// always in the space, may have been pruned: its values are filled in).
fn compile_stats(pruning: &Pruning, space: &[Config]) -> Vec<Resource> {
    let known: HashMap<&Config, [f64; 5]> = pruning
        .kept
        .iter()
        .map(|c| (&c.config, c.compile_stats()))
        .collect();
    let rows: Vec<[Option<f64>; 5]> = space
        .iter()
        .map(|c| known.get(c).map_or([None; 5], |s| s.map(Some)))
        .collect();
    Resource::from_rows(COMPILE_STATS, &rows)
}
