//! Finding NVRTC, compiling CUDA C to cubin, resource usage, and the on-disk module cache.
//!
//! NVRTC is called through our own `libloading` function table (`api.rs`), not through
//! cudarc's `nvrtc` module: cudarc looks the library up by name (which only works when
//! `LD_LIBRARY_PATH` was set before the process started) and panics when it is absent. We
//! discover the library ([`discover()`]), load it once by full path and keep it for the
//! process, so a missing NVRTC is an [`NvrtcError::NotFound`] that says how to install it.
//!
//! [`compile`] always runs NVRTC; [`compile_cached`] goes through the process-wide
//! [`CompileCache`] (memory, then disk). [`sass`] disassembles the cubins with cuobjdump.

mod api;
mod arch;
mod cache;
mod discover;
mod error;
mod requires;
mod resources;
pub mod sass;

pub use arch::Arch;
pub use cache::CompileCache;
pub use discover::{discover, newest_lib, DiscoveryInputs, Toolkit};
pub use error::{NvrtcError, INSTALL_HINT};
pub(crate) use requires::copy_async_name;
pub(crate) use requires::walk_exprs;
pub use requires::{
    check_arch, check_compile, check_nvrtc_version, intrinsic_min_arch, intrinsic_min_ptx,
    min_arch, min_ptx, PtxRequirement,
};
pub(crate) use resources::parse_ptxas_log;
pub use resources::{FunctionResources, ResourceUsage};

use api::Nvrtc;

/// The name NVRTC gives the program in its log (`kernel.cu(12): error: ...`).
const PROGRAM_NAME: &str = "kernel.cu";

/// Compiler switches beyond the fixed ones (arch, include path, C++17, line info, ptxas -v,
/// and `--fmad=false` unless `fast_math`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Passed to NVRTC verbatim, after ours.
    pub extra: Vec<String>,
    /// `--use_fast_math`.
    pub fast_math: bool,
    /// `--maxrregcount=N`.
    pub max_registers: Option<u32>,
}

/// A compiled module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The cubin for the requested arch (an ELF file).
    pub cubin: Vec<u8>,
    /// The PTX, for the driver to JIT on a device whose arch has no cubin here.
    pub ptx: String,
    /// The usage of the entry function (the maximum over entries when there are several).
    pub resources: ResourceUsage,
    /// ptxas's report of every function, entries and non-inlined device functions.
    pub functions: Vec<FunctionResources>,
    /// The NVRTC log (warnings and the ptxas report).
    pub log: String,
    pub nvrtc_version: (i32, i32),
    /// Whether this came from the cache (memory or disk) rather than from NVRTC.
    pub cached: bool,
}

/// Where NVRTC and the headers were found, after loading NVRTC.
pub fn toolkit() -> Result<&'static Toolkit, NvrtcError> {
    Ok(&Nvrtc::get()?.toolkit)
}

/// The loaded NVRTC's version.
pub fn version() -> Result<(i32, i32), NvrtcError> {
    Ok(Nvrtc::get()?.version)
}

/// The real archs the loaded NVRTC can compile for.
pub fn supported_archs() -> Result<&'static [Arch], NvrtcError> {
    Ok(&Nvrtc::get()?.supported)
}

/// Compiles `source` for `arch` with NVRTC (no cache).
pub fn compile(source: &str, arch: Arch, options: &CompileOptions) -> Result<Compiled, NvrtcError> {
    let nvrtc = Nvrtc::get()?;
    if !nvrtc.supported.contains(&arch) {
        return Err(NvrtcError::UnsupportedArch {
            arch,
            supported: nvrtc.supported.clone(),
        });
    }
    let mut args = command_line(arch, options);
    args.insert(
        1,
        format!("--include-path={}", nvrtc.toolkit.include.display()),
    );
    let out = nvrtc.compile(source, PROGRAM_NAME, &args)?;
    let Some((cubin, ptx)) = out.images else {
        let lines = error::mentioned_lines(&out.log, PROGRAM_NAME);
        return Err(NvrtcError::Compile {
            numbered_source: error::numbered_source(source, &lines),
            log: out.log,
            rust_lines: Vec::new(),
        });
    };
    let functions = parse_ptxas_log(&out.log);
    Ok(Compiled {
        cubin,
        ptx,
        resources: resources::entry_usage(&functions),
        functions,
        log: out.log,
        nvrtc_version: nvrtc.version,
        cached: false,
    })
}

/// Compiles through the process-wide cache ([`CompileCache::global`]).
pub fn compile_cached(
    source: &str,
    arch: Arch,
    options: &CompileOptions,
) -> Result<Compiled, NvrtcError> {
    CompileCache::global().compile(source, arch, options)
}

/// NVRTC's options for `arch` and `options`, except the machine-specific include path
/// (which is left out of cache keys).
fn command_line(arch: Arch, options: &CompileOptions) -> Vec<String> {
    let mut args = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "-lineinfo".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    if options.fast_math {
        args.push("--use_fast_math".to_string());
    } else {
        // No contraction of `a * b + c` into an FMA: the GPU then rounds exactly as the
        // interpreter (and Rust) do. Kernels ask for fused multiply-adds with `mul_add`.
        args.push("--fmad=false".to_string());
    }
    if let Some(n) = options.max_registers {
        args.push(format!("--maxrregcount={n}"));
    }
    args.extend(options.extra.iter().cloned());
    args
}

#[cfg(test)]
mod tests;
