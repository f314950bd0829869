//! Launching on the host: the arguments in the entry's C ABI, then the loaded library's
//! `wf_host_launch`, or the sanitized program in a child process.

use super::compile::{build, Artifact};
use super::{host_source, HostError, HostOptions};
use crate::backend::{Arg, LaunchDims};
use crate::typed::{self, ParamKind};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// `wf_host::LaunchSpec` in warpforge_host.h.
#[repr(C)]
#[derive(Clone, Copy)]
struct LaunchSpec {
    grid: [u32; 3],
    block: [u32; 3],
    dynamic_shared_bytes: u32,
    stack_bytes: u32,
}

type LaunchFn =
    unsafe extern "C" fn(*const LaunchSpec, *mut *mut c_void, *mut c_char, usize) -> c_int;

/// Each fiber's stack: room for the kernels' register arrays at -O1, and for ASan's
/// redzones in the sanitized build.
const STACK_BYTES: u32 = 128 << 10;
const SANITIZED_STACK_BYTES: u32 = 512 << 10;

/// The sanitized program's exit status after a sanitizer report.
const SANITIZER_EXIT: i32 = 86;

/// One C parameter's bytes, aligned for any scalar or pointer.
#[repr(C, align(16))]
#[derive(Clone, Copy, Default)]
struct Slot([u8; 16]);

/// A C parameter: a buffer (the pointer and its bytes' length) or a value's bytes.
enum CParam {
    Buffer {
        ptr: *mut u8,
        bytes: usize,
        mutable: bool,
    },
    Value(Vec<u8>),
}

/// Runs `kernel` over `dims` on the host harness. The arguments are checked as for the cuda
/// backend by the caller ([`crate::backend::Device::launch`]); buffers must be host buffers.
pub fn run(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    args: &mut [Arg],
    options: &HostOptions,
) -> Result<(), HostError> {
    let params = c_params(kernel, args)?;
    let spec = LaunchSpec {
        grid: dims.grid,
        block: dims.block,
        dynamic_shared_bytes: crate::codegen::dynamic_shared_bytes(kernel),
        stack_bytes: if options.sanitize {
            SANITIZED_STACK_BYTES
        } else {
            STACK_BYTES
        },
    };
    let source = host_source(kernel, options);
    if options.sanitize {
        let program = build(&source, Artifact::Program, options)?;
        return run_program(kernel, &program, &spec, &params);
    }
    let library = build(&source, Artifact::Library, options)?;
    let launch = entry(&library)?;
    let mut slots: Vec<Slot> = params
        .iter()
        .map(|p| {
            let mut s = Slot::default();
            match p {
                CParam::Buffer { ptr, .. } => {
                    s.0[..8].copy_from_slice(&(*ptr as usize as u64).to_le_bytes())
                }
                CParam::Value(bytes) => s.0[..bytes.len()].copy_from_slice(bytes),
            }
            s
        })
        .collect();
    let mut pointers: Vec<*mut c_void> =
        slots.iter_mut().map(|s| s.0.as_mut_ptr().cast()).collect();
    let mut error = vec![0u8; 4096];
    // SAFETY: the entry was built from this kernel's source, whose parameters `c_params`
    // follows one for one (pointer + u32 length per slice, values by C type); every buffer
    // pointer is into a host buffer of at least its length that outlives the call; `args`
    // holds the mutable borrows, so nothing else touches them meanwhile.
    let status = unsafe {
        launch(
            &spec,
            pointers.as_mut_ptr(),
            error.as_mut_ptr().cast(),
            error.len(),
        )
    };
    if status != 0 {
        let end = error.iter().position(|&b| b == 0).unwrap_or(error.len());
        return Err(HostError::Launch {
            kernel: kernel.name.clone(),
            message: String::from_utf8_lossy(&error[..end]).into_owned(),
        });
    }
    Ok(())
}

