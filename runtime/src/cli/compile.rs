//! `warpforge compile`: NVRTC-compile specializations and print their resource usage, and
//! with `--sass` their disassembly (cuobjdump) with a count of the opcodes that matter;
//! `--json` prints the same as one JSON document, `--out DIR` exports each specialization
//! (`.cu`, `.ptx`, `.cubin` and a manifest, [`warpforge_dsl::export`]).

use super::config_for;
use super::outcome::{Outcome, Tally};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use warpforge_dsl::nvrtc::sass::{self, Sass};
use warpforge_dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge_kernels::Kernel;

/// Prints the resource table, then (when `sass`) each listing with its opcode summary.
pub fn report(
    kernels: &[Kernel],
    archs: &[Arch],
    config: Option<&str>,
    space: bool,
    sass: bool,
) -> Result<ExitCode> {
    Ok(report_tally(kernels, archs, config, space, sass)?.exit_code())
}

/// `compile --json`: every compile as one JSON document (`nvrtc`, `results`: kernel, arch,
/// config, status and, when compiled, its resources; `tally`).
pub fn report_json(
    kernels: &[Kernel],
    archs: &[Arch],
    config: Option<&str>,
    space: bool,
) -> Result<ExitCode> {
    let (major, minor) = nvrtc::version()?;
    let mut tally = Tally::default();
    let mut results = Vec::new();
    for k in kernels {
        for config in &configs_of(k, config, space)? {
            let typed = warpforge_dsl::resolve::specialize(k.def(), config)?;
            let (source, line_map) = warpforge_dsl::codegen::cuda_source_with_map(&typed);
            for &arch in archs {
                let compiled = nvrtc::check_compile(&typed, arch).and_then(|()| {
                    nvrtc::compile_cached(&source, arch, &CompileOptions::default())
                        .map_err(|e| line_map.annotate(e))
                });
                let mut row = json!({
                    "kernel": k.name(), "arch": arch.to_string(), "config": config.to_string(),
                });
                let outcome = match &compiled {
                    Ok(c) => {
                        let r = &c.resources;
                        row["resources"] = json!({
                            "registers": r.registers, "shared_bytes": r.shared_bytes,
                            "stack_bytes": r.stack_bytes, "spill_stores_bytes": r.spill_stores_bytes,
                            "spill_loads_bytes": r.spill_loads_bytes,
                        });
                        Outcome::Passed
                    }
                    Err(e @ nvrtc::NvrtcError::NotFound { .. }) => return Err(e.clone().into()),
                    Err(e) => Outcome::of_error(e),
                };
                row["status"] = json!(outcome.status());
                if let Outcome::Failed(why) = &outcome {
                    row["error"] = json!(why);
                }
                tally.add(&outcome);
                results.push(row);
            }
        }
    }
    let doc = json!({
        "nvrtc": format!("{major}.{minor}"),
        "results": results,
        "tally": { "passed": tally.passed, "failed": tally.failed, "skipped": tally.skipped },
    });
    println!("{doc:#}");
    Ok(tally.exit_code())
}

