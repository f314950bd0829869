//! `warpforge autotune`: tune the library's kernels on this machine's GPU for a model's
//! shapes, or, with `--dry-run`, list each kernel's space and its pruning per arch.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use warpforge_autotune::cache::cache_dir;
use warpforge_autotune::prune::prune_space;
use warpforge_autotune::shapes::{check_shape, load_shapes_checked, rank_of, DEFAULT_TOKENS};
use warpforge_autotune::strategy::strategy_by_name;
use warpforge_autotune::{
    probe, DeviceBench, ModelConfig, ProblemReport, ProblemShape, Progress, TuneCache, TuneKernel,
    TuneOptions, Tuner,
};
use warpforge_dsl::nvrtc::{self, Arch};
use warpforge_dsl::Device;
use warpforge_kernels::Kernel;

/// The archs `--dry-run` prunes for.
const DRY_RUN_ARCHS: [Arch; 3] = [Arch::SM80, Arch::SM89, Arch::SM90];

#[derive(clap::Args, Debug)]
pub struct AutotuneArgs {
    /// Kernels to tune, comma-separated (default: every tunable kernel).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// A Hugging Face config.json (Llama family) to derive the problem shapes from
    /// (default: Llama 3 8B's shapes).
    #[arg(long, conflicts_with = "shapes")]
    pub model: Option<PathBuf>,
    /// A JSON list of problems: [{"kernel": "gemm", "dims": [m, n, k]}, ...].
    #[arg(long)]
    pub shapes: Option<PathBuf>,
    /// Batch sizes in tokens for a model's shapes (GEMM M, softmax rows).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_TOKENS)]
    pub tokens: Vec<usize>,
    /// Time allowed for timing, e.g. 90s, 10m, 1h (default: until done).
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Search strategy for spaces of more than 64 candidates: gp (Bayesian optimisation),
    /// surrogate (a forest-guided climb), local, random or exhaustive.
    #[arg(long, default_value = "gp")]
    pub strategy: String,
    /// Where the per-device cache lives (default: $WARPFORGE_TUNE_CACHE, else the user
    /// cache dir's warpforge/tune).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// List each kernel's space and its pruning for sm_80, sm_89 and sm_90 (NVRTC only,
    /// no GPU needed) and the shapes that would be tuned; time nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay Kernel Tuner cache files (brute-forced spaces) as simulated devices and report,
    /// per space and strategy, the evaluations to 90/95/99% of the optimum (median, p90),
    /// the share of runs that miss within --max-evals, and the best-so-far curve's area (no
    /// GPU needed). A folder stands for its `.json.gz` files and those of its kernel folders;
    /// files of the same kernel on other GPUs (same folder) also give a leave-one-GPU-out
    /// `surrogate+transfer` and `gp+transfer` rows, and a file whose entries record compile
    /// statistics (`num_regs`, Kernel Tuner's RegisterObserver; `shared_bytes`, `threads`,
    /// `occupancy`, `spill_bytes`) `surrogate+stats` and `gp+stats` rows, the models with them
    /// as features.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub replay: Vec<PathBuf>,
    /// With --replay: seeded runs per space and strategy.
    #[arg(long, default_value_t = 50, requires = "replay")]
    pub runs: usize,
    /// With --replay: evaluations per run; a run not at a target by then misses it.
    #[arg(long, default_value_t = 1000, requires = "replay")]
    pub max_evals: usize,
    /// With --replay: only these strategies, comma-separated (random, local, surrogate, gp,
    /// surrogate+transfer, gp+transfer, surrogate+stats, gp+stats; default: all).
    #[arg(long, value_delimiter = ',', requires = "replay")]
    pub only: Vec<String>,
    /// With --replay: the fractions of the optimum to report evaluations to, comma-separated
    /// (0.95: a config within 95% of the best time, i.e. time ≤ best / 0.95); runs stop at
    /// the highest.
    #[arg(long = "target", value_name = "FRACTION", value_delimiter = ',', num_args = 1..,
          default_values_t = warpforge_autotune::replay::TARGETS, requires = "replay",
          value_parser = fraction_of_optimum)]
    pub targets: Vec<f64>,
    /// With --replay: instead of the strategy table, the leave-one-space-out check of the
    /// surrogate's measured constants: for each space, the setting (of a grid of global-pick
    /// shares and forest sizes) that does best on the other spaces, and its figure on the
    /// space left out, beside the shipped setting's.
    #[arg(long, requires = "replay", conflicts_with = "only")]
    pub leave_one_space_out: bool,
    /// With --replay: skip the leave-one-GPU-out transfer rows.
    #[arg(long, requires = "replay")]
    pub no_transfer: bool,
    /// With --replay: print one JSON array of per-space reports instead of tables.
    #[arg(long, requires = "replay")]
    pub json: bool,
    /// Print the configs the tuning caches choose, per device of the cache dir, as JSON
    /// (kernel, dtypes, shape bucket, config, median time, whether this build's launches
    /// use it), and tune nothing. No GPU needed.
    #[arg(long)]
    pub show: bool,
    /// Write the JSON of `--show` to FILE instead, and tune nothing.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Write every result of this build's kernels in the cache dir as Kernel Tuner cache
    /// files, one per device and problem (DIR/<kernel>_<bucket>/<device>.json.gz), each config
    /// with its time and its compile statistics for the device's arch (NVRTC), and tune
    /// nothing: a problem tuned with --strategy exhaustive becomes a brute-forced space for
    /// --replay, whose `gp+stats` and `surrogate+stats` rows measure what the statistics are
    /// worth.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["export", "show"])]
    pub export_spaces: Option<PathBuf>,
}

