//! What the training-kernel tests share (`tests/{loss,norm_backward,embed_backward,optim}.rs`):
//! finding a kernel, checking every config on the CPU interpreter, and compiling the default
//! configs with NVRTC.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve, Device};
use warpforge::kernels::{find, Kernel};

pub fn kernel(name: &str) -> Kernel {
    find(name).unwrap_or_else(|| panic!("{name} is not registered"))
}

/// Every config of each kernel in `names` on every check problem, against the reference
/// within the kernel's tolerance; returns the number of runs.
pub fn check_whole_space(names: &[&str]) -> usize {
    let device = Device::cpu();
    let mut runs = 0;
    for &name in names {
        let k = kernel(name);
        for problem in k.problems() {
            for config in k.configs() {
                let report = k.check(&device, &config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report}",
                    problem.name
                );
                runs += 1;
            }
        }
    }
    runs
}

/// The default config of each kernel compiles with NVRTC for sm_80 and sm_90 without
/// spilling (skipped, saying why, without NVRTC unless WARPFORGE_REQUIRE_NVRTC is set).
pub fn compile_defaults(names: &[&str]) {
    if let Err(e) = nvrtc::version() {
        assert!(
            std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_none(),
            "NVRTC required: {e}"
        );
        eprintln!("SKIPPED: NVRTC not found, compile test not run: {e}");
        return;
    }
    for &name in names {
        let k = kernel(name);
        let typed = resolve::specialize(k.def(), &k.default_config()).unwrap();
        let source = codegen::cuda_source(&typed);
        for arch in [Arch::SM80, Arch::SM90] {
            let c = nvrtc::compile_cached(&source, arch, &CompileOptions::default()).unwrap();
            let r = &c.resources;
            println!(
                "{name} {arch}: {} registers, {} B shared",
                r.registers, r.shared_bytes
            );
            assert_eq!(
                (r.spill_stores_bytes, r.spill_loads_bytes),
                (0, 0),
                "{name} spills"
            );
        }
    }
}
