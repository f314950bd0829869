//! The tuning loop against the fake device: scripted timings, noise and faults.

mod common;

use common::*;
use std::time::{Duration, Instant};
use warpforge_autotune::bench::{measure, Fault, Script};
use warpforge_autotune::{FakeBench, SamplePolicy, TuneCache, TuneOptions};

#[test]
fn picks_the_fastest_config_through_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    fake.noise = 0.02;
    for (i, c) in space.iter().enumerate() {
        fake.script(c.clone(), Script::time(10e-6 + i as f64 * 1e-6));
    }
    let fastest = space[0].clone();
    let report = tune_once(
        dir.path(),
        &mut fake,
        &k,
        &shape("vector_add", &[1000]),
        &kept(&space),
        quick(),
    );
    let (best, m) = report.best.clone().unwrap();
    assert_eq!(best, fastest);
    assert!((m.median - 10e-6).abs() < 0.3e-6, "{m:?}");
    assert_eq!(report.timed, 9);
    assert_eq!((report.reused, report.skipped, report.pruned), (0, 0, 0));
    assert!(!report.has_failures());
    let default_index = space.iter().position(|c| *c == k.default_config()).unwrap();
    let speedup = report.speedup().unwrap();
    let expected = (10.0 + default_index as f64) / 10.0;
    assert!((speedup - expected).abs() < 0.05, "{speedup} vs {expected}");
}

#[test]
fn adaptive_sampling_stops_early_when_quiet_and_at_the_cap_when_noisy() {
    let c = warpforge_autotune::Config::new();
    let policy = SamplePolicy {
        warmup: 2,
        min_samples: 5,
        max_samples: 30,
        target_spread: 0.01,
        max_time: Duration::from_secs(10),
    };
    let mut quiet = FakeBench::new();
    let m = measure(&mut quiet, &c, &policy).unwrap();
    assert_eq!(m.samples, 5);
    assert_eq!(quiet.runs(&c), 2 + 5, "warm-up runs are not samples");
    let mut noisy = FakeBench::new();
    noisy.noise = 0.2;
    let m = measure(&mut noisy, &c, &policy).unwrap();
    assert_eq!(m.samples, 30);
    assert!(m.spread > 0.01);
    assert!((m.median - 1e-3).abs() < 0.1e-3, "{m:?}");
}

#[test]
fn every_fault_is_recorded_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let default = k.default_config();
    let others: Vec<_> = space.iter().filter(|c| **c != default).cloned().collect();
    let faults = [
        (Fault::Crash, 0),
        (Fault::Error, 0),
        (Fault::Timeout, 3),
        (Fault::WrongOutput, 0),
    ];
    let mut fake = FakeBench::new();
    for (c, &(fault, at)) in others.iter().zip(&faults) {
        fake.script(c.clone(), Script::fault(fault, at));
    }
    fake.script(others[4].clone(), Script::time(1e-4));
    let problem = shape("vector_add", &[4096]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!(report.failed.len(), 4, "{:?}", report.failed);
    assert!(report.has_failures());
    let reason = |c| {
        report
            .failed
            .iter()
            .find(|(f, _)| f == c)
            .unwrap()
            .1
            .clone()
    };
    assert!(reason(&others[0]).starts_with("crashed"));
    assert!(reason(&others[1]).starts_with("error"));
    assert!(
        reason(&others[2]).starts_with("timed out"),
        "a fault during sampling"
    );
    assert!(reason(&others[3]).starts_with("wrong output"));
    assert_eq!(report.timed, 5);
    assert_ne!(
        report.best.as_ref().unwrap().0,
        others[3],
        "a wrong output never wins"
    );

    // A second run over the same cache runs nothing: all known, failures included.
    let mut again = FakeBench::new();
    let report = tune_once(dir.path(), &mut again, &k, &problem, &kept(&space), quick());
    assert_eq!(again.total_runs(), 0, "nothing is retried");
    assert!(again.prepared().is_empty(), "no buffers are even set up");
    assert_eq!((report.timed, report.reused), (0, 9));
    assert_eq!(report.failed.len(), 4);
    assert!(report.best.is_some());
}