impl Default for AutotuneArgs {
    /// The command line's defaults (no kernels named: all of them, Llama 3 8B's shapes).
    fn default() -> AutotuneArgs {
        AutotuneArgs {
            kernels: Vec::new(),
            model: None,
            shapes: None,
            tokens: DEFAULT_TOKENS.to_vec(),
            budget: None,
            strategy: "gp".into(),
            cache_dir: None,
            dry_run: false,
            replay: Vec::new(),
            runs: 50,
            max_evals: 1000,
            only: Vec::new(),
            no_transfer: false,
            leave_one_space_out: false,
            targets: warpforge_autotune::replay::TARGETS.to_vec(),
            json: false,
            show: false,
            export: None,
            export_spaces: None,
        }
    }
}

pub fn run(args: AutotuneArgs) -> Result<ExitCode> {
    if args.show || args.export.is_some() {
        return export(&args);
    }
    if let Some(out) = &args.export_spaces {
        return export_spaces(&args, out);
    }
    if !args.replay.is_empty() {
        return replay(&args);
    }
    let kernels = select_kernels(&args.kernels)?;
    tune_kernels(&args, &kernels)
}

/// Tunes a program's own kernels (the `tune` of [`super::user`]) at the shapes of
/// `--shapes`, which name them; `--kernels` picks some (default: all).
pub fn run_for(lib: &[Kernel], args: &AutotuneArgs) -> Result<ExitCode> {
    if args.shapes.is_none() {
        return Err(super::usage(
            "tune needs --shapes FILE: [{\"kernel\": NAME, \"dims\": [..]}, ...]",
        ));
    }
    let chosen: Vec<Kernel> = match args.kernels.is_empty() {
        true => lib.to_vec(),
        false => args
            .kernels
            .iter()
            .map(|n| {
                let found = lib.iter().find(|k| k.name() == n.trim()).copied();
                found.ok_or_else(|| {
                    let known: Vec<_> = lib.iter().map(|k| k.name()).collect();
                    super::unknown_name("kernel", n.trim(), &known)
                })
            })
            .collect::<Result<_>>()?,
    };
    let kernels = chosen
        .into_iter()
        .map(|k| TuneKernel::new(k).map_err(Into::into))
        .collect::<Result<Vec<_>>>()?;
    tune_kernels(args, &kernels)
}

