//! Search strategies replayed on brute-forced GPU tuning spaces (`shared/tuning-spaces`, see
//! `warpforge_autotune::replay::tuning_spaces_dir`), and on a small synthetic space.
//!
//! The space files are required in CI (`CI` set): missing files fail the tests there. Elsewhere
//! the tests that need them print why they skip.

use std::collections::HashSet;
use std::path::PathBuf;

use warpforge_autotune::replay::{
    benchmark, evals_to_target, leave_one_space_out, random_median, space_files, tuning_spaces_dir,
    BenchOptions, ReplaySpace, SPACES_ENV, TARGETS,
};
use warpforge_autotune::search::{
    search, History, Outcome, SearchSpace, StrategyKind, SurrogateSettings,
};

/// The brute-forced space files, or None (after saying why) when they are absent outside CI.
fn space_dir() -> Option<PathBuf> {
    let dir = tuning_spaces_dir();
    let found = space_files(&dir).map(|f| !f.is_empty()).unwrap_or(false);
    if found {
        return Some(dir);
    }
    let why = format!(
        "no tuning spaces in {} (clone `shared/` beside the repository or set {SPACES_ENV})",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
    None
}

fn load(dir: &std::path::Path, file: &str) -> ReplaySpace {
    let path = dir.join(file);
    ReplaySpace::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A synthetic cache: 3 parameters, a constraint (configs missing from the cache), failures,
/// and one optimum.
fn synthetic() -> ReplaySpace {
    let mut entries = Vec::new();
    for a in [1, 2, 4, 8, 16, 32i32] {
        for b in 0..5i32 {
            for c in [0, 1, 2, 3] {
                if a * (b + 1) > 64 {
                    continue; // excluded by the kernel's constraints: not in the cache
                }
                let time = if (a + b + c) % 7 == 0 {
                    "\"CompilationFailedConfig\"".to_string()
                } else {
                    let t = 1.0 + ((a as f64).log2() - 3.0).powi(2) + (b - 2).pow(2) as f64;
                    format!("{}", t + 0.3 * c as f64)
                };
                entries.push(format!(
                    "\"{a},{b},{c}\": {{\"a\": {a}, \"b\": {b}, \"c\": {c}, \"time\": {time}, \"times\": [1, 2]}}"
                ));
            }
        }
    }
    let text = format!(
        "{{\"tune_params_keys\": [\"a\", \"b\", \"c\"], \"tune_params\": {{\"a\": [1, 2, 4, 8, 16, 32], \
         \"b\": [0, 1, 2, 3, 4], \"c\": [0, 1, 2, 3]}}, \"objective\": \"time\", \"cache\": {{{}}}}}",
        entries.join(", ")
    );
    ReplaySpace::from_json(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a strategy until it has nothing left; checks it never repeats and covers the space.
fn exhaust(space: &ReplaySpace, kind: StrategyKind, seed: u64) -> History {
    let mut strategy = kind.build(seed);
    let history = search(
        space.space(),
        strategy.as_mut(),
        |id| space.evaluate(id),
        |_| false,
    );
    let ids: HashSet<usize> = history.trials().iter().map(|t| t.0).collect();
    assert_eq!(ids.len(), history.len(), "{kind} repeated a config");
    assert_eq!(history.len(), space.len(), "{kind} stopped before the end");
    history
}

#[test]
fn synthetic_space_loads() {
    let space = synthetic();
    // 6·5·4 = 120 listed, a·(b+1) > 64 excluded.
    let excluded = [1, 2, 4, 8, 16, 32]
        .iter()
        .map(|a| (0..5).filter(|b| a * (b + 1) > 64).count() * 4)
        .sum::<usize>();
    assert_eq!(space.len(), 120 - excluded);
    assert!(space.valid_count() < space.len(), "some configs fail");
    assert_eq!(space.best_time(), 1.0);
    let best = space
        .space()
        .id_of(&[3, 2, 0])
        .expect("a=8,b=2,c=0 is in the cache");
    assert_eq!(space.evaluate(best), Outcome::Time(1.0));
    assert_eq!(
        space.evaluate_point(&[5, 4, 0]),
        Outcome::Failed,
        "not in the cache"
    );
}

#[test]
fn every_strategy_exhausts_the_synthetic_space_without_repeats() {
    let space = synthetic();
    for kind in StrategyKind::ALL {
        for seed in 0..5 {
            let history = exhaust(&space, kind, seed);
            assert_eq!(history.best().map(|b| b.1), Some(space.best_time()));
            let failed = history.trials().iter().filter(|t| t.1 == Outcome::Failed);
            assert_eq!(failed.count(), space.len() - space.valid_count());
        }
    }
}

#[test]
fn strategies_are_deterministic_per_seed() {
    let space = synthetic();
    for kind in StrategyKind::ALL {
        let run = |seed| {
            let mut s = kind.build(seed);
            let h = search(
                space.space(),
                s.as_mut(),
                |id| space.evaluate(id),
                |h| h.len() == 30,
            );
            h.trials().iter().map(|t| t.0).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7), "{kind}");
        assert_ne!(run(7), run(8), "{kind}");
    }
}

#[test]
fn neighbours_repair_inadmissible_moves() {
    let space = synthetic();
    let space = space.space();
    // a=32, b=1, c=1: a·(b+1) = 64 is at the constraint's edge.
    let id = space.id_of(&[5, 1, 1]).unwrap();
    let mut got: Vec<Vec<u16>> = space
        .neighbours(id)
        .into_iter()
        .map(|n| space.point(n).to_vec())
        .collect();
    got.sort();
    let want: Vec<Vec<u16>> = vec![
        vec![4, 1, 1], // a down
        vec![4, 2, 1], // b up: 32·3 > 64, repaired by moving a down one step
        vec![5, 0, 1], // b down
        vec![5, 1, 0], // c down
        vec![5, 1, 2], // c up (a has no value above 32)
    ];
    assert_eq!(got, want);
    assert_eq!(
        space.moves(id).len(),
        5 + 4 + 3,
        "every other value of each parameter"
    );
}

#[test]
fn search_space_from_a_kernel_tune_space() {
    use warpforge_dsl::space::{Constraint, TuneParam, TuneSpace};
    fn fits(c: &warpforge_dsl::space::Config) -> bool {
        c.get("BLOCK").unwrap() * c.get("TILE").unwrap() <= 512
    }
    let tune = TuneSpace {
        params: vec![
            TuneParam {
                name: "BLOCK".into(),
                values: vec![64, 128, 256],
                default: 128,
            },
            TuneParam {
                name: "TILE".into(),
                values: vec![1, 2, 4],
                default: 1,
            },
        ],
        constraints: vec![Constraint {
            text: "BLOCK * TILE <= 512".into(),
            check: fits,
        }],
    };
    let space = SearchSpace::from_tune_space(&tune).unwrap();
    assert_eq!(space.len(), 8);
    let id = space.id_of(&[2, 1]).expect("256·2 fits");
    assert_eq!(space.config(id).to_string(), "BLOCK=256,TILE=2");
    assert_eq!(space.id_of(&[2, 2]), None, "256·4 is excluded");
}

#[test]
fn unknown_strategy_names_are_errors() {
    assert_eq!("surrogate".parse(), Ok(StrategyKind::Surrogate));
    let err = "annealing".parse::<StrategyKind>().unwrap_err();
    assert!(
        err.to_string().contains("random, local, surrogate or gp"),
        "{err}"
    );
}

#[test]
fn bad_cache_files_are_clear_errors() {
    let not_json = ReplaySpace::from_json("{").unwrap_err().to_string();
    assert!(
        not_json.contains("not a Kernel Tuner cache file"),
        "{not_json}"
    );
    let bad_key = r#"{"tune_params_keys": ["a"], "tune_params": {"a": [1, 2]},
        "cache": {"3": {"time": 1.0}}}"#;
    let err = ReplaySpace::from_json(bad_key).unwrap_err().to_string();
    assert!(err.contains("`3` is not a listed value of `a`"), "{err}");
    let all_failed = r#"{"tune_params_keys": ["a"], "tune_params": {"a": [1, 2]},
        "cache": {"1": {"time": "RuntimeFailedConfig"}}}"#;
    let err = ReplaySpace::from_json(all_failed).unwrap_err().to_string();
    assert!(err.contains("every config in the cache failed"), "{err}");
    let missing = ReplaySpace::load(std::path::Path::new("/nonexistent/x.json.gz"));
    assert!(missing.unwrap_err().to_string().contains("cannot read"));
}

#[test]
fn brute_forced_spaces_load() {
    let Some(dir) = space_dir() else { return };
    let files = space_files(&dir).unwrap();
    assert_eq!(files.len(), 7, "{files:?}");
    let a100 = load(&dir, "dedispersion/A100.json.gz");
    assert_eq!((a100.len(), a100.valid_count()), (11130, 11130));
    assert!((a100.best_time() - 68.1165759563446).abs() < 1e-9);
    assert_eq!(a100.space().params().len(), 8);
    let mi250x = load(&dir, "dedispersion/MI250X.json.gz");
    assert!((mi250x.best_time() - 49.5724800825119).abs() < 1e-9);
    let conv = load(&dir, "convolution/A4000.json.gz");
    assert_eq!((conv.len(), conv.valid_count()), (4362, 4201));
    assert!((conv.best_time() - 1.021171996369958).abs() < 1e-9);
    // 11 configs within 5% of the optimum: the convolution space's needle.
    let threshold = conv.threshold(0.95);
    let good = (0..conv.len())
        .filter(|&id| conv.evaluate(id).time().is_some_and(|t| t <= threshold))
        .count();
    assert_eq!(good, 11);
}

#[test]
fn every_strategy_finds_the_optimum_given_the_whole_budget() {
    let Some(dir) = space_dir() else { return };
    let conv = load(&dir, "convolution/A4000.json.gz");
    for kind in StrategyKind::ALL {
        let history = exhaust(&conv, kind, 1);
        assert_eq!(
            history.best().map(|b| b.1),
            Some(conv.best_time()),
            "{kind}"
        );
        // The same through the replay driver: reaching the optimum itself stays within budget.
        assert!(evals_to_target(&conv, kind, 1, 1.0) <= conv.len());
    }
}

#[test]
fn benchmark_reports_every_target_and_a_transfer_row_per_sibling_gpu() {
    let Some(dir) = space_dir() else { return };
    let files = vec![
        dir.join("dedispersion/A100.json.gz"),
        dir.join("dedispersion/A4000.json.gz"),
    ];
    let options = BenchOptions {
        runs: 6,
        budget: 200,
        ..BenchOptions::default()
    };
    let reports = benchmark(&files, options, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let names: Vec<&str> = r.strategies.iter().map(|s| s.strategy.as_str()).collect();
        assert_eq!(
            names,
            [
                "random",
                "local",
                "surrogate",
                "gp",
                "surrogate+transfer",
                "gp+transfer"
            ]
        );
        for s in &r.strategies {
            let targets: Vec<f64> = s.targets.iter().map(|t| t.target).collect();
            assert_eq!(targets, TARGETS);
            assert!(s.curve_area > 0.0 && s.curve_area <= 1.0, "{s:?}");
            for t in &s.targets {
                assert!(t.median <= t.p90 || t.p90.is_none(), "{t:?}");
                assert!((0.0..=1.0).contains(&t.missed));
            }
        }
        for s in &r.strategies[4..] {
            let transfer = s.prior.as_deref().unwrap_or("");
            assert!(transfer.contains("1 other device(s)"), "{transfer}");
        }
    }
    let json = serde_json::to_value(&reports[0]).unwrap();
    let mut keys: Vec<&String> = json["strategies"][0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "budget",
            "curve_area",
            "prior",
            "runs",
            "strategy",
            "targets"
        ]
    );
}