#[test]
fn a_lost_device_stops_the_run_and_leaves_the_rest_for_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let default = k.default_config();
    let crasher = space.iter().find(|c| **c != default).unwrap().clone();
    let mut fake = FakeBench::new();
    fake.script(crasher.clone(), Script::fault(Fault::CrashLosesDevice, 0));
    let problem = shape("vector_add", &[4096]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!(report.failed.len(), 1);
    assert!(report.skipped > 0);
    assert_eq!(report.timed + report.failed.len() + report.skipped, 9);

    let mut next = FakeBench::new();
    let report2 = tune_once(dir.path(), &mut next, &k, &problem, &kept(&space), quick());
    assert_eq!(next.runs(&crasher), 0, "the crash is not retried");
    assert_eq!(report2.timed, report.skipped, "the skipped ones run now");
    assert_eq!(report2.skipped, 0);
}

#[test]
fn a_failing_reference_fails_the_problem_without_running_others() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    fake.script(k.default_config(), Script::fault(Fault::Crash, 0));
    let problem = shape("vector_add", &[64]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    let err = report.error.clone().unwrap();
    assert!(
        err.contains("reference") && err.contains("crashed"),
        "{err}"
    );
    assert_eq!(fake.total_runs(), 1);
    assert!(report.best.is_none() && report.speedup().is_none());
    let mut next = FakeBench::new();
    let report = tune_once(dir.path(), &mut next, &k, &problem, &kept(&space), quick());
    assert!(report.error.unwrap().contains("earlier run"));
    assert_eq!(next.total_runs(), 0);
}

#[test]
fn accumulating_outputs_are_restored_before_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    fake.accumulates = true;
    let problem = shape("vector_add", &[64]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert!(!report.has_failures(), "{:?}", report.failed);
    assert_eq!(fake.restores(), fake.total_runs(), "one restore per run");

    // The same fake without restores: every candidate's output drifts from the reference.
    struct NoRestore(FakeBench);
    impl warpforge_autotune::Bench for NoRestore {
        fn prepare(
            &mut self,
            s: &warpforge_autotune::ProblemShape,
        ) -> Result<(), warpforge_autotune::RunFailure> {
            self.0.prepare(s)
        }
        fn output(
            &mut self,
            c: &warpforge_autotune::Config,
        ) -> Result<Vec<f32>, warpforge_autotune::RunFailure> {
            self.0.output(c)
        }
        fn sample(
            &mut self,
            c: &warpforge_autotune::Config,
        ) -> Result<f64, warpforge_autotune::RunFailure> {
            self.0.sample(c)
        }
        fn accumulates(&self) -> bool {
            false
        }
        fn restore(&mut self) -> Result<(), warpforge_autotune::RunFailure> {
            self.0.restore()
        }
        fn tolerance(&self) -> warpforge_autotune::bench::Tolerance {
            self.0.tolerance()
        }
        fn healthy(&self) -> bool {
            self.0.healthy()
        }
    }
    let mut fake = FakeBench::new();
    fake.accumulates = true;
    let mut broken = NoRestore(fake);
    let dir = tempfile::tempdir().unwrap();
    let report = tune_once(
        dir.path(),
        &mut broken,
        &k,
        &problem,
        &kept(&space),
        quick(),
    );
    assert_eq!(
        report.failed.len(),
        9,
        "every run drifts from the reference, the default's own second run included"
    );
}

#[test]
fn the_budget_stops_new_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    let options = TuneOptions {
        deadline: Some(Instant::now()),
        ..quick()
    };
    let problem = shape("vector_add", &[64]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), options);
    assert_eq!(fake.total_runs(), 0);
    assert_eq!(report.skipped, 9);
    assert!(!report.has_failures());
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert!(cache.entries().is_empty(), "nothing skipped is recorded");
}

