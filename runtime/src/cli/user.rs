//! The command line for a program's own kernels: a user's binary registers its kernels
//! ([`LibraryKernel`](warpforge_kernels::LibraryKernel) implementations) and gets
//! `kernels`, `emit`, `compile` (with `--sass`, `--json`, `--out DIR`) and `check`, the same
//! verbs and output as `warpforge` has for the library:
//!
//! ```no_run
//! # use warpforge_kernels::Kernel;
//! # fn my_kernels() -> Vec<Kernel> { Vec::new() }
//! fn main() -> std::process::ExitCode {
//!     warpforge_runtime::cli::user::main(&my_kernels())
//! }
//! ```
//!
//! `runtime/examples/user_cli.rs` is a complete one.

use super::{check, compile, config_for, open_device, parse_archs, BackendChoice};
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warpforge_kernels::Kernel;

#[derive(Parser, Debug)]
#[command(about = "Print, compile and check this program's warpforge kernels")]
pub struct UserCli {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List the kernels with their tunable spaces.
    Kernels,
    /// Print the CUDA C of one specialization.
    Emit {
        kernel: String,
        /// NAME=VALUE,... (default: the kernel's default config)
        #[arg(long)]
        config: Option<String>,
    },
    /// Compile with NVRTC and print the resource usage, or export with --out.
    Compile {
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
        /// Also print each cubin's SASS (cuobjdump).
        #[arg(long)]
        sass: bool,
        /// One JSON document instead of the table (with --out: the manifests).
        #[arg(long, conflicts_with = "sass")]
        json: bool,
        /// Export each specialization into DIR (.cu, .ptx, .cubin, JSON manifest).
        #[arg(long, value_name = "DIR", conflicts_with = "sass")]
        out: Option<PathBuf>,
    },
    /// Tune kernels on GPU 0 at the shapes of --shapes and cache the best configs, which
    /// `warpforge_autotune::tuned_config` then returns at launch (`--dry-run`: each space
    /// and its NVRTC pruning, no GPU needed).
    Tune {
        /// Kernels to tune, comma-separated (default: all of this program's).
        #[arg(long, value_delimiter = ',')]
        kernels: Vec<String>,
        /// A JSON list of problems: [{"kernel": NAME, "dims": [..]}, ...].
        #[arg(long)]
        shapes: PathBuf,
        /// Time allowed for timing, e.g. 90s, 10m, 1h30m (default: until done).
        #[arg(long, value_parser = super::autotune::parse_duration)]
        budget: Option<std::time::Duration>,
        /// gp, surrogate, local, random or exhaustive.
        #[arg(long, default_value = "gp")]
        strategy: String,
        /// The tuning cache (default: $WARPFORGE_TUNE_CACHE, else the user cache dir's
        /// warpforge/tune).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
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
    },
}

/// Parses the process's arguments and runs them over `kernels`; errors go to stderr with
/// exit code 2 (usage errors as clap prints them).
pub fn main(kernels: &[Kernel]) -> ExitCode {
    let cli = UserCli::parse();
    match run(kernels, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one parsed command over `kernels`.
pub fn run(kernels: &[Kernel], cli: UserCli) -> Result<ExitCode> {
    match cli.command {
        UserCommand::Kernels => {
            for k in kernels {
                let def = k.def();
                println!("{}  — {}", k.name(), k.summary());
                println!("    space:   {}", def.space);
                println!("    default: {}", k.default_config());
                println!("    source:  {}:{}", def.file, def.line);
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Emit { kernel, config } => {
            let k = find(kernels, &kernel)?;
            let config = config_for(&k, config.as_deref())?;
            let typed = warpforge_dsl::resolve::specialize(k.def(), &config)?;
            print!("{}", warpforge_dsl::codegen::cuda_source(&typed));
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Compile {
            kernel,
            all,
            archs,
            config,
            space,
            sass,
            json,
            out,
        } => {
            let chosen = select(kernels, kernel.as_deref(), all)?;
            let archs = parse_archs(&archs)?;
            let config = config.as_deref();
            match (out, json) {
                (Some(dir), _) => compile::export(&chosen, &archs, config, space, &dir, json),
                (None, true) => compile::report_json(&chosen, &archs, config, space),
                (None, false) => compile::report(&chosen, &archs, config, space, sass),
            }
        }
        UserCommand::Tune {
            kernels: names,
            shapes,
            budget,
            strategy,
            cache_dir,
            dry_run,
        } => {
            let args = super::autotune::AutotuneArgs {
                kernels: names,
                shapes: Some(shapes),
                budget,
                strategy,
                cache_dir,
                dry_run,
                ..super::autotune::AutotuneArgs::default()
            };
            super::autotune::run_for(kernels, &args)
        }
        UserCommand::Check {
            kernel,
            all,
            backend,
            config,
        } => {
            let chosen = select(kernels, kernel.as_deref(), all)?;
            let device = open_device(backend)?;
            check::run(
                &device,
                &chosen,
                check::Scope::from(config.as_deref()),
                check::Log::text(),
            )
        }
    }
}

fn find(kernels: &[Kernel], name: &str) -> Result<Kernel> {
    match kernels.iter().find(|k| k.name() == name) {
        Some(k) => Ok(*k),
        None => {
            let names: Vec<_> = kernels.iter().map(|k| k.name()).collect();
            bail!(
                "unknown kernel `{name}`; this program has: {}",
                names.join(", ")
            )
        }
    }
}

fn select(kernels: &[Kernel], name: Option<&str>, all: bool) -> Result<Vec<Kernel>> {
    match (name, all) {
        (Some(name), false) => Ok(vec![find(kernels, name)?]),
        (None, true) => Ok(kernels.to_vec()),
        _ => bail!("name one kernel, or pass --all"),
    }
}
