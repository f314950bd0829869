//! The host harness driver: runs the CUDA C that [`crate::codegen`] emits on the CPU.
//!
//! The generated source is compiled unchanged, after two lines that define
//! `WARPFORGE_HOST` and include the harness (`dsl/host/warpforge_host.h`: CUDA's execution
//! model with fibers, warp collectives, atomics, f16/bf16/FP8, and the PTX the helpers wrap,
//! written from the PTX ISA), by the system C++ compiler into a shared library (cached on
//! disk like NVRTC's modules), loaded with `libloading` and launched with the cuda backend's
//! argument ABI: each slice is a pointer and a `u32` length, each value its C type's bytes,
//! passed as an array of pointers (`cuLaunchKernel`'s `kernelParams`).
//!
//! [`HostOptions::sanitize`] builds a separate program instead, with
//! `-fsanitize=address,undefined,float-cast-overflow` (signed overflow, bad shifts,
//! out-of-range float→int casts, out-of-bounds accesses in the generated C; each buffer is
//! its own allocation of its exact size) and runs it in a child process, since ASan must be
//! loaded first in its process.

mod compile;
mod launch;
#[cfg(test)]
mod tests;

pub use compile::Compiler;
pub use launch::run;

/// How the host harness builds and runs a kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostOptions {
    /// Build with ASan and UBSan and run in a child process (slower; catches undefined
    /// behaviour in the generated C).
    pub sanitize: bool,
}

impl HostOptions {
    pub fn sanitized() -> HostOptions {
        HostOptions { sanitize: true }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "no C++ compiler for the host backend (tried {tried}). Install one (`apt-get install \
         g++`, or run scripts/setup-host-cc), or name it with WARPFORGE_HOST_CXX"
    )]
    NoCompiler { tried: String },

    #[error(
        "the host C++ compiler ({compiler}) rejected the generated CUDA C of {source_file} \
         (a generator or harness bug):\n{log}"
    )]
    Compile {
        compiler: String,
        source_file: String,
        log: String,
    },

    #[error("host harness: {what}: {message}")]
    Io { what: String, message: String },

    #[error("host harness: cannot load {path}: {message}")]
    Load { path: String, message: String },

    #[error("kernel `{kernel}` on the host harness: {message}")]
    Launch { kernel: String, message: String },

    #[error(
        "kernel `{kernel}` on the sanitized host build failed (a sanitizer report is undefined \
         behaviour in the generated C):\n{report}"
    )]
    Sanitizer { kernel: String, report: String },
}

/// The complete translation unit for the host: the harness, the generated source as NVRTC
/// sees it (line numbers kept with `#line`), and the launch entry.
pub fn host_source(kernel: &crate::typed::Kernel, options: &HostOptions) -> String {
    let generated = crate::codegen::cuda_source(kernel);
    let main = if options.sanitize {
        "#include \"warpforge_host_main.h\"\n"
    } else {
        ""
    };
    format!(
        "#define WARPFORGE_HOST 1\n#include \"warpforge_host.h\"\n#line 1 \"{symbol}.cu\"\n\
         {generated}\n#line 100000 \"warpforge-host-entry\"\nextern \"C\" int \
         wf_host_launch(const wf_host::LaunchSpec* spec, void** args, char* error, size_t \
         error_len) {{\n    return wf_host::launch_kernel(&{symbol}, *spec, args, error, \
         error_len);\n}}\n{main}",
        symbol = kernel.symbol
    )
}