/// The shapes of `kernels`, then a dry run or the tuning on GPU 0.
fn tune_kernels(args: &AutotuneArgs, kernels: &[TuneKernel]) -> Result<ExitCode> {
    let shapes = problem_shapes(args, kernels)?;
    strategy_by_name(&args.strategy)?; // an unknown name fails before anything runs
    if args.dry_run {
        return dry_run(kernels, &shapes);
    }
    let device = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            return Err(anyhow::anyhow!(
                "no GPU for autotune ({e}); `--dry-run` lists the spaces and their pruning \
                 without one"
            ))
        }
    };
    tune(args, &device, kernels, &shapes)
}

/// `--show` / `--export FILE`: the chosen configs of every cached device as JSON.
fn export(args: &AutotuneArgs) -> Result<ExitCode> {
    let dir = cache_dir(args.cache_dir.as_deref())?;
    let chosen = warpforge_autotune::export::export_dir(&dir)?;
    let json = serde_json::to_string_pretty(&chosen)? + "\n";
    match &args.export {
        Some(file) => {
            std::fs::write(file, json).with_context(|| format!("writing {}", file.display()))?;
            let configs: usize = chosen.devices.iter().map(|d| d.chosen.len()).sum();
            eprintln!(
                "wrote {configs} chosen configs of {} device(s) from {} to {}",
                chosen.devices.len(),
                dir.display(),
                file.display()
            );
        }
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--export-spaces DIR`: the cached results as replayable Kernel Tuner spaces.
fn export_spaces(args: &AutotuneArgs, out: &Path) -> Result<ExitCode> {
    let dir = cache_dir(args.cache_dir.as_deref())?;
    let written = warpforge_autotune::space_export::export_spaces(&dir, out, |space| {
        let stats = if space.compile_stats {
            "with compile statistics"
        } else {
            "without compile statistics (NVRTC could not compile for its arch here)"
        };
        eprintln!(
            "wrote {} ({} configs, {stats})",
            space.path.display(),
            space.configs
        );
    })?;
    if written.is_empty() {
        eprintln!(
            "no results of this build's kernels in {}: tune first (e.g. --strategy exhaustive)",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The tunable kernels named (all when none are).
fn select_kernels(names: &[String]) -> Result<Vec<TuneKernel>> {
    let tunable: Vec<_> = warpforge_kernels::library()
        .into_iter()
        .filter(|k| rank_of(k.name()).is_some())
        .collect();
    let chosen: Vec<_> = if names.is_empty() {
        tunable
    } else {
        names
            .iter()
            .map(|n| {
                let found = tunable.iter().find(|k| k.name() == n.trim()).copied();
                found.ok_or_else(|| {
                    let known: Vec<_> = tunable.iter().map(|k| k.name()).collect();
                    super::unknown_name("tunable kernel", n.trim(), &known)
                })
            })
            .collect::<Result<_>>()?
    };
    chosen
        .into_iter()
        .map(|k| TuneKernel::new(k).map_err(Into::into))
        .collect()
}

/// The shapes to tune, for the chosen kernels, one per (kernel, shape bucket).
fn problem_shapes(args: &AutotuneArgs, kernels: &[TuneKernel]) -> Result<Vec<ProblemShape>> {
    if args.tokens.contains(&0) {
        bail!("--tokens must be at least 1");
    }
    let all = match (&args.shapes, &args.model) {
        // A chosen kernel validates its own shapes (a program's kernels are not in the
        // library); any other name must be a library kernel's.
        (Some(path), _) => load_shapes_checked(path, |s| {
            match kernels.iter().find(|k| k.name() == s.kernel) {
                Some(k) => k.lib.validate(&s.problem()),
                None => check_shape(s),
            }
        })?,
        (None, Some(path)) => ModelConfig::load(path)?.shapes(&args.tokens),
        (None, None) => ModelConfig::llama3_8b().shapes(&args.tokens),
    };
    let mut out: Vec<ProblemShape> = Vec::new();
    for shape in all {
        let Some(k) = kernels.iter().find(|k| k.name() == shape.kernel) else {
            continue;
        };
        let key = k.entry_key(&shape.dims)?;
        let seen = out
            .iter()
            .any(|s| s.kernel == shape.kernel && k.entry_key(&s.dims).ok().as_ref() == Some(&key));
        if !seen {
            out.push(shape);
        }
    }
    if out.is_empty() {
        bail!("no problem shapes for the chosen kernels");
    }
    Ok(out)
}

/// `; registers 40-168, occupancy 0.12-0.50, ...`: the range of each compile statistic over
/// the kept configs (the search's model features on a real run), the constant ones left out.
fn stats_ranges(kept: &[warpforge_autotune::Candidate]) -> String {
    let rows: Vec<[f64; 5]> = kept.iter().map(|c| c.compile_stats()).collect();
    let mut parts = Vec::new();
    for (k, name) in warpforge_autotune::prune::COMPILE_STATS.iter().enumerate() {
        let lo = rows.iter().map(|r| r[k]).fold(f64::INFINITY, f64::min);
        let hi = rows.iter().map(|r| r[k]).fold(f64::NEG_INFINITY, f64::max);
        let show = |v: f64| {
            if v.fract() == 0.0 {
                format!("{v}")
            } else {
                format!("{v:.2}")
            }
        };
        if hi > lo {
            parts.push(format!("{name} {}-{}", show(lo), show(hi)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

fn dry_run(kernels: &[TuneKernel], shapes: &[ProblemShape]) -> Result<ExitCode> {
    nvrtc::supported_archs().context("--dry-run compiles every config with NVRTC")?;
    let mut compile_failures = 0usize;
    for k in kernels {
        let space = k.space();
        println!("{}: {} configs ({})", k.name(), space.len(), k.def().space);
        println!(
            "    default {}, code hash {}",
            k.default_config(),
            k.ir_hash
        );
        for arch in DRY_RUN_ARCHS {
            if let Some(why) = k.unsupported_on(arch) {
                println!("    {arch}: skipped: {why}");
                continue;
            }
            let pruning = prune_space(k, arch)?;
            println!(
                "    {arch}: {} kept, {} pruned{}",
                pruning.kept.len(),
                pruning.pruned.len(),
                stats_ranges(&pruning.kept)
            );
            for p in &pruning.pruned {
                println!("        {:<32} {}", p.config.to_string(), p.reason);
                compile_failures += matches!(
                    p.reason,
                    warpforge_autotune::PruneReason::CompileFailed { .. }
                ) as usize;
            }
        }
    }
    println!("\nshapes to tune ({}):", shapes.len());
    for s in shapes {
        let bucket = warpforge_autotune::Bucket::of(&s.dims).map_or("?".into(), |b| b.to_string());
        println!(
            "    {:<13} {:<20} bucket {:<18} {}",
            s.kernel,
            format!("{:?}", s.dims),
            bucket,
            s.name
        );
    }
    if compile_failures > 0 {
        println!("\n{compile_failures} config(s) failed to compile (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn tune(
    args: &AutotuneArgs,
    device: &Device,
    kernels: &[TuneKernel],
    shapes: &[ProblemShape],
) -> Result<ExitCode> {
    let key = probe::device_key(device)?;
    let dir = cache_dir(args.cache_dir.as_deref())?;
    let mut cache = TuneCache::open(&dir, &key)?;
    let arch = device.arch().context("the device reports no arch")?;
    let supported = nvrtc::supported_archs()?;
    let target = Arch::compile_target(arch, supported)
        .ok_or_else(|| anyhow!("this NVRTC cannot compile for {arch} or an older arch"))?;
    eprintln!("tuning on {key}; cache {}", cache.path().display());
    let (kernels, shapes) = supported_on(kernels, shapes, target);
    let mut prunings = Vec::new();
    for k in &kernels {
        prunings.push(prune_space(k, target)?);
    }
    let mut bench = DeviceBench::new(device)?;
    let mut strategy = strategy_by_name(&args.strategy)?;
    let options = TuneOptions {
        deadline: args.budget.map(|b| Instant::now() + b),
        ..TuneOptions::default()
    };
    let bar = progress_bar();
    let mut reports = Vec::new();
    {
        let mut tuner = Tuner::new(&mut bench, &mut cache, options).on_progress(|p| match p {
            Progress::Problem { pending, .. } => bar.inc_length(pending as u64),
            Progress::Candidate { kernel, config, .. } => {
                bar.set_message(format!("{kernel} {config}"));
                bar.inc(1);
            }
        });
        for shape in &shapes {
            let i = kernels.iter().position(|k| k.name() == shape.kernel);
            let i = i.context("a shape of an unselected kernel")?;
            reports.push(tuner.tune(kernels[i], shape, &prunings[i], strategy.as_mut())?);
        }
    }
    bar.finish_and_clear();
    print_table(&reports);
    Ok(summarize_failures(&reports))
}

/// The kernels (and their shapes) the target arch can run; says which it leaves out.
fn supported_on<'a>(
    kernels: &'a [TuneKernel],
    shapes: &[ProblemShape],
    target: Arch,
) -> (Vec<&'a TuneKernel>, Vec<ProblemShape>) {
    let mut kept = Vec::new();
    for k in kernels {
        match k.unsupported_on(target) {
            Some(why) => eprintln!(
                "skipping {}: {why} (this GPU compiles for {target})",
                k.name()
            ),
            None => kept.push(k),
        }
    }
    let shapes = shapes
        .iter()
        .filter(|s| kept.iter().any(|k| k.name() == s.kernel))
        .cloned()
        .collect();
    (kept, shapes)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} candidates, ETA {eta} {msg}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

fn print_table(reports: &[ProblemReport]) {
    println!(
        "{:<13} {:<18} {:<36} {:>11} {:>8} {:>6} {:>6} {:>6} {:>6}",
        "kernel",
        "shape bucket",
        "best config",
        "median",
        "speedup",
        "pruned",
        "timed",
        "cached",
        "failed"
    );
    for r in reports {
        let (best, median) = match &r.best {
            Some((c, m)) => (c.to_string(), format!("{:.2} µs", m.median * 1e6)),
            None => ("-".into(), "-".into()),
        };
        let speedup = r.speedup().map_or("-".into(), |s| format!("{s:.2}x"));
        println!(
            "{:<13} {:<18} {:<36} {:>11} {:>8} {:>6} {:>6} {:>6} {:>6}",
            r.kernel,
            r.bucket.to_string(),
            best,
            median,
            speedup,
            r.pruned,
            r.timed,
            r.reused,
            r.failed.len()
        );
    }
    for r in reports.iter().filter(|r| r.transfer.is_some()) {
        let from = r.transfer.as_deref().unwrap_or_default();
        println!("{} {}: started from {from}", r.kernel, r.bucket);
    }
}

/// Prints every failure and problem error; failure exit when there is any.
fn summarize_failures(reports: &[ProblemReport]) -> ExitCode {
    let failing: Vec<&ProblemReport> = reports.iter().filter(|r| r.has_failures()).collect();
    let skipped: usize = reports.iter().map(|r| r.skipped).sum();
    if skipped > 0 {
        println!("\n{skipped} candidate(s) not timed (budget spent or device lost); run again to continue");
    }
    if failing.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\nfailures:");
    for r in failing {
        if let Some(e) = &r.error {
            println!("  {} {}: {e}", r.kernel, r.bucket);
        }
        for (config, reason) in &r.failed {
            println!("  {} {} {config}: {reason}", r.kernel, r.bucket);
        }
    }
    ExitCode::FAILURE
}

/// `90s`, `10m`, `1h`, `500ms`, plain seconds, or a sum of such terms: `1h30m`, `2m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 90s, 10m, 1h or 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut seconds = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "" | "s" => 1.0,
            "ms" => 1e-3,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
                ))
            }
        };
        seconds += value * scale;
        rest = rest[unit_len..].trim_start();
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m 30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1h30x")
            .unwrap_err()
            .contains("unknown unit `x`"));
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("10d").unwrap_err().contains("unknown unit"));
    }
}