#[test]
fn large_spaces_go_through_the_strategy() {
    use warpforge_autotune::strategy::{SearchStrategy, Trial};
    use warpforge_autotune::Config;
    /// Times the first two pending candidates once, then stops.
    struct FirstTwo(u32);
    impl SearchStrategy for FirstTwo {
        fn name(&self) -> &str {
            "first-two"
        }
        fn propose(&mut self, _: &[Config], trials: &[Trial]) -> Vec<usize> {
            self.0 += 1;
            if self.0 > 1 {
                return vec![0, 1]; // already measured: ends the search
            }
            (0..trials.len())
                .filter(|&i| trials[i] == Trial::Pending)
                .take(2)
                .collect()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let mut space = gemm.space();
    space.extend(gemm.space()); // 104 > 64: not exhaustive
    let mut fake = FakeBench::new();
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let mut strategy = FirstTwo(0);
    let report = warpforge_autotune::Tuner::new(&mut fake, &mut cache, quick())
        .tune(
            &gemm,
            &shape("gemm", &[64, 64, 64]),
            &kept(&space),
            &mut strategy,
        )
        .unwrap();
    assert_eq!(report.timed, 2);
    assert_eq!(strategy.0, 2);
    assert!(report.skipped > 50);
}

#[test]
fn another_devices_cache_seeds_the_search_and_the_report_says_so() {
    use warpforge_autotune::cache::{config_text, Outcome, ResultRecord};
    use warpforge_autotune::search::StrategyKind;
    use warpforge_autotune::strategy::Guided;
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let problem = shape("gemm", &[64, 64, 64]);
    let mut space = gemm.space();
    // The other GPU timed five configs of the same problem.
    let other = warpforge_autotune::DeviceKey {
        name: "NVIDIA Other GPU".into(),
        ..device()
    };
    let mut cache = TuneCache::open(dir.path(), &other).unwrap();
    let key = gemm.entry_key(&problem.dims).unwrap();
    for (i, c) in space.iter().take(5).enumerate() {
        let outcome = Outcome::Measured {
            median_ns: 1000.0 + i as f64,
            spread: 0.0,
            samples: 5,
        };
        let record = ResultRecord {
            config: config_text(c),
            config_hash: gemm.config_hash(c).unwrap(),
            outcome,
        };
        cache.record(&key, &problem.dims, record);
    }
    cache.save().unwrap();
    space.extend(gemm.space()); // 104 > 64: searched, not exhaustive
    let mut fake = FakeBench::new();
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let mut options = quick();
    options.deadline = Some(Instant::now() + Duration::from_millis(1));
    let mut strategy = Guided::new(StrategyKind::Surrogate, 0);
    let report = warpforge_autotune::Tuner::new(&mut fake, &mut cache, options)
        .tune(&gemm, &problem, &kept(&space), &mut strategy)
        .unwrap();
    let transfer = report.transfer.expect("the other GPU's results were used");
    assert!(
        transfer.contains("1 other device(s) (NVIDIA Other GPU)"),
        "{transfer}"
    );
}

#[test]
fn the_strategy_is_given_each_candidates_compile_statistics() {
    use std::collections::HashMap;
    use warpforge_autotune::search::{Resource, StrategyKind};
    use warpforge_autotune::strategy::{Guided, SearchStrategy, Trial};
    use warpforge_autotune::Config;
    /// Keeps the statistics it is offered and the space it is asked about; times nothing.
    #[derive(Default)]
    struct Recorder {
        stats: Vec<Resource>,
        space: Vec<Config>,
    }
    impl SearchStrategy for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn propose(&mut self, space: &[Config], _: &[Trial]) -> Vec<usize> {
            self.space = space.to_vec();
            Vec::new()
        }
        fn use_compile_stats(&mut self, stats: Vec<Resource>) -> Option<String> {
            self.stats = stats;
            None
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let configs = gemm.space();
    let mut space = configs.clone();
    space.extend(configs.iter().cloned()); // > 64 candidates: searched, not exhaustive
    let mut pruning = kept(&space);
    // Each config's registers: 40 plus its index in the kernel's space.
    let registers: HashMap<Config, u32> = (0..configs.len())
        .map(|i| (configs[i].clone(), 40 + i as u32))
        .collect();
    for c in &mut pruning.kept {
        c.resources.registers = registers[&c.config];
    }
    let mut fake = FakeBench::new();
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let mut recorder = Recorder::default();
    warpforge_autotune::Tuner::new(&mut fake, &mut cache, quick())
        .tune(
            &gemm,
            &shape("gemm", &[64, 64, 64]),
            &pruning,
            &mut recorder,
        )
        .unwrap();
    let names: Vec<&str> = recorder.stats.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "num_regs",
            "shared_bytes",
            "threads",
            "occupancy",
            "spill_bytes"
        ]
    );
    assert_eq!(recorder.stats[0].values.len(), recorder.space.len());
    for (c, &regs) in recorder.space.iter().zip(&recorder.stats[0].values) {
        assert_eq!(regs, f64::from(registers[c]), "{c:?}");
    }
    // The surrogate takes them (and says so); random sampling has no model to give them to.
    let stats = recorder.stats.clone();
    let said = Guided::new(StrategyKind::Surrogate, 1).use_compile_stats(stats.clone());
    assert!(said.unwrap().contains("num_regs, shared_bytes"));
    assert!(Guided::new(StrategyKind::Random, 1)
        .use_compile_stats(stats)
        .is_none());
}