#[test]
fn leave_one_space_out_reports_each_space_with_a_choice_made_elsewhere() {
    let Some(dir) = space_dir() else { return };
    let files: Vec<PathBuf> = ["A100", "A4000", "MI250X"]
        .iter()
        .map(|gpu| dir.join(format!("dedispersion/{gpu}.json.gz")))
        .collect();
    let options = BenchOptions {
        runs: 4,
        budget: 150,
        targets: vec![0.95],
        ..BenchOptions::default()
    };
    let grid = [
        SurrogateSettings::default(),
        SurrogateSettings::new(0.0, 10),
    ];
    let mut heard = 0;
    let report = leave_one_space_out(&files, options.clone(), &grid, |_| heard += 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heard, grid.len(), "progress per setting");
    assert_eq!(
        (report.target, report.runs, report.rows.len()),
        (0.95, 4, 3)
    );
    for (row, file) in report.rows.iter().zip(&files) {
        assert_eq!(row.space, file.display().to_string());
        assert!(grid.contains(&row.chosen));
        if row.chosen == SurrogateSettings::default() {
            assert_eq!(row.held_out, row.shipped);
        }
        assert_eq!(row.held_out.target, 0.95);
    }
    // A grid without the shipped settings, and a single space, are refused.
    let without = leave_one_space_out(&files, options.clone(), &grid[1..], |_| {});
    assert!(without.unwrap_err().to_string().contains("shipped"));
    let alone = leave_one_space_out(&files[..1], options, &grid, |_| {});
    assert!(alone
        .unwrap_err()
        .to_string()
        .contains("at least two spaces"));
}

