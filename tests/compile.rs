//! T2: every specialization of every library kernel compiles with NVRTC for sm_80, sm_89
//! and sm_90; the default configs spill nothing. Needs NVRTC (scripts/setup-nvrtc installs
//! it); without it the tests say why they skip, and fail when WARPFORGE_REQUIRE_NVRTC=1.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernels::{families, library};

const ARCHS: [Arch; 3] = [Arch::SM80, Arch::SM89, Arch::SM90];

/// Whether NVRTC is usable; prints the reason and returns false when the test should skip.
fn nvrtc_present() -> bool {
    match nvrtc::version() {
        Ok(_) => true,
        Err(e) if std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_some() => {
            panic!("NVRTC is required here (WARPFORGE_REQUIRE_NVRTC is set): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: NVRTC not found, compile tests not run: {e}");
            false
        }
    }
}

/// The archs of [`ARCHS`] the kernel can run on; the ones below its newest intrinsic's
/// minimum must be refused by `check_arch` (naming the intrinsic) before NVRTC sees them.
fn archs_for(typed: &warpforge::dsl::typed::Kernel) -> Vec<Arch> {
    let needs = warpforge::dsl::min_arch(typed);
    ARCHS
        .into_iter()
        .filter(|&arch| match needs {
            Some((min, intrinsic)) if arch < min => {
                let err = nvrtc::check_arch(typed, arch).unwrap_err().to_string();
                assert!(err.contains(intrinsic), "{}: {err}", typed.name);
                false
            }
            _ => true,
        })
        .collect()
}

#[test]
fn every_specialization_compiles_for_every_arch() {
    if !nvrtc_present() {
        return;
    }
    // Every config of each generic source's first instance, a sample of the others (they
    // differ only in element types).
    let mut jobs = Vec::new();
    let instances = families()
        .into_iter()
        .flat_map(|f| f.into_iter().enumerate());
    for (i, k) in instances {
        let configs = if i == 0 {
            k.configs()
        } else {
            k.sample_configs(16)
        };
        for config in configs {
            let typed = resolve::specialize(k.def(), &config).unwrap();
            let archs = archs_for(&typed);
            jobs.push((k.name(), config, codegen::cuda_source(&typed), archs));
        }
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let jobs = &jobs;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (name, config, source, archs) in jobs.iter().skip(w).step_by(workers) {
                        for &arch in archs {
                            if let Err(e) =
                                nvrtc::compile_cached(source, arch, &CompileOptions::default())
                            {
                                bad.push(format!("{name} {config} {arch}: {e}"));
                            }
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
        "{} compile failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} specializations × {} archs compiled",
        jobs.len(),
        ARCHS.len()
    );
}

#[test]
fn default_configs_spill_nothing() {
    if !nvrtc_present() {
        return;
    }
    for k in library() {
        let typed = resolve::specialize(k.def(), &k.default_config()).unwrap();
        let source = codegen::cuda_source(&typed);
        for arch in archs_for(&typed) {
            let c = nvrtc::compile_cached(&source, arch, &CompileOptions::default()).unwrap();
            let r = &c.resources;
            eprintln!(
                "{} {arch}: {} registers, {} B shared, {} B stack",
                k.name(),
                r.registers,
                r.shared_bytes,
                r.stack_bytes
            );
            assert!(
                r.registers > 0,
                "{} {arch}: no register count parsed",
                k.name()
            );
            assert_eq!(
                (r.spill_stores_bytes, r.spill_loads_bytes),
                (0, 0),
                "{} spills on {arch}",
                k.name()
            );
        }
    }
}
