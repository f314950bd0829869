//! SASS, the machine code in a cubin, through NVIDIA's `cuobjdump -sass`: a static check
//! that the compiler emitted what a kernel was written for (tensor-core `HMMA`, `LDSM` for
//! ldmatrix, `LDGSTS` for cp.async) and no local-memory traffic (`LDL`/`STL`), without a GPU.
//!
//! cuobjdump, and the nvdisasm it runs, come from the `nvidia-cuda-cuobjdump` and
//! `nvidia-cuda-nvdisasm` wheels that `scripts/setup-nvrtc` installs into `.venv` (see
//! [`find_cuobjdump`] for where else it is looked for). There are no CUDA 12 wheels; CUDA 13's
//! tools read the sm_80..sm_90 cubins of NVRTC 12.9.

mod locate;
mod parse;

pub use locate::{find_cuobjdump, ToolInputs};
pub use parse::{Instruction, SassFunction};

use super::Arch;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to install cuobjdump.
pub const SASS_INSTALL_HINT: &str = "run `scripts/setup-nvrtc` in the workspace root (it \
installs the nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels into .venv), or point \
WARPFORGE_CUOBJDUMP at a cuobjdump binary with nvdisasm next to it or on PATH";

/// The opcodes [`Sass::summary`] reports: tensor-core MMA, ldmatrix, cp.async, local memory.
pub const SUMMARY_OPCODES: [&str; 6] = ["HMMA", "QMMA", "LDGSTS", "LDSM", "LDL", "STL"];

#[derive(Clone, Debug, thiserror::Error)]
pub enum SassError {
    #[error(
        "cuobjdump was not found. Tried:\n{}\nFix: {SASS_INSTALL_HINT}.",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound { tried: Vec<String> },

    #[error(
        "WARPFORGE_CUOBJDUMP={} is neither an executable nor a directory holding an \
         executable `cuobjdump`; fix the variable or unset it to search .venv, CUDA_HOME and PATH",
        .path.display()
    )]
    BadOverride { path: PathBuf },

    #[error("could not {action}: {reason}")]
    Io { action: String, reason: String },

    #[error(
        "`{} -sass` failed ({status}) on the cubin:\n{stderr}\n(cuobjdump runs nvdisasm, \
         which must be next to it or on PATH; to install both, {SASS_INSTALL_HINT})",
        .tool.display()
    )]
    Failed {
        tool: PathBuf,
        status: String,
        stderr: String,
    },

    #[error(
        "the cubin holds SASS for {}, not for the requested {expected}",
        if .found.is_empty() { "no architecture".to_string() }
        else { .found.iter().map(Arch::to_string).collect::<Vec<_>>().join(", ") }
    )]
    ArchMismatch { expected: Arch, found: Vec<Arch> },
}

/// The disassembly of one cubin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sass {
    pub arch: Arch,
    /// cuobjdump's listing, verbatim.
    pub text: String,
    /// Every function in the cubin: kernels and non-inlined device functions.
    pub functions: Vec<SassFunction>,
}

impl Sass {
    /// Every instruction of every function.
    pub fn instructions(&self) -> impl Iterator<Item = &Instruction> {
        self.functions.iter().flat_map(|f| f.instructions.iter())
    }

    /// The instructions whose opcode starts with `opcode_prefix`: `"HMMA"` counts
    /// `HMMA.16816.F32`, `"LDS"` counts `LDS.U.128` and also `LDSM` (write `"LDS."` to
    /// leave it out).
    pub fn count(&self, opcode_prefix: &str) -> usize {
        self.instructions()
            .filter(|i| i.opcode.starts_with(opcode_prefix))
            .count()
    }

    /// Local-memory loads and stores (`LDL`, `STL`): register spills, or arrays the compiler
    /// could not keep in registers.
    pub fn local_memory_ops(&self) -> usize {
        self.instructions()
            .filter(|i| matches!(i.base_opcode(), "LDL" | "STL"))
            .count()
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&SassFunction> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// One line: `sm_80: 1234 instructions; HMMA 8, QMMA 0, LDGSTS 4, LDSM 6, LDL 0, STL 0`.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = SUMMARY_OPCODES
            .iter()
            .map(|op| format!("{op} {}", self.count_base(op)))
            .collect();
        format!(
            "{}: {} instructions; {}",
            self.arch,
            self.instructions().count(),
            counts.join(", ")
        )
    }

    /// Instructions whose opcode without modifiers is exactly `base`.
    fn count_base(&self, base: &str) -> usize {
        self.instructions()
            .filter(|i| i.base_opcode() == base)
            .count()
    }
}

/// The cuobjdump of this process (see [`find_cuobjdump`]).
pub fn cuobjdump() -> Result<PathBuf, SassError> {
    find_cuobjdump(&ToolInputs::from_env())
}

/// Disassembles a cubin compiled for `arch` with the cuobjdump [`cuobjdump()`] finds.
pub fn disassemble(cubin: &[u8], arch: Arch) -> Result<Sass, SassError> {
    disassemble_with(&cuobjdump()?, cubin, arch)
}

/// Disassembles a cubin compiled for `arch` with the given cuobjdump.
pub fn disassemble_with(tool: &Path, cubin: &[u8], arch: Arch) -> Result<Sass, SassError> {
    let text = run_cuobjdump(tool, cubin)?;
    let listing = parse::parse_listing(&text);
    // A cubin holds one arch; anything else means the caller passed the wrong one.
    if listing.archs != [arch] {
        return Err(SassError::ArchMismatch {
            expected: arch,
            found: listing.archs,
        });
    }
    Ok(Sass {
        arch,
        text,
        functions: listing.functions,
    })
}

/// Writes the cubin to a temporary file (cuobjdump reads only files) and returns the listing.
fn run_cuobjdump(tool: &Path, cubin: &[u8]) -> Result<String, SassError> {
    let io = |action: &str| {
        let action = action.to_string();
        move |e: std::io::Error| SassError::Io {
            action,
            reason: e.to_string(),
        }
    };
    let mut file = tempfile::Builder::new()
        .prefix("warpforge-")
        .suffix(".cubin")
        .tempfile()
        .map_err(io("create a temporary file for the cubin"))?;
    file.write_all(cubin)
        .and_then(|()| file.flush())
        .map_err(io("write the cubin to a temporary file"))?;
    let out = Command::new(tool)
        .arg("-sass")
        .arg(file.path())
        .output()
        .map_err(io(&format!("run {}", tool.display())))?;
    if !out.status.success() {
        return Err(SassError::Failed {
            tool: tool.to_path_buf(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    // stderr holds only notes on success (CUDA 13 warns about the ELF format); dropped.
    String::from_utf8(out.stdout).map_err(|e| SassError::Io {
        action: format!("read the output of {}", tool.display()),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
