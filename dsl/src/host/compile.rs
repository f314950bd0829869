//! Building the host program: the harness headers written next to the cache, the system C++
//! compiler found and asked for its version, and the build cached on disk by a key of the
//! full source, the headers, the compiler's version and the flags.

use super::{HostError, HostOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The harness headers, by file name (`include/` holds the CUDA include names it answers).
const HEADERS: [(&str, &str); 8] = [
    (
        "warpforge_host.h",
        include_str!("../../host/warpforge_host.h"),
    ),
    (
        "warpforge_host_types.h",
        include_str!("../../host/warpforge_host_types.h"),
    ),
    (
        "warpforge_host_warp.h",
        include_str!("../../host/warpforge_host_warp.h"),
    ),
    (
        "warpforge_host_ptx.h",
        include_str!("../../host/warpforge_host_ptx.h"),
    ),
    (
        "warpforge_host_main.h",
        include_str!("../../host/warpforge_host_main.h"),
    ),
    (
        "cuda_fp16.h",
        include_str!("../../host/include/cuda_fp16.h"),
    ),
    (
        "cuda_bf16.h",
        include_str!("../../host/include/cuda_bf16.h"),
    ),
    ("cuda_fp8.h", include_str!("../../host/include/cuda_fp8.h")),
];

/// The C++ compiler: `WARPFORGE_HOST_CXX`, else `g++`, `c++`, `clang++` on the PATH.
#[derive(Clone, Debug)]
pub struct Compiler {
    pub program: String,
    /// The first line of `--version`.
    pub version: String,
}

impl Compiler {
    /// The compiler, found once per process.
    pub fn find() -> Result<&'static Compiler, HostError> {
        static FOUND: OnceLock<Result<Compiler, HostError>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let candidates: Vec<String> = match std::env::var("WARPFORGE_HOST_CXX") {
                    Ok(cxx) if !cxx.is_empty() => vec![cxx],
                    _ => ["g++", "c++", "clang++"].map(String::from).to_vec(),
                };
                Compiler::probe(&candidates)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Compiler {
    /// The first of `candidates` that runs `--version`.
    pub(crate) fn probe(candidates: &[String]) -> Result<Compiler, HostError> {
        for program in candidates {
            if let Ok(out) = Command::new(program).arg("--version").output() {
                if out.status.success() {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let version = text.lines().next().unwrap_or("").trim().to_string();
                    return Ok(Compiler {
                        program: program.clone(),
                        version,
                    });
                }
            }
        }
        Err(HostError::NoCompiler {
            tried: candidates.join(", "),
        })
    }
}

/// What gets built: a shared library to load, or (sanitized) a program to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Artifact {
    Library,
    Program,
}

/// The flags of a build. Both builds keep GPU semantics where C++ leaves them open: no
/// contraction of `a * b + c` (NVRTC runs with `--fmad=false`), wrapping signed overflow,
/// no type-based alias analysis (the helpers pun through `memcpy`, but kernels' vector
/// loads do not).
pub(crate) fn flags(options: &HostOptions) -> Vec<&'static str> {
    let mut f = vec![
        "-std=c++17",
        "-g",
        "-fno-strict-aliasing",
        "-ffp-contract=off",
        "-fno-fast-math",
        "-w",
    ];
    if options.sanitize {
        // No -fwrapv: signed overflow in the generated C is what UBSan is here to find.
        f.extend([
            "-O1",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined,float-cast-overflow",
            "-fno-sanitize-recover=all",
        ]);
    } else {
        f.extend(["-O1", "-fwrapv", "-fPIC", "-shared"]);
    }
    f
}

/// The cache directory: `$WARPFORGE_CACHE_DIR/host`, else `<user cache>/warpforge/host`,
/// else the system temporary directory.
fn cache_dir() -> PathBuf {
    match std::env::var_os("WARPFORGE_CACHE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("host"),
        None => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("warpforge")
            .join("host"),
    }
}

fn headers_hash() -> String {
    let mut h = Sha256::new();
    for (name, text) in HEADERS {
        h.update(name);
        h.update([0]);
        h.update(text);
        h.update([0]);
    }
    hex(&h.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers written (once per content) under the cache directory; their folder.
fn include_dir(root: &Path) -> Result<PathBuf, HostError> {
    let dir = root.join(format!("include-{}", headers_hash()));
    if dir.join(HEADERS[HEADERS.len() - 1].0).exists() {
        return Ok(dir);
    }
    let io = |e: std::io::Error| HostError::Io {
        what: format!("writing the harness headers to {}", dir.display()),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    for (name, text) in HEADERS {
        crate::cache_file::write_atomic(&dir.join(name), text.as_bytes()).map_err(io)?;
    }
    Ok(dir)
}

/// The built file for `source` (built now if the cache lacks it).
pub(crate) fn build(
    source: &str,
    artifact: Artifact,
    options: &HostOptions,
) -> Result<PathBuf, HostError> {
    let compiler = Compiler::find()?;
    let flags = flags(options);
    let root = cache_dir();
    let mut key = Sha256::new();
    for part in [
        source,
        &headers_hash(),
        &compiler.version,
        &flags.join(" "),
        env!("CARGO_PKG_VERSION"),
    ] {
        key.update(part);
        key.update([0]);
    }
    let key = hex(&key.finalize()[..16]);
    let ext = match artifact {
        Artifact::Library => "so",
        Artifact::Program => "bin",
    };
    let out = root.join(format!("{key}.{ext}"));
    if out.exists() {
        return Ok(out);
    }
    let include = include_dir(&root)?;
    let unique = format!(
        "{key}.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let src_path = root.join(format!("{unique}.cpp"));
    let tmp_out = root.join(format!("{unique}.{ext}.tmp"));
    let io = |what: String| {
        move |e: std::io::Error| HostError::Io {
            what,
            message: e.to_string(),
        }
    };
    std::fs::write(&src_path, source).map_err(io(format!("writing {}", src_path.display())))?;
    let result = Command::new(&compiler.program)
        .args(&flags)
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(&tmp_out)
        .arg(&src_path)
        .output()
        .map_err(io(format!("running {}", compiler.program)))?;
    if !result.status.success() {
        let log = String::from_utf8_lossy(&result.stderr).into_owned();
        return Err(HostError::Compile {
            compiler: compiler.version.clone(),
            source_file: src_path.display().to_string(),
            log,
        });
    }
    let _ = std::fs::remove_file(&src_path);
    std::fs::rename(&tmp_out, &out).map_err(io(format!("storing {}", out.display())))?;
    Ok(out)
}
