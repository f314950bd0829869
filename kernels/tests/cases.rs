//! The family-independent contract of every registered kernel's description, on the CPU
//! interpreter: two configs on one case agree under the kernel's config tolerance, a
//! kernel that accumulates in place gives the same output again after a restore, and the
//! problems a model implies have the kernel's rank.

use warpforge_dsl::{Config, Device};
use warpforge_kernels::check::{compare, Problem};
use warpforge_kernels::{library, Case, Kernel, ModelShape};

/// The default config and another one that admits `problem` (the default again where the
/// space has no other).
fn two_configs(k: Kernel, problem: &Problem) -> (Config, Config) {
    let default = k.default_config();
    let other = k
        .configs()
        .into_iter()
        .find(|c| *c != default && k.admits(c, problem))
        .unwrap_or_else(|| default.clone());
    (default, other)
}

/// A small problem with some substance: the second of the check problems (the first is
/// usually a single element).
fn small_problem(k: Kernel) -> Problem {
    let problems = k.problems();
    problems.get(1).unwrap_or(&problems[0]).clone()
}

/// Restores, launches `config` and returns the output.
fn run(case: &mut dyn Case, cpu: &Device, config: &Config) -> Vec<f32> {
    case.restore(cpu).unwrap();
    case.launch(cpu, config).unwrap();
    case.output(cpu, config).unwrap()
}

#[test]
fn two_configs_agree_and_restore_resets_in_place_state() {
    let cpu = Device::cpu();
    for k in library() {
        let problem = small_problem(k);
        let (a, b) = two_configs(k, &problem);
        let mut case = k.case(&cpu, &problem).unwrap();
        let first = run(case.as_mut(), &cpu, &a);
        let second = run(case.as_mut(), &cpu, &b);
        let tol = k.config_tolerance(&problem);
        for (i, (x, y)) in first.iter().zip(&second).enumerate() {
            let (x, y) = (*x as f64, *y as f64);
            assert!(
                x == y
                    || (x - y).abs() <= tol.abs + tol.rel * y.abs()
                    || (x.is_nan() && y.is_nan()),
                "{} {}: config {b} gives {y} at [{i}], the default {x}",
                k.name(),
                problem.name
            );
        }
        assert_eq!(first.len(), second.len(), "{}", k.name());
        let report = compare(
            &problem,
            &first,
            &k.expected(&problem),
            k.tolerance(&problem),
        );
        assert!(report.passed(), "{}: {report}", k.name());
        if case.accumulates() {
            case.restore(&cpu).unwrap();
            case.launch(&cpu, &a).unwrap();
            let again = run(case.as_mut(), &cpu, &a);
            assert_eq!(
                again,
                first,
                "{}: restore did not reset the state",
                k.name()
            );
        }
    }
}

#[test]
fn model_problems_have_the_kernels_rank_and_check_problems_too() {
    let model = ModelShape::llama3_8b();
    let mut with_model = 0;
    for k in library() {
        for p in k.problems() {
            assert!(p.dims.len() >= k.rank(), "{} {}", k.name(), p.name);
        }
        // Tuning shapes are positive (a check problem may use 0 as a code, e.g. the
        // dequantizer's per-tensor granularity).
        for p in k.model_problems(&model, &[1, 4096]) {
            k.validate(&p)
                .unwrap_or_else(|e| panic!("{} {}: {e}", k.name(), p.name));
            // The tuning cache keys a problem by at most 6 dims.
            assert!(k.tune_dims(&p).len() <= 6, "{} {}", k.name(), p.name);
        }
        with_model += usize::from(!k.model_problems(&model, &[1]).is_empty());
    }
    assert!(
        with_model >= 20,
        "only {with_model} kernels derive model problems"
    );
}

#[test]
fn row_group_configs_other_than_the_problems_g_are_not_candidates() {
    let k = warpforge_kernels::find("fp8_quantize_rows_bf16_e4m3").unwrap();
    let problem = Problem::new("t", vec![4, 256, 128]);
    let g = |v: i64| k.default_config().with("G", v);
    assert!(k.admits(&g(128), &problem));
    assert!(!k.admits(&g(32), &problem));
    let amax = warpforge_kernels::find("fp8_amax_f32").unwrap();
    assert!(amax.admits(&g(32), &Problem::new("t", vec![4])));
}