#[test]
fn targets_outside_the_unit_interval_are_refused() {
    let options = BenchOptions {
        targets: vec![0.95, 1.2],
        ..BenchOptions::default()
    };
    let err = benchmark(&[], options, |_| {}).unwrap_err().to_string();
    assert!(err.contains("target 1.2"), "{err}");
    let sorted = BenchOptions {
        targets: vec![0.99, 0.9, 0.99],
        ..BenchOptions::default()
    }
    .check()
    .unwrap();
    assert_eq!(sorted.targets, [0.9, 0.99]);
}

#[test]
fn random_median_is_exact() {
    let space = synthetic();
    // The synthetic space has exactly one optimum within 95%: random's median is the
    // smallest k with (N-k)/N <= 1/2.
    assert_eq!(space.hits(0.95), 1);
    assert_eq!(random_median(&space, 0.95), space.len().div_ceil(2));
    assert_eq!(random_median(&space, 0.0001), 1, "every config hits");
}

#[test]
fn resources_are_checked_and_unknown_values_filled() {
    use warpforge_autotune::search::{Resource, SearchParam, SpaceError};
    let rows = [
        [Some(32.0), None],
        [None, None],
        [Some(64.0), Some(1.0)],
        [Some(40.0), None],
    ];
    let resources = Resource::from_rows(["num_regs", "occupancy"], &rows);
    assert_eq!(resources.len(), 1, "occupancy is known for 1 of 4: dropped");
    assert_eq!(resources[0].name, "num_regs");
    assert_eq!(
        resources[0].values,
        [32.0, 40.0, 64.0, 40.0],
        "the median fills"
    );
    let params = vec![SearchParam {
        name: "a".into(),
        values: vec![1, 2, 3, 4],
    }];
    let points = (0..4u16).map(|i| vec![i].into_boxed_slice());
    let space = SearchSpace::new(params, points).unwrap();
    let space = space.with_resources(resources).unwrap();
    assert_eq!(space.resources()[0].values[2], 64.0);
    let short = Resource {
        name: "threads".into(),
        values: vec![1.0; 3],
    };
    let e = space.clone().with_resources(vec![short]).unwrap_err();
    assert_eq!(
        e,
        SpaceError::ResourceLength {
            name: "threads".into(),
            got: 3,
            want: 4
        }
    );
    let nan = Resource {
        name: "occupancy".into(),
        values: vec![0.5, f64::NAN, 1.0, 1.0],
    };
    let e = space.clone().with_resources(vec![nan]).unwrap_err();
    assert!(e.to_string().contains("config 1"), "{e}");
    assert!(space.without_resources().resources().is_empty());
}