/// The C parameters of the entry, in order, from the launch's arguments.
fn c_params(kernel: &typed::Kernel, args: &mut [Arg]) -> Result<Vec<CParam>, HostError> {
    let bad = |message: String| HostError::Launch {
        kernel: kernel.name.clone(),
        message,
    };
    if args.len() != kernel.body.params.len() {
        return Err(bad(format!(
            "{} arguments for {} parameters",
            args.len(),
            kernel.body.params.len()
        )));
    }
    let mut out = Vec::new();
    for (param, arg) in kernel.body.params.iter().zip(args.iter_mut()) {
        let (raw_len, ptr, bytes, mutable) = match arg {
            Arg::Value(v) => {
                let size = v.ty.size_bytes();
                out.push(CParam::Value(v.bits.to_le_bytes()[..size].to_vec()));
                continue;
            }
            Arg::Slice(raw) => {
                let Some(b) = raw.host_bytes() else {
                    return Err(bad(format!(
                        "parameter `{}`: not a host buffer",
                        param.name
                    )));
                };
                (raw.len, b.as_ptr() as *mut u8, b.len(), false)
            }
            Arg::SliceMut(raw) => {
                let len = raw.len;
                let Some(b) = raw.host_bytes_mut() else {
                    return Err(bad(format!(
                        "parameter `{}`: not a host buffer",
                        param.name
                    )));
                };
                (len, b.as_mut_ptr(), b.len(), true)
            }
        };
        let elems = match param.kind {
            ParamKind::Slice { elem, .. } => {
                let lanes = elem.lanes() as usize;
                let align = elem.size_bytes().min(16);
                if !(ptr as usize).is_multiple_of(align) && bytes > 0 {
                    return Err(bad(format!(
                        "parameter `{}`: the buffer is not {align}-byte aligned",
                        param.name
                    )));
                }
                // The backend's own view rule (vector lanes, bit views); the launch check
                // has already refused a buffer it does not accept.
                let view = match arg {
                    Arg::Slice(raw) => raw.len_as(elem),
                    Arg::SliceMut(raw) => raw.len_as(elem),
                    Arg::Value(_) => None,
                };
                view.unwrap_or(raw_len / lanes)
            }
            ParamKind::Value { .. } => raw_len,
        };
        let len = u32::try_from(elems)
            .map_err(|_| bad(format!("parameter `{}`: {elems} elements", param.name)))?;
        out.push(CParam::Buffer {
            ptr,
            bytes,
            mutable,
        });
        out.push(CParam::Value(len.to_le_bytes().to_vec()));
    }
    Ok(out)
}

/// The loaded `wf_host_launch` of a library (libraries stay loaded for the process).
fn entry(path: &Path) -> Result<LaunchFn, HostError> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static libloading::Library>>> =
        OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let lib = match loaded.get(path) {
        Some(lib) => *lib,
        None => {
            // SAFETY: the library is our own build of generated code plus the harness; its
            // initializers only set up thread-local storage.
            let lib = unsafe { libloading::Library::new(path) }.map_err(|e| HostError::Load {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let lib: &'static libloading::Library = Box::leak(Box::new(lib));
            loaded.insert(path.to_path_buf(), lib);
            lib
        }
    };
    // SAFETY: `wf_host_launch` has exactly this signature (see `host_source`).
    let f = unsafe { lib.get::<LaunchFn>(b"wf_host_launch\0") }.map_err(|e| HostError::Load {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(*f)
}

/// The sanitized build: a request file in, the buffers back from a response file.
fn run_program(
    kernel: &typed::Kernel,
    program: &Path,
    spec: &LaunchSpec,
    params: &[CParam],
) -> Result<(), HostError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| HostError::Io {
            what,
            message: e.to_string(),
        }
    };
    let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
    let mut request = Vec::new();
    for v in spec.grid.iter().chain(&spec.block) {
        request.extend(v.to_le_bytes());
    }
    request.extend(spec.dynamic_shared_bytes.to_le_bytes());
    request.extend(spec.stack_bytes.to_le_bytes());
    request.extend((params.len() as u32).to_le_bytes());
    for p in params {
        let (kind, bytes): (u32, &[u8]) = match p {
            // SAFETY: `ptr` points to `bytes` bytes of a live host buffer (see `c_params`).
            CParam::Buffer { ptr, bytes, .. } => {
                (0, unsafe { std::slice::from_raw_parts(*ptr, *bytes) })
            }
            CParam::Value(v) => (1, v),
        };
        request.extend(kind.to_le_bytes());
        request.extend((bytes.len() as u64).to_le_bytes());
        request.extend(bytes);
    }
    let req_path = dir.path().join("request");
    let resp_path = dir.path().join("response");
    std::fs::write(&req_path, &request).map_err(io("writing the launch request"))?;
    let out = std::process::Command::new(program)
        .arg(&req_path)
        .arg(&resp_path)
        // A sanitizer report exits with SANITIZER_EXIT, the harness's own errors with 1.
        .env(
            "ASAN_OPTIONS",
            format!("detect_leaks=0:exitcode={SANITIZER_EXIT}"),
        )
        .env(
            "UBSAN_OPTIONS",
            format!("print_stacktrace=1:exitcode={SANITIZER_EXIT}"),
        )
        .output()
        .map_err(io("running the sanitized host build"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            return Err(HostError::Launch {
                kernel: kernel.name.clone(),
                message: stderr.trim().to_string(),
            })
        }
        _ => {
            return Err(HostError::Sanitizer {
                kernel: kernel.name.clone(),
                report: stderr,
            })
        }
    }
    let response = std::fs::read(&resp_path).map_err(io("reading the launch response"))?;
    let mut at = 0;
    for p in params {
        if let CParam::Buffer {
            ptr,
            bytes,
            mutable,
        } = p
        {
            let Some(chunk) = response.get(at..at + bytes) else {
                return Err(HostError::Io {
                    what: "reading the launch response".into(),
                    message: format!("{} bytes, shorter than the buffers", response.len()),
                });
            };
            if *mutable {
                // SAFETY: a `&mut` host buffer of `bytes` bytes, borrowed by `args`.
                unsafe { std::slice::from_raw_parts_mut(*ptr, *bytes) }.copy_from_slice(chunk);
            }
            at += bytes;
        }
    }
    Ok(())
}
