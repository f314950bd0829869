//! T2½: the generated CUDA C of every library kernel, run on the CPU by the host harness
//! (`Device::host()`), against the interpreter on the same inputs, bit for bit; and the
//! whole library's default configs under the sanitized host build (ASan + UBSan on the
//! generated C).
//!
//! Configs: the default plus an even sample of 2 more for the first instance of each generic
//! source (`families()`), the default for the other instances (`WARPFORGE_HOST_CONFIGS=N`
//! samples N more everywhere). Each config costs one C++ compile (cached on disk).
//!
//! Where the interpreter's model is exact (everything but the inside of `mma`), the outputs
//! must be equal bit for bit. `mma.sync` leaves its accumulation order and rounding to the
//! hardware: both sides sum exact products in f64 and round once, the interpreter plainly,
//! the harness with compensation, so they may differ where the f64 sum is inexact — within
//! `MMA_BOUND` of the result's magnitude (relative, after rounding to the output type).
//!
//! Without a C++ compiler both tests say so and pass, unless `WARPFORGE_REQUIRE_NVRTC=1` (CI).

use warpforge::dsl::host::{HostError, HostOptions};
use warpforge::dsl::{Config, Device};
use warpforge::kernels::{families, LibraryKernel};

/// Relative difference allowed in kernels that use `mma.sync`, where the ISA leaves
/// accumulation unspecified: one unit in the last place of a bf16 output (2^-7), since an
/// f32 sum one ulp apart can round to neighbouring outputs.
const MMA_BOUND: f64 = 1.0 / 128.0;

fn host_device(options: HostOptions) -> Option<Device> {
    match Device::host_with(options) {
        Ok(d) => Some(d),
        Err(e @ HostError::NoCompiler { .. }) => {
            if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("WARPFORGE_REQUIRE_NVRTC=1 but the host backend is unavailable: {e}");
            }
            eprintln!("skipping the host backend tests: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn uses_mma(k: &LibraryKernel) -> bool {
    k.name.contains("gemm_tc") || k.name.contains("fp8_gemm")
}

/// The first element where `host` differs from `interp` beyond what the kernel allows.
fn first_difference(k: &LibraryKernel, interp: &[f32], host: &[f32]) -> Option<String> {
    if interp.len() != host.len() {
        return Some(format!("{} vs {} elements", interp.len(), host.len()));
    }
    let bound = if uses_mma(k) { MMA_BOUND } else { 0.0 };
    interp
        .iter()
        .zip(host)
        .enumerate()
        .find_map(|(i, (&a, &b))| {
            let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let close = bound > 0.0
                && ((a as f64) - (b as f64)).abs() <= bound * (a.abs().max(b.abs()) as f64);
            (!same && !close).then(|| {
                format!(
                "first differing index {i}: interpreter {a:e} ({:#010x}), host {b:e} ({:#010x})",
                a.to_bits(),
                b.to_bits()
            )
            })
        })
}

fn jobs() -> Vec<(LibraryKernel, Vec<Config>)> {
    let extra: usize = std::env::var("WARPFORGE_HOST_CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    for family in families() {
        for (i, k) in family.into_iter().enumerate() {
            let n = if i == 0 { extra.max(2) } else { extra };
            let mut configs = vec![k.default_config()];
            let sampled = if n == 0 {
                Vec::new()
            } else {
                k.sample_configs(n)
            };
            for c in sampled {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
            out.push((k, configs));
        }
    }
    out
}

/// Runs `work` over the jobs on two threads; the failures.
fn in_parallel(
    jobs: &[(LibraryKernel, Vec<Config>)],
    work: impl Fn(&LibraryKernel, &Config) -> Result<usize, String> + Sync,
) -> (usize, Vec<String>) {
    let workers = 2;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let work = &work;
                s.spawn(move || {
                    let (mut runs, mut bad) = (0, Vec::new());
                    for (k, configs) in jobs.iter().skip(w).step_by(workers) {
                        for config in configs {
                            match work(k, config) {
                                Ok(n) => runs += n,
                                Err(e) => bad.push(e),
                            }
                        }
                    }
                    (runs, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .fold((0, Vec::new()), |(r, mut b), (r2, b2)| {
                b.extend(b2);
                (r + r2, b)
            })
    })
}

#[test]
fn library_on_the_host_harness_matches_the_interpreter() {
    let Some(host) = host_device(HostOptions::default()) else {
        return;
    };
    let cpu = Device::cpu();
    let jobs = jobs();
    let configs: usize = jobs.iter().map(|(_, c)| c.len()).sum();
    let start = std::time::Instant::now();
    let (runs, failures) = in_parallel(&jobs, |k, config| {
        let mut runs = 0;
        for problem in (k.problems)() {
            let at = format!("{} {config} {}", k.name, problem.name);
            let want = (k.output)(&cpu, config, &problem)
                .map_err(|e| format!("{at}: interpreter: {e}"))?;
            let got =
                (k.output)(&host, config, &problem).map_err(|e| format!("{at}: host: {e}"))?;
            if let Some(diff) = first_difference(k, &want, &got) {
                return Err(format!("{at}: {diff}"));
            }
            runs += 1;
        }
        Ok(runs)
    });
    eprintln!(
        "host vs interpreter: {} kernels, {configs} configs, {runs} runs in {:.1} s",
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn library_default_configs_run_clean_under_asan_and_ubsan() {
    let Some(host) = host_device(HostOptions::sanitized()) else {
        return;
    };
    let jobs: Vec<(LibraryKernel, Vec<Config>)> = families()
        .into_iter()
        .flatten()
        .map(|k| {
            let c = k.default_config();
            (k, vec![c])
        })
        .collect();
    let start = std::time::Instant::now();
    let (runs, failures) = in_parallel(&jobs, |k, config| {
        let mut runs = 0;
        for problem in (k.problems)() {
            let report = k
                .check(&host, config, &problem)
                .map_err(|e| format!("{} {config} {}: {e}", k.name, problem.name))?;
            if !report.passed() {
                return Err(format!("{} {config}: {report}", k.name));
            }
            runs += 1;
        }
        Ok(runs)
    });
    eprintln!(
        "sanitized host build: {} kernels, {runs} runs in {:.1} s",
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
