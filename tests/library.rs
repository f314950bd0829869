//! T1: every library kernel on the CPU interpreter against its host reference, at small and
//! edge shapes: over its whole tunable space for the first instance of each generic source,
//! and over the default plus an even sample of 16 configs for its other instances (they
//! differ only in element types, so the sample covers the typed code paths).

use warpforge::dsl::Config;
use warpforge::dsl::Device;
use warpforge::kernels::{families, find, Kernel};

/// Checks `configs` of `k` on every problem each admits (a config whose layout tunable,
/// e.g. attention's HEAD_DIM, differs from the problem's is not one of its candidates);
/// returns the number of runs.
fn check_configs(k: &Kernel, configs: &[Config]) -> Result<usize, String> {
    let device = Device::cpu();
    let mut runs = 0;
    for config in configs {
        for problem in k.problems().iter().filter(|p| k.admits(config, p)) {
            let report = k
                .check(&device, config, problem)
                .map_err(|e| format!("{} {config} {}: {e}", k.name(), problem.name))?;
            if !report.passed() {
                return Err(format!("{} {config}: {report}", k.name()));
            }
            runs += 1;
        }
    }
    Ok(runs)
}

#[test]
fn every_library_kernel_passes_over_its_space() {
    let mut jobs: Vec<(Kernel, Vec<Config>)> = Vec::new();
    for family in families() {
        for (i, k) in family.into_iter().enumerate() {
            let configs = if i == 0 {
                k.configs()
            } else {
                k.sample_configs(16)
            };
            assert!(!configs.is_empty(), "{} has an empty space", k.name());
            jobs.push((k, configs));
        }
    }
    // Longest first, spread over the cores.
    jobs.sort_by_key(|(_, c)| std::cmp::Reverse(c.len()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let jobs = &jobs;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (k, configs) in jobs.iter().skip(w).step_by(workers) {
                        match check_configs(k, configs) {
                            Ok(runs) => eprintln!(
                                "{}: {} configs, {runs} runs passed",
                                k.name(),
                                configs.len()
                            ),
                            Err(e) => bad.push(e),
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} kernels failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn generic_instances_are_grouped_by_their_source() {
    let families = families();
    let gemm_nt = families
        .iter()
        .find(|f| f[0].name().starts_with("gemm_tc_nt_"))
        .expect("the tensor-core GEMM family");
    assert_eq!(gemm_nt.len(), 6, "f16/bf16 in × f32/f16/bf16 out");
    let one = find("vector_add").unwrap();
    assert!(families
        .iter()
        .any(|f| f.len() == 1 && f[0].name() == one.name()));
    let sample = find("gemm_tc_nt_bf16_f16").unwrap().sample_configs(16);
    assert!(sample.len() <= 18 && sample.len() >= 16, "{}", sample.len());
    assert!(sample.contains(&find("gemm_tc_nt_bf16_f16").unwrap().default_config()));
}

#[test]
fn a_broken_reference_would_be_caught() {
    // The check is not vacuous: perturb one expected value and it must fail.
    let k = find("vector_add").unwrap();
    let problem = k.problems().remove(2);
    let got = k
        .output(&Device::cpu(), &k.default_config(), &problem)
        .unwrap();
    let mut expected = k.expected(&problem);
    expected[3] += 1.0;
    let report = warpforge::kernels::check::compare(&problem, &got, &expected, 0.0);
    assert_eq!(report.first_bad.map(|b| b.0), Some(3));
}