/// A space whose time depends only on a compile statistic that its parameters do not show:
/// `num_regs` scrambles the two parameters' values, and the time is lowest where it is 100
/// (7 of the 1600 configs).
fn hidden_stat_space() -> String {
    let mut entries = Vec::new();
    for a in 0..40u64 {
        for b in 0..40u64 {
            let regs = (a * 7919 + b * 104729 + a * b * 31) % 160 + 20;
            let time = 1.0 + (regs as f64 - 100.0).abs() / 2.0;
            entries.push(format!(
                "\"{a},{b}\": {{\"time\": {time}, \"num_regs\": {regs}, \"threads\": 128}}"
            ));
        }
    }
    let values: Vec<String> = (0..40).map(|v| v.to_string()).collect();
    let values = values.join(", ");
    format!(
        "{{\"tune_params_keys\": [\"a\", \"b\"], \"tune_params\": {{\"a\": [{values}], \"b\": [{values}]}}, \
         \"cache\": {{{}}}}}",
        entries.join(", ")
    )
}

#[test]
fn compile_stats_in_a_file_become_model_features_and_a_benchmark_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hidden.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, hidden_stat_space().as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let space = ReplaySpace::load(&path).unwrap();
    let names: Vec<&str> = space
        .space()
        .resources()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["num_regs", "threads"],
        "threads is constant but kept"
    );
    let options = BenchOptions {
        runs: 10,
        budget: 300,
        transfer: false,
        only: ["surrogate", "surrogate+stats", "gp", "gp+stats"]
            .map(String::from)
            .to_vec(),
        targets: vec![0.95],
        ..BenchOptions::default()
    };
    let reports = benchmark(&[path], options, |_| {}).unwrap();
    let median = |label: &str| {
        let s = reports[0].strategies.iter().find(|s| s.strategy == label);
        s.unwrap().at(0.95).unwrap().median.unwrap_or(usize::MAX)
    };
    for model in ["surrogate", "gp"] {
        let (without, with) = (median(model), median(&format!("{model}+stats")));
        eprintln!("{model}: evaluations to 95%: {without} without the statistics, {with} with");
        assert!(
            with * 2 <= without,
            "{model} should find the fast register count: {with} with vs {without} without"
        );
    }
}
