//! `warpforge compile`: NVRTC-compile specializations and print their resource usage.

use super::config_for;
use anyhow::Result;
use std::process::ExitCode;
use warpforge_dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge_kernels::LibraryKernel;

pub fn report(
    kernels: &[LibraryKernel],
    archs: &[Arch],
    config: Option<&str>,
    space: bool,
) -> Result<ExitCode> {
    let mut failures = 0usize;
    println!(
        "{:<14} {:<6} {:<44} {:>5} {:>7} {:>6} {:>6} {:>6}",
        "kernel", "arch", "config", "regs", "smem", "stack", "spillS", "spillL"
    );
    for k in kernels {
        let configs = if space {
            k.configs()
        } else {
            vec![config_for(k, config)?]
        };
        for config in &configs {
            let typed = warpforge_dsl::resolve::specialize((k.def)(), config)?;
            let (source, line_map) = warpforge_dsl::codegen::cuda_source_with_map(&typed);
            for &arch in archs {
                let compiled = nvrtc::check_arch(&typed, arch).and_then(|()| {
                    nvrtc::compile_cached(&source, arch, &CompileOptions::default())
                        .map_err(|e| line_map.annotate(e))
                });
                match compiled {
                    Ok(c) => {
                        let r = &c.resources;
                        println!(
                            "{:<14} {:<6} {:<44} {:>5} {:>7} {:>6} {:>6} {:>6}",
                            k.name,
                            arch.to_string(),
                            config.to_string(),
                            r.registers,
                            r.shared_bytes,
                            r.stack_bytes,
                            r.spill_stores_bytes,
                            r.spill_loads_bytes
                        );
                    }
                    Err(e @ nvrtc::NvrtcError::NotFound { .. }) => return Err(e.into()),
                    Err(e) => {
                        failures += 1;
                        println!(
                            "{:<14} {:<6} {:<44} FAILED\n{e}",
                            k.name,
                            arch.to_string(),
                            config.to_string()
                        );
                    }
                }
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
