//! Export of one specialization for an engine with no Rust at run time: its CUDA C, and per
//! arch its PTX and cubin, with a JSON manifest that says how to launch it (`warpforge
//! compile KERNEL --out DIR` writes these; [`export`] is the same as a call).
//!
//! The manifest (`{symbol}.json`, `"format": 1`):
//! - `symbol`: the `extern "C"` entry in every image; `kernel`, `config`: what it is;
//! - `params`: the entry's C parameters in order — a slice is two, its pointer (`const` when
//!   read-only) and its length in elements as a 32-bit `unsigned int`; a value is its C type
//!   by size (`bool` and FP8 one byte, `__half` / `__nv_bfloat16` two);
//! - `block`: the block shape the kernel declares (`null`: the launcher chooses; library
//!   launchers document theirs), `dynamic_shared_bytes`: the `sharedMemBytes` every launch
//!   passes, and `dynamic_shared_opt_in`: whether the function first needs
//!   `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)` (above
//!   48 KiB);
//! - `images`: per arch (oldest first) the PTX and cubin files with ptxas's registers
//!   and static shared bytes; `min_arch`: the first image's arch (its PTX JITs on any newer
//!   GPU); `requires_arch` / `requires_intrinsic`: the kernel's own floor (`null`: none),
//!   below which no image is written.

use crate::codegen;
use crate::nvrtc::{self, Arch, CompileOptions, Compiled, NvrtcError};
use crate::typed::{Kernel, ParamKind};
use crate::types::Type;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Nvrtc(#[from] NvrtcError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    pub manifest: Value,
    /// Every file written, the manifest last.
    pub files: Vec<PathBuf>,
    /// Archs left out because the kernel needs a newer one (`(arch, reason)`).
    pub skipped: Vec<(Arch, String)>,
}

/// Compiles `kernel` for each of `archs` (those it can run on) and writes the `.cu`, each
/// `.ptx` / `.cubin`, and the manifest into `dir` (created if missing).
pub fn export(kernel: &Kernel, archs: &[Arch], dir: &Path) -> Result<Exported, ExportError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let (source, line_map) = codegen::cuda_source_with_map(kernel);
    let mut files = vec![write(
        dir,
        &format!("{}.cu", kernel.symbol),
        source.as_bytes(),
    )?];
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for &arch in archs {
        if let Err(e) = nvrtc::check_compile(kernel, arch) {
            skipped.push((arch, e.to_string()));
            continue;
        }
        let compiled = nvrtc::compile_cached(&source, arch, &CompileOptions::default())
            .map_err(|e| line_map.annotate(e))?;
        let stem = format!("{}.{arch}", kernel.symbol);
        files.push(write(dir, &format!("{stem}.ptx"), compiled.ptx.as_bytes())?);
        files.push(write(dir, &format!("{stem}.cubin"), &compiled.cubin)?);
        images.push(image(arch, &stem, &compiled));
    }
    let manifest = manifest(kernel, images);
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    files.push(write(
        dir,
        &format!("{}.json", kernel.symbol),
        text.as_bytes(),
    )?);
    Ok(Exported {
        manifest,
        files,
        skipped,
    })
}

/// The manifest of `kernel` with its compiled `images` (see the module docs).
pub fn manifest(kernel: &Kernel, images: Vec<Value>) -> Value {
    let dynamic = codegen::dynamic_shared_bytes(kernel);
    let min_arch = nvrtc::min_arch(kernel);
    let mut images = images;
    images.sort_by_key(|i| i["arch"].as_str().map(|a| Arch::parse(a).ok()));
    json!({
        "format": 1,
        "kernel": kernel.name,
        "symbol": kernel.symbol,
        "config": kernel.config.values.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "source": format!("{}.cu", kernel.symbol),
        "params": params(kernel),
        "block": kernel.block_dim,
        "dynamic_shared_bytes": dynamic,
        "dynamic_shared_opt_in": dynamic as u64 > codegen::MAX_STATIC_SHARED_BYTES,
        "min_arch": images.first().map(|i| i["arch"].clone()),
        "requires_arch": min_arch.map(|(a, _)| a.to_string()),
        "requires_intrinsic": min_arch.map(|(_, why)| why),
        "images": images,
    })
}

/// The entry's C parameters, in order (a slice: pointer then length).
fn params(kernel: &Kernel) -> Vec<Value> {
    let mut out = Vec::new();
    for p in &kernel.body.params {
        match p.kind {
            ParamKind::Slice { elem, mutable } => {
                let constness = if mutable { "" } else { "const " };
                out.push(json!({
                    "name": p.name,
                    "kind": "pointer",
                    "c_type": format!("{constness}{}*", codegen::c_type_name(elem)),
                    "elem": elem.to_string(),
                    "elem_bytes": elem.size_bytes(),
                    "mutable": mutable,
                }));
                out.push(json!({
                    "name": format!("{}_len", p.name),
                    "kind": "length",
                    "of": p.name,
                    "c_type": codegen::c_type_name(Type::U32),
                    "bytes": 4,
                }));
            }
            ParamKind::Value { ty, .. } => out.push(json!({
                "name": p.name,
                "kind": "value",
                "c_type": codegen::c_type_name(ty),
                "type": ty.to_string(),
                "bytes": ty.size_bytes(),
            })),
        }
    }
    out
}

fn image(arch: Arch, stem: &str, compiled: &Compiled) -> Value {
    json!({
        "arch": arch.to_string(),
        "ptx": format!("{stem}.ptx"),
        "cubin": format!("{stem}.cubin"),
        "registers": compiled.resources.registers,
        "static_shared_bytes": compiled.resources.shared_bytes,
        "nvrtc": format!("{}.{}", compiled.nvrtc_version.0, compiled.nvrtc_version.1),
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, ExportError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|source| io(&path, source))?;
    Ok(path)
}

fn io(path: &Path, source: std::io::Error) -> ExportError {
    ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}
