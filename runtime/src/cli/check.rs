//! `warpforge check`: every config of each kernel's space on its problems, against the
//! host reference; and `warpforge gpu-check`: the GPU against the interpreter and the
//! reference. Both count outcomes with [`Tally`]: a kernel the GPU's arch cannot run is
//! skipped, and after a sticky fault the rest is "not run".

use super::config_for;
use super::outcome::{arch_skip, Outcome, Tally};
use anyhow::Result;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::check::{CheckReport, Problem};
use warpforge_kernels::Kernel;

/// Which configs `check` runs.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Every config of each kernel's space.
    Space,
    /// Each kernel's default config.
    Defaults,
    /// One config (`--config`), checked against each space.
    One(&'a str),
}

impl<'a> From<Option<&'a str>> for Scope<'a> {
    fn from(config: Option<&'a str>) -> Scope<'a> {
        config.map_or(Scope::Space, Scope::One)
    }
}

/// Where `check` reports: lines of text as each check ends, or (`--json`) one JSON document
/// at the end, with a record per check.
#[derive(Debug, Default)]
pub struct Log {
    /// `Some` in JSON mode: the records so far.
    records: Option<Vec<serde_json::Value>>,
}

impl Log {
    pub fn text() -> Log {
        Log { records: None }
    }

    pub fn json() -> Log {
        Log {
            records: Some(Vec::new()),
        }
    }

    /// A line of the text report (nothing in JSON mode, whose stdout is the document).
    fn line(&self, text: impl std::fmt::Display) {
        if self.records.is_none() {
            println!("{text}");
        }
    }

    fn record(
        &mut self,
        k: Kernel,
        config: &Config,
        problem: &str,
        outcome: &Outcome,
        report: Option<&CheckReport>,
    ) {
        let Some(records) = &mut self.records else {
            return;
        };
        let detail = match outcome {
            Outcome::Passed => None,
            Outcome::Failed(why) | Outcome::Skipped(why) | Outcome::NotRun(why) => Some(why),
        };
        records.push(serde_json::json!({
            "kernel": k.name(),
            "config": config.to_string(),
            "problem": problem,
            "status": outcome.kind(),
            "detail": detail,
            "max_abs_error": report.map(|r| r.max_abs_error),
            "max_rel_error": report.map(|r| r.max_rel_error),
            "tolerance": report.map(|r| r.tolerance),
        }));
    }

    /// The JSON document (JSON mode): the device, every check, the tally.
    fn finish(self, device: &Device, tally: &Tally) {
        if let Some(records) = self.records {
            let doc = serde_json::json!({
                "device": device.name(),
                "checks": records,
                "summary": tally.json(),
            });
            println!("{doc:#}");
        }
    }
}

pub fn run(device: &Device, kernels: &[Kernel], scope: Scope, log: Log) -> Result<ExitCode> {
    Ok(run_tally(device, kernels, scope, log)?.exit_code())
}

/// `check`'s work; returns the tally after printing it (as text or as JSON).
pub fn run_tally(device: &Device, kernels: &[Kernel], scope: Scope, mut log: Log) -> Result<Tally> {
    log.line(format_args!("checking on {}", device.name()));
    let mut tally = Tally::default();
    for &k in kernels {
        let configs = match scope {
            Scope::One(text) => vec![config_for(&k, Some(text))?],
            Scope::Defaults => vec![k.default_config()],
            Scope::Space => k.configs(),
        };
        let start = Instant::now();
        let problems = k.problems();
        log.line(format_args!(
            "{} ({} configs × {} problems)",
            k.name(),
            configs.len(),
            problems.len()
        ));
        if let Some(why) = arch_skip(device, k, &k.default_config()) {
            log.line(format_args!("  skip  every config: skipped ({why})"));
            let skipped = Outcome::Skipped(why);
            for config in &configs {
                for problem in &problems {
                    tally.add(&skipped);
                    log.record(k, config, &problem.name, &skipped, None);
                }
            }
            continue;
        }
        // Over the whole space, a config runs the problems laid out as it is (attention's
        // HEAD_DIM, an FP8 quantizer's G); a config given by hand, or a kernel's default,
        // runs every problem (the case sets the layout tunables from the problem).
        let whole_space = matches!(scope, Scope::Space);
        for config in &configs {
            for problem in problems
                .iter()
                .filter(|p| !whole_space || k.admits(config, p))
            {
                let (outcome, report) = check_one(device, k, config, problem, &log);
                tally.add(&outcome);
                log.record(k, config, &problem.name, &outcome, report.as_ref());
            }
        }
        log.line(format_args!(
            "  {} done in {:.2?}",
            k.name(),
            start.elapsed()
        ));
    }
    log.line(&tally);
    log.finish(device, &tally);
    Ok(tally)
}

