//! `warpforge check`: every config of each kernel's space on its problems, against the
//! host reference.

use super::config_for;
use anyhow::Result;
use std::process::ExitCode;
use std::time::Instant;
use warpforge_dsl::{Config, Device};
use warpforge_kernels::check::Problem;
use warpforge_kernels::Kernel;

pub fn run(device: &Device, kernels: &[Kernel], config: Option<&str>) -> Result<ExitCode> {
    println!("checking on {}", device.name());
    let mut failures = 0usize;
    let mut runs = 0usize;
    for k in kernels {
        let configs = match config {
            Some(text) => vec![config_for(k, Some(text))?],
            None => k.configs(),
        };
        let start = Instant::now();
        println!(
            "{} ({} configs × {} problems)",
            k.name(),
            configs.len(),
            k.problems().len()
        );
        // Over the whole space, a config runs the problems laid out as it is (attention's
        // HEAD_DIM, an FP8 quantizer's G); a config given by hand runs every problem (the
        // case sets the layout tunables from the problem).
        let admitted = |c: &Config, p: &Problem| config.is_some() || k.admits(c, p);
        for config in &configs {
            for problem in k.problems().into_iter().filter(|p| admitted(config, p)) {
                runs += 1;
                match k.check(device, config, &problem) {
                    Ok(report) if report.passed() => println!("  ok    {config:<40} {report}"),
                    Ok(report) => {
                        failures += 1;
                        println!("  FAIL  {config:<40} {report}");
                    }
                    Err(err) => {
                        failures += 1;
                        println!("  ERROR {config:<40} {}: {err}", problem.name);
                    }
                }
            }
        }
        println!("  {} done in {:.2?}", k.name(), start.elapsed());
    }
    println!("{} passed, {} failed", runs - failures, failures);
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `warpforge gpu-check`: each kernel's default config on each problem, on the GPU and on
/// the interpreter; both compared with the host reference and with each other. Writes a
/// JSON report; returns failure when any comparison fails.
pub fn gpu_check(
    gpu: &Device,
    kernels: &[Kernel],
    json_path: &std::path::Path,
    perf: Option<&crate::perf::PerfOptions>,
) -> Result<ExitCode> {
    let cpu = Device::cpu();
    let mut entries = Vec::new();
    let mut failures = 0usize;
    for k in kernels {
        let config = k.default_config();
        for problem in k.problems() {
            let start = Instant::now();
            let on_gpu = k.output(gpu, &config, &problem);
            let gpu_seconds = start.elapsed().as_secs_f64();
            let on_cpu = k.output(&cpu, &config, &problem);
            let expected = k.expected(&problem);
            let tolerance = k.tolerance(&problem);
            let mut entry = serde_json::json!({
                "kernel": k.name(), "config": config.to_string(), "problem": problem.name,
                "gpu_seconds_including_transfers": gpu_seconds,
            });
            match (on_gpu, on_cpu) {
                (Ok(g), Ok(c)) => {
                    let vs_ref =
                        warpforge_kernels::check::compare(&problem, &g, &expected, tolerance);
                    let vs_interp = warpforge_kernels::check::compare(&problem, &g, &c, tolerance);
                    let ok = vs_ref.passed() && vs_interp.passed();
                    failures += usize::from(!ok);
                    println!(
                        "  {} {} {:<12} vs reference: {:.2e}, vs interpreter: {:.2e}",
                        if ok { "ok  " } else { "FAIL" },
                        k.name(),
                        problem.name,
                        vs_ref.max_abs_error,
                        vs_interp.max_abs_error
                    );
                    entry["passed"] = ok.into();
                    entry["max_abs_error_vs_reference"] = vs_ref.max_abs_error.into();
                    entry["max_abs_error_vs_interpreter"] = vs_interp.max_abs_error.into();
                }
                (g, c) => {
                    failures += 1;
                    let error = g
                        .err()
                        .map(|e| format!("gpu: {e}"))
                        .or(c.err().map(|e| format!("interpreter: {e}")));
                    println!(
                        "  ERROR {} {}: {}",
                        k.name(),
                        problem.name,
                        error.clone().unwrap_or_default()
                    );
                    entry["passed"] = false.into();
                    entry["error"] = error.into();
                }
            }
            entries.push(entry);
        }
    }
    let mut report =
        serde_json::json!({ "device": gpu.name(), "failures": failures, "results": entries });
    // Written before the perf section too, so a crash there keeps the correctness results.
    std::fs::write(json_path, serde_json::to_string_pretty(&report)?)?;
    if let Some(options) = perf {
        report["perf"] = crate::perf::run(gpu, options);
    }
    std::fs::write(json_path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "{} failures; report written to {}",
        failures,
        json_path.display()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
