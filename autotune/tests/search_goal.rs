//! The search's goals on the shared brute-forced spaces (`shared/tuning-spaces` and, where the
//! search meets the goal there too, `shared/tuning-spaces-next`), from one benchmark run shared
//! by the tests of this file:
//!
//! - the GP (`gp`, the default) reaches 95% of the optimum in a median ≤ 50 and a p90 ≤ 150
//!   evaluations on every space of both folders, with the same constants on all of them; the
//!   forest surrogate does on every space of `tuning-spaces` (not on the CLBlast GEMM of
//!   `tuning-spaces-next`: see the table this prints);
//! - no strategy is worse than random sampling (its exact median) on any space of either
//!   folder;
//! - with the same kernel's results on at least two other GPUs, the GP and the surrogate need a
//!   median ≤ 20 evaluations (leave-one-GPU-out: the measured GPU's own file is never its
//!   prior).
//!
//! The space files are required in CI (`CI` set); elsewhere the tests print why they skip.
//! `WARPFORGE_REPLAY_RUNS` sets the seeded runs per space and strategy (default 30).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use warpforge_autotune::replay::{
    benchmark, space_files, tuning_spaces_dir, BenchOptions, SpaceReport, StrategyReport,
    SPACES_ENV,
};

/// The folders benchmarked: the goal's, and the spaces it does not cover yet.
fn bench_dirs() -> Vec<PathBuf> {
    let dir = tuning_spaces_dir();
    let next = dir.parent().map(|p| p.join("tuning-spaces-next"));
    [Some(dir), next].into_iter().flatten().collect()
}

/// Whether the forest surrogate's goal covers the space at `path`: those of `tuning-spaces`.
fn in_surrogate_goal(path: &str) -> bool {
    Path::new(path).starts_with(tuning_spaces_dir())
}

fn runs() -> usize {
    std::env::var("WARPFORGE_REPLAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
}

/// The benchmark over every goal space, computed once; None (after saying why) when the files
/// are absent outside CI.
fn reports() -> Option<&'static [SpaceReport]> {
    static REPORTS: OnceLock<Option<Vec<SpaceReport>>> = OnceLock::new();
    REPORTS
        .get_or_init(|| {
            let mut files = Vec::new();
            for dir in bench_dirs() {
                files.extend(space_files(&dir).unwrap_or_default());
            }
            if files.is_empty() {
                let why = format!(
                    "no tuning spaces in {} (clone `shared/` beside the repository or set {SPACES_ENV})",
                    tuning_spaces_dir().display()
                );
                assert!(std::env::var_os("CI").is_none(), "{why}");
                eprintln!("skipping: {why}");
                return None;
            }
            // 400 evaluations: past every goal's p90, and runs stop there or at 99%.
            let options = BenchOptions {
                runs: runs(),
                budget: 400,
                ..BenchOptions::default()
            };
            let start = Instant::now();
            let reports = benchmark(&files, options, |_| {}).unwrap_or_else(|e| panic!("{e}"));
            print_table(&reports);
            println!("({:.1} s)", start.elapsed().as_secs_f64());
            Some(reports)
        })
        .as_deref()
}

fn print_table(reports: &[SpaceReport]) {
    println!(
        "{} seeded runs per space and strategy; evaluations to 95% of the optimum",
        runs()
    );
    println!(
        "{:48} {:20} {:>6} {:>6} {:>8}",
        "space", "strategy", "median", "p90", "random"
    );
    for r in reports {
        for s in &r.strategies {
            let t = s.at(0.95).expect("95% is reported");
            let show = |e: Option<usize>| e.map_or(">max".into(), |e| e.to_string());
            println!(
                "{:48} {:20} {:>6} {:>6} {:>8}",
                r.space,
                s.strategy,
                show(t.median),
                show(t.p90),
                r.random_median_95
            );
        }
    }
}