#[cfg(test)]
mod cli_tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::process::ExitCode;

    fn args(line: &[&str]) -> super::AutotuneArgs {
        let mut full = vec!["warpforge", "autotune"];
        full.extend_from_slice(line);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Autotune(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn export_writes_the_chosen_configs_as_json_without_a_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tuned.json");
        let cache = dir.path().join("no-cache-yet");
        let a = args(&[
            "--export",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert!(a.export.is_some() && !a.show);
        super::run(a).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["devices"], serde_json::json!([]));
        assert_eq!(json["format"], 1);
    }

    #[test]
    fn dry_run_ranges_leave_out_constant_statistics() {
        use warpforge_autotune::{Candidate, Config};
        let candidate = |registers: u32, occupancy: f64| Candidate {
            config: Config::new(),
            resources: warpforge_dsl::nvrtc::ResourceUsage {
                registers,
                shared_bytes: 4096,
                ..Default::default()
            },
            dynamic_shared_bytes: 0,
            threads: 128,
            occupancy,
        };
        let ranges = super::stats_ranges(&[candidate(40, 0.5), candidate(96, 0.25)]);
        assert_eq!(ranges, "; num_regs 40-96, occupancy 0.25-0.50");
        assert_eq!(super::stats_ranges(&[candidate(40, 0.5)]), "");
    }

    #[test]
    fn export_spaces_of_an_empty_cache_writes_nothing_and_refuses_export_too() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spaces");
        let cache = dir.path().join("no-cache-yet");
        let a = args(&[
            "--export-spaces",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert_eq!(a.export_spaces.as_deref(), Some(out.as_path()));
        super::run(a).unwrap();
        assert!(!out.exists(), "nothing to write");
        let both = [
            "warpforge",
            "autotune",
            "--export-spaces",
            "d",
            "--export",
            "f",
        ];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn parses_every_flag() {
        let a = args(&[
            "--kernels",
            "gemm,softmax",
            "--shapes",
            "s.json",
            "--budget",
            "10m",
            "--strategy",
            "exhaustive",
            "--cache-dir",
            "/tmp/c",
            "--dry-run",
        ]);
        assert_eq!(a.kernels, ["gemm", "softmax"]);
        assert_eq!(a.budget, Some(std::time::Duration::from_secs(600)));
        assert!(a.dry_run);
        assert_eq!(a.tokens, [1, 16, 128, 4096]);
        let both = [
            "warpforge",
            "autotune",
            "--model",
            "c.json",
            "--shapes",
            "s.json",
        ];
        assert!(
            Cli::try_parse_from(both).is_err(),
            "--model and --shapes conflict"
        );
    }

    #[test]
    fn bad_inputs_are_errors_before_any_work() {
        let e = super::run(args(&["--kernels", "attention"])).unwrap_err();
        assert!(
            e.to_string().contains("unknown tunable kernel `attention`"),
            "{e}"
        );
        let e = super::run(args(&["--strategy", "annealing"])).unwrap_err();
        assert!(e.to_string().contains("exhaustive"), "{e}");
    }

    #[test]
    fn without_a_gpu_it_fails_unless_dry_run() {
        if warpforge_dsl::Device::cuda(0).is_ok() {
            eprintln!("skipping: a GPU is present, so autotune would really tune");
            return;
        }
        let e = super::run(args(&["--kernels", "vector_add"])).unwrap_err();
        assert!(e.to_string().contains("no GPU for autotune"), "{e}");
        if let Err(e) = warpforge_dsl::nvrtc::supported_archs() {
            eprintln!("skipping the --dry-run half: no NVRTC ({e})");
            return;
        }
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../autotune/tests/fixtures/shapes.json"
        );
        let code = super::run(args(&[
            "--kernels",
            "vector_add",
            "--shapes",
            fixture,
            "--dry-run",
        ]));
        assert_eq!(code.unwrap(), ExitCode::SUCCESS);
    }
}

/// A `--target`: a fraction of the optimum in (0, 1].
fn fraction_of_optimum(text: &str) -> std::result::Result<f64, String> {
    let t: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    warpforge_autotune::replay::fraction_of_optimum(t)
}

/// `--replay`: the generalization benchmark over the given spaces.
fn replay(args: &AutotuneArgs) -> Result<ExitCode> {
    use warpforge_autotune::replay::{benchmark, collect_space_files, BenchOptions};
    if args.runs == 0 || args.max_evals == 0 {
        bail!("--runs and --max-evals must be at least 1");
    }
    let files = collect_space_files(&args.replay)?;
    if files.is_empty() {
        bail!("no .json.gz tuning spaces in {:?}", args.replay);
    }
    let options = BenchOptions {
        runs: args.runs,
        budget: args.max_evals,
        seed0: 0,
        transfer: !args.no_transfer,
        only: args.only.clone(),
        targets: args.targets.clone(),
    };
    if args.leave_one_space_out {
        return leave_one_space_out(args, &files, options);
    }
    let started = Instant::now();
    if !args.json {
        println!(
            "{} space(s), {} seeded runs per strategy, at most {} evaluations per run",
            files.len(),
            options.runs,
            options.budget
        );
    }
    let reports = benchmark(&files, options, |r| {
        if !args.json {
            print_space_report(r);
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!("({:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--replay --leave-one-space-out`: the surrogate's constants chosen without the space
/// measured.
fn leave_one_space_out(
    args: &AutotuneArgs,
    files: &[PathBuf],
    options: warpforge_autotune::replay::BenchOptions,
) -> Result<ExitCode> {
    use warpforge_autotune::search::SurrogateSettings;
    let grid = SurrogateSettings::GRID;
    let started = Instant::now();
    eprintln!(
        "leave-one-space-out: {} surrogate settings × {} space(s), {} seeded runs each",
        grid.len(),
        files.len(),
        options.runs
    );
    let mut done = 0;
    let report = warpforge_autotune::replay::leave_one_space_out(files, options, &grid, |s| {
        done += 1;
        eprintln!(
            "  [{done}/{}] {s} ({:.0} s)",
            grid.len(),
            started.elapsed().as_secs_f64()
        );
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let pct = 100.0 * report.target;
    println!(
        "Each space's surrogate settings chosen on the other spaces (least sum of p90 to {pct}%), \
         {} runs, at most {} evaluations",
        report.runs, report.budget
    );
    println!(
        "{:<56} {:<22} {:>16} {:>16}",
        "space left out",
        "chosen elsewhere",
        format!("held out {pct}%"),
        "shipped"
    );
    for r in &report.rows {
        println!(
            "{:<56} {:<22} {:>16} {:>16}",
            r.space,
            r.chosen.to_string(),
            median_p90(&r.held_out),
            median_p90(&r.shipped)
        );
    }
    let differ = report.disagreements().count();
    println!(
        "shipped ({}) chosen for {} of {} spaces ({:.1} s)",
        SurrogateSettings::default(),
        report.rows.len() - differ,
        report.rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// A target's "median/p90" evaluations, `>max` where the runs missed it.
fn median_p90(t: &warpforge_autotune::replay::TargetStats) -> String {
    let evals = |e: Option<usize>| e.map_or(">max".to_string(), |e| e.to_string());
    format!("{}/{}", evals(t.median), evals(t.p90))
}

fn print_space_report(r: &warpforge_autotune::replay::SpaceReport) {
    println!(
        "\n{}: {} configs, random's exact median to 95%: {}",
        r.space, r.configs, r.random_median_95
    );
    let Some(first) = r.strategies.first() else {
        return;
    };
    let percent = |t: f64| format!("{}%", 100.0 * t);
    let heads: Vec<String> = first
        .targets
        .iter()
        .map(|t| format!("{} med/p90", percent(t.target)))
        .collect();
    let missed_head = format!(
        "missed {}",
        first
            .targets
            .iter()
            .map(|t| percent(t.target))
            .collect::<Vec<_>>()
            .join("/")
    );
    let mut head = format!("{:<20}", "strategy");
    for h in &heads {
        head += &format!(" {:>13}", h);
    }
    println!("{head} {missed_head:>20} {:>6}", "area");
    for s in &r.strategies {
        let mut line = format!("{:<20}", s.strategy);
        for t in &s.targets {
            line += &format!(" {:>13}", median_p90(t));
        }
        let missed: Vec<String> = s
            .targets
            .iter()
            .map(|t| format!("{:.0}%", 100.0 * t.missed))
            .collect();
        println!("{line} {:>20} {:>6.3}", missed.join("/"), s.curve_area);
    }
    for s in r.strategies.iter().filter(|s| s.prior.is_some()) {
        println!("  {}: {}", s.strategy, s.prior.as_deref().unwrap_or(""));
    }
}