/// One config on one problem on `device`, printed as it ends; the error report when the
/// kernel ran.
fn check_one(
    device: &Device,
    k: Kernel,
    config: &Config,
    problem: &Problem,
    log: &Log,
) -> (Outcome, Option<CheckReport>) {
    if let Some(lost) = device.context_lost() {
        let outcome = Outcome::of_error(&lost);
        log.line(format_args!(
            "  ----  {config:<40} {}: {}",
            problem.name,
            outcome.status()
        ));
        return (outcome, None);
    }
    match k.check(device, config, problem) {
        Ok(report) if report.passed() => {
            log.line(format_args!("  ok    {config:<40} {report}"));
            (Outcome::Passed, Some(report))
        }
        Ok(report) => {
            log.line(format_args!("  FAIL  {config:<40} {report}"));
            (Outcome::Failed(report.to_string()), Some(report))
        }
        Err(err) => {
            let outcome = Outcome::of_error(&err);
            let label = match outcome {
                Outcome::Skipped(_) => "skip ",
                Outcome::NotRun(_) => "---- ",
                _ => "ERROR",
            };
            log.line(format_args!(
                "  {label} {config:<40} {}: {err}",
                problem.name
            ));
            (outcome, None)
        }
    }
}

/// How much of the space gpu-check samples beyond each kernel's default.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    /// Configs per kernel besides the default (spread over the space).
    pub configs: usize,
    /// Wall-clock budget for the sampled configs of all kernels together; the defaults
    /// always run.
    pub budget: Duration,
}

/// One GPU check: a kernel, a config (default or sampled), a problem.
pub struct Job {
    pub kernel: Kernel,
    pub config: Config,
    pub sampled: bool,
    pub problem: Problem,
}

/// The jobs of gpu-check: every kernel's default config on each of its problems, then the
/// sampled configs (each on the kernel's first problem and its last, an edge shape).
pub fn gpu_jobs(kernels: &[Kernel], samples: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &kernel in kernels {
        for problem in kernel.problems() {
            jobs.push(Job {
                kernel,
                config: kernel.default_config(),
                sampled: false,
                problem,
            });
        }
    }
    for &kernel in kernels.iter().filter(|_| samples > 0) {
        let default = kernel.default_config();
        let problems = kernel.problems();
        let picked: Vec<&Problem> = match (problems.first(), problems.last()) {
            (Some(a), Some(b)) if a != b => vec![a, b],
            (Some(a), _) => vec![a],
            _ => Vec::new(),
        };
        for config in kernel.sample_configs(samples) {
            if config == default {
                continue;
            }
            for problem in &picked {
                if !kernel.admits(&config, problem) {
                    continue;
                }
                jobs.push(Job {
                    kernel,
                    config: config.clone(),
                    sampled: true,
                    problem: (*problem).clone(),
                });
            }
        }
    }
    jobs
}

/// Runs `jobs` in order with `run_one`, stopping GPU work at the first lost context
/// (`lost` says whether the device still works) and sampled jobs once `budget` is spent.
/// Returns each job's outcome and report entry.
pub fn run_jobs(
    jobs: &[Job],
    budget: Duration,
    lost: &dyn Fn() -> Option<warpforge_dsl::backend::DeviceError>,
    run_one: &mut dyn FnMut(&Job) -> (Outcome, serde_json::Value),
) -> Vec<(Outcome, serde_json::Value)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut sampling_started: Option<Instant> = None;
    for job in jobs {
        let base = serde_json::json!({
            "kernel": job.kernel.name(), "config": job.config.to_string(),
            "problem": job.problem.name, "sampled": job.sampled,
        });
        if let Some(err) = lost() {
            out.push(finish(base, Outcome::of_error(&err)));
            continue;
        }
        if job.sampled {
            // The first sampled job always runs; later ones while the budget lasts.
            let started = *sampling_started.get_or_insert_with(Instant::now);
            if started.elapsed() > budget && jobs_sampled_before(&out) {
                let why = format!("sampling budget of {budget:?} spent");
                out.push(finish(base, Outcome::Skipped(why)));
                continue;
            }
        }
        let (outcome, mut entry) = run_one(job);
        if let (Some(entry), Some(base)) = (entry.as_object_mut(), base.as_object()) {
            for (key, value) in base {
                entry.entry(key.clone()).or_insert(value.clone());
            }
        }
        out.push(finish(entry, outcome));
    }
    out
}

/// Whether a sampled job already ended (run or skipped).
fn jobs_sampled_before(out: &[(Outcome, serde_json::Value)]) -> bool {
    out.iter().any(|(_, e)| e["sampled"] == true)
}

/// The entry with its `status` and `passed` fields.
fn finish(mut entry: serde_json::Value, outcome: Outcome) -> (Outcome, serde_json::Value) {
    entry["status"] = outcome.status().into();
    entry["passed"] = (outcome == Outcome::Passed).into();
    if let Outcome::Failed(why) = &outcome {
        if entry.get("error").is_none() {
            entry["error"] = why.clone().into();
        }
    }
    (outcome, entry)
}

