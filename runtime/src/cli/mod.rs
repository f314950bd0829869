//! The `warpforge` command line: list, print, compile, check and tune the kernel library.

mod autotune;
mod check;
mod compile;
mod generate;
pub mod generate_io;
mod outcome;
pub mod quantize;
pub mod train;
pub mod user;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use warpforge_dsl::nvrtc::Arch;
use warpforge_dsl::{Config, Device};
use warpforge_kernels::{library, Kernel};

/// The exit status, the same for every command (also in `--help`).
const EXIT_STATUS_HELP: &str = "Exit status: 0 when everything asked for ran and passed \
     (checks skipped for an older GPU arch included); 1 when the work failed (a check or \
     compile failed, a kernel faulted, no GPU where one is needed); 2 for a usage or input \
     error (bad arguments, an unknown kernel, a bad --config or --arch). Reports go to \
     stdout, errors and progress to stderr.";

/// A mistake in what the user asked for (a name, a flag's value): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// The exit status of a command that ended in `err`: 2 when its cause is a
/// [`UsageError`], else 1 (see `--help`).
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "warpforge",
    version,
    about = "GPU kernels in Rust syntax: print, compile, check and tune them",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the library's kernels with their tunable spaces.
    Kernels {
        /// One JSON document (name, summary, space, constraints, default, source) instead
        /// of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the CUDA C of one specialization.
    Emit {
        kernel: String,
        /// NAME=VALUE,... (default: the kernel's default config)
        #[arg(long)]
        config: Option<String>,
    },
    /// Compile with NVRTC for an arch and print the resource usage.
    Compile {
        /// A kernel name, or omit with --all.
        kernel: Option<String>,
        #[arg(long)]
        all: bool,
        /// sm_80, sm_89, sm_90, ... (repeatable; default: sm_80, sm_89 and sm_90)
        #[arg(long = "arch")]
        archs: Vec<String>,
        #[arg(long)]
        config: Option<String>,
        /// Every config of the space instead of the default one.
        #[arg(long)]
        space: bool,
        /// Also print each cubin's SASS (cuobjdump) and its HMMA/QMMA/LDGSTS/LDSM/LDL/STL counts.
        #[arg(long)]
        sass: bool,
        /// One JSON document instead of the table (with --out: the manifests).
        #[arg(long, conflicts_with = "sass")]
        json: bool,
        /// Export each specialization into DIR: its .cu, a .ptx and .cubin per arch, and a
        /// JSON manifest (symbol, parameter ABI, block, shared memory, min arch).
        #[arg(long, value_name = "DIR", conflicts_with = "sass")]
        out: Option<std::path::PathBuf>,
    },
    /// Run kernels against their host references and print the errors.
    Check {
        kernel: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
        /// One config instead of the whole space.
        #[arg(long)]
        config: Option<String>,
        /// Each kernel's default config only (a quick pass, e.g. under compute-sanitizer).
        #[arg(long, conflicts_with = "config")]
        defaults: bool,
        /// One JSON document (device, a record per check: kernel, config, problem, status,
        /// detail, errors against the tolerance; the summary) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run every kernel on the GPU and on the interpreter, compare, then time the
    /// tensor-core GEMMs against cuBLAS and the FP8 kernels against the DRAM peak; write a
    /// JSON report (perf targets are informational: they never fail the check).
    GpuCheck {
        #[arg(long, default_value = "gpu-check.json")]
        json: std::path::PathBuf,
        /// Skip the performance section.
        #[arg(long)]
        no_perf: bool,
        /// A shorter performance section: fewer GEMM shapes, E4M3 only.
        #[arg(long)]
        quick: bool,
        /// A tuning cache directory (as `autotune --cache-dir`): tuned GEMM configs are
        /// timed beside the defaults.
        #[arg(long)]
        tune_cache: Option<std::path::PathBuf>,
        /// JSON from scripts/gpu-check-torch.py to merge (PyTorch's per-tensor FP8 cast).
        #[arg(long)]
        torch_json: Option<std::path::PathBuf>,
        /// JSON from scripts/gpu-check-triton.py to merge (Triton's matmul and FP8 quantizer).
        #[arg(long)]
        triton_json: Option<std::path::PathBuf>,
        /// JSON from scripts/gpu-check-attention.py to merge (PyTorch's flash SDPA).
        #[arg(long)]
        attention_json: Option<std::path::PathBuf>,
        /// JSON of the run's context (clocks, driver, commit) to merge as `meta`.
        #[arg(long)]
        meta_json: Option<std::path::PathBuf>,
        /// JSON from scripts/gpu-check-attention-decode.py to merge (PyTorch decode attention).
        #[arg(long)]
        torch_decode_json: Option<std::path::PathBuf>,
        /// Configs per kernel checked besides the default, spread over its space.
        #[arg(long, default_value_t = 3)]
        sample_configs: usize,
        /// Seconds for the sampled configs of all kernels together (defaults always run).
        #[arg(long, default_value_t = 120)]
        sample_budget: u64,
    },
    /// The main job on a built-in default: with a GPU, check the whole library on it;
    /// without one, check it on the CPU interpreter and print the compile report.
    Verify {
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },
    /// Generate completions for a JSONL file of prompts with a Hugging Face model directory
    /// (the engine: paged KV, packed and chunked prefill, shared prefixes, sampling).
    Generate(generate::GenerateArgs),
    /// Tune the kernels on this GPU for a model's shapes and cache the best configs
    /// (`--dry-run`: list each space and its pruning per arch, no GPU needed).
    Autotune(autotune::AutotuneArgs),
    /// Quantize a float model directory's linear layers to int4 (RTN or GPTQ, AdaDim's
    /// per-layer group dimension) into a warpforge int4 directory.
    Quantize(quantize::QuantizeArgs),
    /// Train a Llama-family model on a corpus (packed rows, LAMB or AdamW, a learning-rate
    /// schedule), with atomic checkpoints loadable by `generate` and transformers, and
    /// `--resume`.
    Train(train::TrainArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The GPU when there is one, else the interpreter.
    Auto,
    /// The CPU interpreter (runs the IR).
    Cpu,
    Cuda,
    /// The generated CUDA C on the CPU (host harness; needs a C++ compiler).
    Host,
    /// The host harness built with ASan and UBSan (undefined behaviour in the generated C).
    HostSanitized,
}

/// Runs a command; the exit code says whether every check passed.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Kernels { json } => {
            if json {
                println!("{:#}", kernels_json());
            } else {
                list_kernels();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Emit { kernel, config } => {
            let k = find_kernel(&kernel)?;
            let config = config_for(&k, config.as_deref())?;
            let typed = warpforge_dsl::resolve::specialize(k.def(), &config)?;
            print!("{}", warpforge_dsl::codegen::cuda_source(&typed));
            Ok(ExitCode::SUCCESS)
        }
        Command::Compile {
            kernel,
            all,
            archs,
            config,
            space,
            sass,
            json,
            out,
        } => {
            let kernels = select(kernel.as_deref(), all)?;
            let archs = parse_archs(&archs)?;
            match (out, json) {
                (Some(dir), _) => {
                    compile::export(&kernels, &archs, config.as_deref(), space, &dir, json)
                }
                (None, true) => compile::report_json(&kernels, &archs, config.as_deref(), space),
                (None, false) => compile::report(&kernels, &archs, config.as_deref(), space, sass),
            }
        }
        Command::Check {
            kernel,
            all,
            backend,
            config,
            defaults,
            json,
        } => {
            let kernels = select(kernel.as_deref(), all)?;
            let device = open_device(backend)?;
            let scope = if defaults {
                check::Scope::Defaults
            } else {
                check::Scope::from(config.as_deref())
            };
            let log = if json {
                check::Log::json()
            } else {
                check::Log::text()
            };
            check::run(&device, &kernels, scope, log)
        }
        Command::GpuCheck {
            json,
            no_perf,
            quick,
            tune_cache,
            torch_json,
            triton_json,
            attention_json,
            meta_json,
            sample_configs,
            sample_budget,
            torch_decode_json,
        } => {
            let gpu = open_device(BackendChoice::Cuda)?;
            let perf = (!no_perf).then_some(crate::perf::PerfOptions {
                quick,
                tune_cache,
                torch_json,
                triton_json,
                attention_json,
                torch_decode_json,
            });
            let sampling = check::Sampling {
                configs: sample_configs,
                budget: std::time::Duration::from_secs(sample_budget),
            };
            let extras = check::Extras { meta_json };
            check::gpu_check(&gpu, &library(), &json, sampling, &extras, perf.as_ref())
        }
        Command::Verify { backend } => verify(backend),
        Command::Autotune(args) => autotune::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Train(args) => train::run(args),
    }
}

/// `check` over the library, and without a GPU the compile report; exits 0 when every
/// check and compile that could run passed (arch-gated ones are skipped).
fn verify(backend: BackendChoice) -> Result<ExitCode> {
    let device = open_device(backend)?;
    let kernels = library();
    let mut tally = check::run_tally(&device, &kernels, check::Scope::Space, check::Log::text())?;
    if device.arch().is_none() {
        println!();
        let archs = [Arch::SM80, Arch::SM89, Arch::SM90];
        tally.merge(&compile::report_tally(
            &kernels, &archs, None, false, false,
        )?);
    }
    println!("verify: {tally}");
    Ok(tally.exit_code())
}

fn list_kernels() {
    for k in library() {
        let def = k.def();
        println!("{}  — {}", k.name(), k.summary());
        println!("    space:   {}", def.space);
        println!(
            "    configs: {} (default {})",
            k.configs().len(),
            k.default_config()
        );
        println!("    source:  {}:{}", def.file, def.line);
    }
}

/// The library as JSON: per kernel its name, summary, tunables with their values and
/// default, constraints, number of valid configs, default config and source location.
fn kernels_json() -> serde_json::Value {
    let kernels: Vec<serde_json::Value> = library()
        .iter()
        .map(|k| {
            let def = k.def();
            let params: Vec<serde_json::Value> = def
                .space
                .params
                .iter()
                .map(|p| serde_json::json!({ "name": p.name, "values": p.values, "default": p.default }))
                .collect();
            let constraints: Vec<String> =
                def.space.constraints.iter().map(|c| c.text.clone()).collect();
            serde_json::json!({
                "name": k.name(),
                "summary": k.summary(),
                "params": params,
                "constraints": constraints,
                "configs": k.configs().len(),
                "default": k.default_config().to_string(),
                "source": format!("{}:{}", def.file, def.line),
            })
        })
        .collect();
    serde_json::json!({ "kernels": kernels })
}

pub(crate) fn find_kernel(name: &str) -> Result<Kernel> {
    warpforge_kernels::find(name).ok_or_else(|| {
        let names: Vec<&str> = library().iter().map(|k| k.name()).collect();
        unknown_name("kernel", name, &names)
    })
}

/// `unknown {what} `name``, with the close names among `names` (a usage error).
pub(crate) fn unknown_name(what: &str, name: &str, names: &[&str]) -> anyhow::Error {
    let hint = "`warpforge kernels` lists the library";
    match suggestions(name, names).as_slice() {
        [] => usage(format!("unknown {what} `{name}`; {hint}")),
        close => usage(format!(
            "unknown {what} `{name}`; did you mean {}? ({hint})",
            close
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Up to five names close to `query`: those containing it, then those within an edit
/// distance of a third of its length (at least 2), nearest first.
fn suggestions<'a>(query: &str, names: &[&'a str]) -> Vec<&'a str> {
    let q = query.to_ascii_lowercase();
    let limit = (q.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|&n| {
            let lower = n.to_ascii_lowercase();
            if lower.contains(&q) {
                Some((0, n))
            } else {
                let d = edit_distance(&q, &lower);
                (d <= limit).then_some((d, n))
            }
        })
        .collect();
    scored.sort_by_key(|&(d, n)| (d, n.len()));
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

/// Levenshtein distance (insertions, deletions, substitutions), over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn select(kernel: Option<&str>, all: bool) -> Result<Vec<Kernel>> {
    match (kernel, all) {
        (Some(_), true) => Err(usage("give a kernel name or --all, not both")),
        (Some(name), false) => Ok(vec![find_kernel(name)?]),
        (None, true) => Ok(library()),
        (None, false) => Err(usage(
            "name a kernel (see `warpforge kernels`) or pass --all",
        )),
    }
}

/// The config from `--config` (checked against the space), or the kernel's default.
pub(crate) fn config_for(k: &Kernel, text: Option<&str>) -> Result<Config> {
    let Some(text) = text else {
        return Ok(k.default_config());
    };
    let mut config = k.default_config();
    for (name, value) in Config::parse(text)
        .map_err(|e| usage(format!("bad --config: {e}")))?
        .values
    {
        if config.get(&name).is_none() {
            let names: Vec<_> = config.values.iter().map(|(n, _)| n.as_str()).collect();
            return Err(usage(format!(
                "kernel `{}` has no parameter `{name}`; its parameters: {}",
                k.name(),
                names.join(", ")
            )));
        }
        config.set(&name, value);
    }
    k.def()
        .space
        .check_member(&config)
        .map_err(|e| usage(format!("bad --config for `{}`: {e}", k.name())))?;
    Ok(config)
}

fn parse_archs(archs: &[String]) -> Result<Vec<Arch>> {
    if archs.is_empty() {
        return Ok(vec![Arch::SM80, Arch::SM89, Arch::SM90]);
    }
    archs
        .iter()
        .map(|a| Arch::parse(a).map_err(|e| usage(e.to_string())))
        .collect()
}

fn open_device(choice: BackendChoice) -> Result<Device> {
    match choice {
        BackendChoice::Cpu => Ok(Device::cpu()),
        BackendChoice::Host => Ok(Device::host()?),
        BackendChoice::HostSanitized => Ok(Device::host_with(
            warpforge_dsl::host::HostOptions::sanitized(),
        )?),
        BackendChoice::Cuda => Device::cuda(0)
            .context("the cuda backend is unavailable (use --backend cpu for the interpreter)"),
        BackendChoice::Auto => match Device::cuda(0) {
            Ok(d) => Ok(d),
            Err(e) => {
                eprintln!("note: no GPU ({e}); using the CPU interpreter");
                Ok(Device::cpu())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, suggestions};

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn close_names_are_suggested_nearest_first() {
        let names = [
            "rmsnorm_f16",
            "rmsnorm_bf16",
            "layernorm_f16",
            "gemm",
            "softmax",
        ];
        assert_eq!(
            suggestions("rmsnorm", &names),
            ["rmsnorm_f16", "rmsnorm_bf16"]
        );
        assert_eq!(suggestions("rmsnrom_f16", &names)[0], "rmsnorm_f16");
        assert_eq!(suggestions("softmx", &names), ["softmax"]);
        assert!(suggestions("flash_attention_v9", &names).is_empty());
    }
}