fn strategy<'a>(r: &'a SpaceReport, label: &str) -> &'a StrategyReport {
    r.strategies
        .iter()
        .find(|s| s.strategy == label)
        .unwrap_or_else(|| panic!("{}: no {label} row", r.space))
}

/// The spaces of `reports` where `label` misses the goal (median ≤ 50, p90 ≤ 150 to 95%).
fn goal_misses(reports: &[&SpaceReport], label: &str) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| {
            let t = strategy(r, label).at(0.95)?;
            let ok = t.median.is_some_and(|m| m <= 50) && t.p90.is_some_and(|p| p <= 150);
            (!ok).then(|| format!("{}: median {:?} p90 {:?}", r.space, t.median, t.p90))
        })
        .collect()
}

#[test]
fn gp_reaches_95_percent_of_the_optimum_quickly_on_every_space() {
    let Some(reports) = reports() else { return };
    let all: Vec<&SpaceReport> = reports.iter().collect();
    assert!(
        all.len() >= 9,
        "the goal covers every space of tuning-spaces and tuning-spaces-next"
    );
    let misses = goal_misses(&all, "gp");
    assert!(
        misses.is_empty(),
        "goal (median ≤ 50, p90 ≤ 150) missed: {misses:?}"
    );
}

#[test]
fn surrogate_reaches_95_percent_of_the_optimum_quickly_on_tuning_spaces() {
    let Some(reports) = reports() else { return };
    let goal: Vec<&SpaceReport> = reports
        .iter()
        .filter(|r| in_surrogate_goal(&r.space))
        .collect();
    assert!(
        goal.len() >= 7,
        "the goal covers every space of tuning-spaces"
    );
    let misses = goal_misses(&goal, "surrogate");
    assert!(
        misses.is_empty(),
        "goal (median ≤ 50, p90 ≤ 150) missed: {misses:?}"
    );
}

/// Every strategy reaches 95% within random sampling's exact median evaluations in at least
/// half its runs, less two standard errors of the sampling noise of that share (a strategy
/// that is random sampling itself would otherwise fail half the time by chance).
#[test]
fn no_strategy_is_worse_than_random_on_any_space() {
    let Some(reports) = reports() else { return };
    let mut worse = Vec::new();
    for r in reports {
        // Random sampling is the reference itself.
        for s in r.strategies.iter().filter(|s| s.strategy != "random") {
            let Some(t) = s.at(0.95) else { continue };
            let share = t.within_random;
            let slack = 2.0 * (0.25 / s.runs as f64).sqrt();
            if share < 0.5 - slack {
                worse.push(format!(
                    "{} {}: median {:?} vs random's {} ({:.0}% of runs within it)",
                    r.space,
                    s.strategy,
                    t.median,
                    t.random_median,
                    100.0 * share
                ));
            }
        }
    }
    assert!(worse.is_empty(), "worse than random: {worse:?}");
}

#[test]
fn transfer_from_two_or_more_gpus_needs_at_most_20_evaluations() {
    let Some(reports) = reports() else { return };
    let mut checked = 0;
    let mut misses = Vec::new();
    let transfer_rows = reports.iter().flat_map(|r| {
        let rows = r
            .strategies
            .iter()
            .filter(|s| s.strategy.ends_with("+transfer"));
        rows.map(move |s| (r, s))
    });
    for (r, s) in transfer_rows {
        let prior = s.prior.as_deref().expect("a transfer row names its prior");
        if prior.contains("from 1 other") {
            continue; // one source: outside this goal
        }
        checked += 1;
        let median = s.at(0.95).and_then(|t| t.median);
        if median.is_none_or(|m| m > 20) {
            misses.push(format!(
                "{} {}: median {median:?} ({prior})",
                r.space, s.strategy
            ));
        }
    }
    assert!(
        checked >= 12,
        "the dedispersion files give six transfer rows per strategy"
    );
    assert!(
        misses.is_empty(),
        "transfer goal (median ≤ 20) missed: {misses:?}"
    );
}
