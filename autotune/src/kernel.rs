//! A library kernel as the tuner sees it: its space, its code hash and its dtypes.
//!
//! **Code hash.** A result is valid only for the code that was timed, so each is stored
//! with the sha256 (first 16 hex digits) of the CUDA C generated for its config, less the
//! header's `// source: file:line` comment. That is exactly what NVRTC compiles: an edit
//! to the kernel, to a device function it calls, or to the code generator changes it;
//! moving the kernel within its file does not. The kernel's hash (in [`EntryKey`]) is
//! the default config's. (The surface IR's `Debug` text would not do: it holds the
//! constraint functions' addresses, which change from build to build.)

use crate::key::{Bucket, EntryKey};
use crate::TuneError;
use sha2::{Digest, Sha256};
use warpforge_dsl::nvrtc::Arch;
use warpforge_dsl::typed::{self, ParamKind};
use warpforge_dsl::{codegen, resolve, Config, KernelDef};
use warpforge_kernels::check::Problem;
use warpforge_kernels::Kernel;

/// A library kernel prepared for tuning.
#[derive(Clone)]
pub struct TuneKernel {
    pub lib: Kernel,
    /// The code hash of the default config.
    pub ir_hash: String,
    /// Element types of its buffer parameters, in order, deduplicated (`["f32"]`).
    pub dtypes: Vec<String>,
    /// The oldest arch its intrinsics allow, and the intrinsic that needs it.
    pub min_arch: Option<(Arch, &'static str)>,
}

impl TuneKernel {
    pub fn new(lib: Kernel) -> Result<TuneKernel, TuneError> {
        let def = lib.def();
        let typed = specialize(def, &def.space.default_config())?;
        Ok(TuneKernel {
            lib,
            ir_hash: hash_source(&codegen::cuda_source(&typed)),
            dtypes: dtypes(&typed),
            min_arch: warpforge_dsl::min_arch(&typed),
        })
    }

    /// Why the kernel cannot run on `arch` (an intrinsic it uses needs a newer one), if so.
    pub fn unsupported_on(&self, arch: Arch) -> Option<String> {
        match self.min_arch {
            Some((needs, intrinsic)) if needs > arch => Some(format!(
                "`{}` uses `{intrinsic}`, which needs {needs} or newer",
                self.name()
            )),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        self.lib.name()
    }

    pub fn def(&self) -> &'static KernelDef {
        self.lib.def()
    }

    /// Whether `config` can compute a problem of `dims` as laid out (the library
    /// description decides: a layout tunable must match the problem's).
    pub fn admits(&self, config: &Config, dims: &[usize]) -> bool {
        self.lib.admits(config, &Problem::new("", dims.to_vec()))
    }

    pub fn default_config(&self) -> Config {
        self.def().space.default_config()
    }

    /// Every config of the declared space (constraints applied).
    pub fn space(&self) -> Vec<Config> {
        self.def().space.configs()
    }

    /// The code hash of one config's specialization.
    pub fn config_hash(&self, config: &Config) -> Result<String, TuneError> {
        let typed = specialize(self.def(), config)?;
        Ok(hash_source(&codegen::cuda_source(&typed)))
    }

    /// The cache key of a problem of shape `dims` (bucketed by the dims the kernel's
    /// description keys it by).
    pub fn entry_key(&self, dims: &[usize]) -> Result<EntryKey, TuneError> {
        let dims = &self.lib.tune_dims(&Problem::new("", dims.to_vec()));
        let bucket = Bucket::of(dims).ok_or_else(|| TuneError::Shape {
            kernel: self.name().to_string(),
            message: format!(
                "{} dimensions; at most {} are supported",
                dims.len(),
                crate::key::MAX_RANK
            ),
        })?;
        Ok(EntryKey {
            kernel: self.name().to_string(),
            ir_hash: self.ir_hash.clone(),
            dtypes: self.dtypes.clone(),
            bucket,
        })
    }
}

pub(crate) fn specialize(def: &KernelDef, config: &Config) -> Result<typed::Kernel, TuneError> {
    resolve::specialize(def, config).map_err(|e| TuneError::Kernel(e.into()))
}

/// sha256 of the source without its `// source:` comment, as 16 hex digits.
pub fn hash_source(source: &str) -> String {
    let mut h = Sha256::new();
    for line in source.lines().filter(|l| !l.starts_with("// source:")) {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn dtypes(kernel: &typed::Kernel) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &kernel.body.params {
        if let ParamKind::Slice { elem, .. } = p.kind {
            let name = elem.to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_the_source_position_only() {
        let a = "// warpforge kernel k\n// source: a.rs:1\nint x;\n";
        let b = "// warpforge kernel k\n// source: a.rs:99\nint x;\n";
        let c = "// warpforge kernel k\n// source: a.rs:1\nint y;\n";
        assert_eq!(hash_source(a), hash_source(b));
        assert_ne!(hash_source(a), hash_source(c));
        assert_eq!(hash_source(a).len(), 16);
    }

    #[test]
    fn library_kernels_hash_stably_and_per_config() {
        let gemm = TuneKernel::new(warpforge_kernels::find("gemm").unwrap()).unwrap();
        let again = TuneKernel::new(warpforge_kernels::find("gemm").unwrap()).unwrap();
        assert_eq!(gemm.ir_hash, again.ir_hash);
        assert_eq!(gemm.dtypes, ["f32"]);
        let default = gemm.default_config();
        assert_eq!(gemm.config_hash(&default).unwrap(), gemm.ir_hash);
        let other = gemm.space().into_iter().find(|c| *c != default).unwrap();
        assert_ne!(gemm.config_hash(&other).unwrap(), gemm.ir_hash);
        let key = gemm.entry_key(&[100, 4096, 4096]).unwrap();
        assert_eq!(key.bucket.dims(), [128, 4096, 4096]);
        assert!(gemm.entry_key(&[1; 7]).is_err());
    }
}