/// `compile --out DIR`: exports each specialization for `archs` (those it can run on) and
/// prints what it wrote (with `json`, the manifests as one JSON array).
pub fn export(
    kernels: &[Kernel],
    archs: &[Arch],
    config: Option<&str>,
    space: bool,
    dir: &Path,
    json: bool,
) -> Result<ExitCode> {
    let mut manifests: Vec<Value> = Vec::new();
    for k in kernels {
        for config in &configs_of(k, config, space)? {
            let typed = warpforge_dsl::resolve::specialize(k.def(), config)?;
            let exported = warpforge_dsl::export::export(&typed, archs, dir)?;
            if !json {
                let archs: Vec<_> = exported.manifest["images"]
                    .as_array()
                    .map(|i| i.iter().filter_map(|i| i["arch"].as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{} ({config}): {} for {} in {}",
                    k.name(),
                    typed.symbol,
                    archs.join(", "),
                    dir.display()
                );
                for (arch, why) in &exported.skipped {
                    println!("  {arch}: skipped ({why})");
                }
            }
            manifests.push(exported.manifest);
        }
    }
    if json {
        println!("{:#}", Value::Array(manifests));
    }
    Ok(ExitCode::SUCCESS)
}

/// The configs a compile covers: the whole space, or the one `--config` names (default:
/// the kernel's default).
fn configs_of(k: &Kernel, config: Option<&str>, space: bool) -> Result<Vec<warpforge_dsl::Config>> {
    Ok(if space {
        k.configs()
    } else {
        vec![config_for(k, config)?]
    })
}

/// [`report`]'s work: a compile for an arch older than the kernel's newest intrinsic is
/// skipped (`needs sm_89: …`), not failed. Returns the tally after printing it.
pub fn report_tally(
    kernels: &[Kernel],
    archs: &[Arch],
    config: Option<&str>,
    space: bool,
    sass: bool,
) -> Result<Tally> {
    // Look cuobjdump up first: when it is missing, say so before compiling anything.
    let cuobjdump = if sass { Some(sass::cuobjdump()?) } else { None };
    let mut listings: Vec<(String, Sass)> = Vec::new();
    let mut tally = Tally::default();
    let (major, minor) = nvrtc::version()?;
    let toolkit = nvrtc::toolkit()?;
    println!(
        "nvrtc: {major}.{minor} from {} (lib {}, include {})",
        toolkit.source,
        toolkit.lib.display(),
        toolkit.include.display()
    );
    println!(
        "{:<14} {:<6} {:<44} {:>5} {:>7} {:>6} {:>6} {:>6}",
        "kernel", "arch", "config", "regs", "smem", "stack", "spillS", "spillL"
    );
    for k in kernels {
        for config in &configs_of(k, config, space)? {
            let typed = warpforge_dsl::resolve::specialize(k.def(), config)?;
            let (source, line_map) = warpforge_dsl::codegen::cuda_source_with_map(&typed);
            for &arch in archs {
                let compiled = nvrtc::check_compile(&typed, arch).and_then(|()| {
                    nvrtc::compile_cached(&source, arch, &CompileOptions::default())
                        .map_err(|e| line_map.annotate(e))
                });
                match compiled {
                    Ok(c) => {
                        tally.add(&Outcome::Passed);
                        let r = &c.resources;
                        println!(
                            "{:<14} {:<6} {:<44} {:>5} {:>7} {:>6} {:>6} {:>6}",
                            k.name(),
                            arch.to_string(),
                            config.to_string(),
                            r.registers,
                            r.shared_bytes,
                            r.stack_bytes,
                            r.spill_stores_bytes,
                            r.spill_loads_bytes
                        );
                        if let Some(tool) = &cuobjdump {
                            let label = format!("{} {arch} {config}", k.name());
                            match disassemble(tool, &c.cubin, arch, &label) {
                                Some(listing) => listings.push((label, listing)),
                                None => tally.add(&Outcome::Failed("no SASS".into())),
                            }
                        }
                    }
                    Err(e @ nvrtc::NvrtcError::NotFound { .. }) => return Err(e.into()),
                    Err(e) => {
                        let outcome = Outcome::of_error(&e);
                        tally.add(&outcome);
                        if let Outcome::Skipped(_) = outcome {
                            println!(
                                "{:<14} {:<6} {:<44} {}",
                                k.name(),
                                arch.to_string(),
                                config.to_string(),
                                outcome.status()
                            );
                            continue;
                        }
                        println!(
                            "{:<14} {:<6} {:<44} FAILED\n{e}",
                            k.name(),
                            arch.to_string(),
                            config.to_string()
                        );
                    }
                }
            }
        }
    }
    for (label, listing) in &listings {
        println!("\n=== SASS of {label} ===\n{}", listing.text.trim_end());
        println!("opcodes: {}", listing.summary());
    }
    println!("compile: {tally}");
    Ok(tally)
}

/// The SASS of one cubin, or `None` after printing why there is none.
fn disassemble(tool: &Path, cubin: &[u8], arch: Arch, label: &str) -> Option<Sass> {
    sass::disassemble_with(tool, cubin, arch)
        .map_err(|e| println!("{label}: SASS FAILED\n{e}"))
        .ok()
}