/// One job on the GPU and on the interpreter, both compared with the host reference and
/// with each other.
fn gpu_job(gpu: &Device, cpu: &Device, job: &Job) -> (Outcome, serde_json::Value) {
    let (k, config, problem) = (job.kernel, &job.config, &job.problem);
    if let Some(why) = arch_skip(gpu, k, config) {
        println!("  skip {} {:<12} skipped ({why})", k.name(), problem.name);
        return (Outcome::Skipped(why), serde_json::json!({}));
    }
    let start = Instant::now();
    let on_gpu = k.output(gpu, config, problem);
    let gpu_seconds = start.elapsed().as_secs_f64();
    let mut entry = serde_json::json!({ "gpu_seconds_including_transfers": gpu_seconds });
    let g = match on_gpu {
        Ok(g) => g,
        Err(e) => {
            let outcome = Outcome::of_error(&e);
            println!(
                "  {} {} {config} {}: {e}",
                label(&outcome),
                k.name(),
                problem.name
            );
            entry["error"] = format!("gpu: {e}").into();
            return (outcome, entry);
        }
    };
    let c = match k.output(cpu, config, problem) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "  ERROR {} {config} {}: interpreter: {e}",
                k.name(),
                problem.name
            );
            entry["error"] = format!("interpreter: {e}").into();
            return (Outcome::Failed(format!("interpreter: {e}")), entry);
        }
    };
    let tolerance = k.tolerance(problem);
    let compare = warpforge_kernels::check::compare;
    let vs_ref = compare(problem, &g, &k.expected(problem), tolerance);
    let vs_interp = compare(problem, &g, &c, tolerance);
    let ok = vs_ref.passed() && vs_interp.passed();
    println!(
        "  {} {} {:<12} {config} vs reference: {:.2e}, vs interpreter: {:.2e}",
        if ok { "ok  " } else { "FAIL" },
        k.name(),
        problem.name,
        vs_ref.max_abs_error,
        vs_interp.max_abs_error
    );
    entry["max_abs_error_vs_reference"] = vs_ref.max_abs_error.into();
    entry["max_abs_error_vs_interpreter"] = vs_interp.max_abs_error.into();
    let outcome = if ok {
        Outcome::Passed
    } else {
        Outcome::Failed(format!(
            "vs reference: {vs_ref}; vs interpreter: {vs_interp}"
        ))
    };
    (outcome, entry)
}

fn label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "ok  ",
        Outcome::Failed(_) => "ERROR",
        Outcome::Skipped(_) => "skip",
        Outcome::NotRun(_) => "----",
    }
}

/// Extra JSON to merge into the gpu-check report.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Written by scripts/gpu-check (device clocks, driver, commit): merged as `meta`.
    pub meta_json: Option<std::path::PathBuf>,
}

/// `warpforge gpu-check`: each kernel's default config on each problem and a sample of
/// other configs, on the GPU and on the interpreter; then the perf section. Writes a JSON
/// report; returns failure when any check that could run failed.
pub fn gpu_check(
    gpu: &Device,
    kernels: &[Kernel],
    json_path: &std::path::Path,
    sampling: Sampling,
    extras: &Extras,
    perf: Option<&crate::perf::PerfOptions>,
) -> Result<ExitCode> {
    let cpu = Device::cpu();
    let jobs = gpu_jobs(kernels, sampling.configs);
    println!(
        "gpu-check: {} checks ({} sampled configs, budget {:?})",
        jobs.len(),
        jobs.iter().filter(|j| j.sampled).count(),
        sampling.budget
    );
    let results = run_jobs(&jobs, sampling.budget, &|| gpu.context_lost(), &mut |job| {
        gpu_job(gpu, &cpu, job)
    });
    let mut tally = Tally::default();
    results.iter().for_each(|(o, _)| tally.add(o));
    let first_fault = results.iter().find_map(|(_, e)| {
        let error = e.get("error")?.as_str()?;
        error.contains("CUDA fault").then(|| error.to_string())
    });
    let entries: Vec<_> = results.into_iter().map(|(_, e)| e).collect();
    let mut report = serde_json::json!({
        "device": gpu.name(),
        "arch": gpu.arch().map(|a| a.to_string()),
        "nvrtc": nvrtc_json(),
        "meta": crate::perf::torch_section(extras.meta_json.as_deref()),
        "failures": tally.failed,
        "tally": tally.json(),
        "first_fault": first_fault,
        "results": entries,
    });
    // Written before the perf section too, so a crash there keeps the correctness results.
    std::fs::write(json_path, serde_json::to_string_pretty(&report)?)?;
    if let Some(options) = perf {
        report["perf"] = match gpu.context_lost() {
            Some(lost) => Outcome::of_error(&lost).status().into(),
            None => crate::perf::run(gpu, options),
        };
    }
    std::fs::write(json_path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "gpu-check: {tally}; report written to {}",
        json_path.display()
    );
    Ok(tally.exit_code())
}

/// The NVRTC in use: version and where library and headers came from.
fn nvrtc_json() -> serde_json::Value {
    use warpforge_dsl::nvrtc;
    match (nvrtc::version(), nvrtc::toolkit()) {
        (Ok((major, minor)), Ok(t)) => serde_json::json!({
            "version": format!("{major}.{minor}"), "lib": t.lib.display().to_string(),
            "include": t.include.display().to_string(), "source": t.source,
        }),
        (Err(e), _) | (_, Err(e)) => format!("not available ({e})").into(),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
