//! Test-only: compiles generated CUDA C with NVRTC, loaded by full path from the NVIDIA
//! PyPI wheels in the workspace's `.venv` (the crate's own `nvrtc` module is not used, so
//! these tests check the generator alone).

use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};

type Program = *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type TextFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;

pub(super) struct Nvrtc {
    lib: Library,
    include: PathBuf,
}

/// `.venv/lib/python3.*/site-packages/nvidia` next to the workspace root.
fn wheels_dir() -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/nvidia"))
        .find(|p| p.is_dir())
}

impl Nvrtc {
    /// NVRTC and the CUDA runtime headers, or why they are not available.
    pub fn load() -> Result<Nvrtc, String> {
        let dir =
            wheels_dir().ok_or("no .venv/lib/python3.*/site-packages/nvidia in the workspace")?;
        let lib_path = dir.join("cuda_nvrtc/lib/libnvrtc.so.12");
        let include = dir.join("cuda_runtime/include");
        if !include.join("cuda_fp16.h").is_file() {
            return Err(format!("no cuda_fp16.h in {}", include.display()));
        }
        // SAFETY: loading NVRTC runs no initializers with preconditions of ours.
        let lib = unsafe { Library::new(&lib_path) }
            .map_err(|e| format!("cannot load {}: {e}", lib_path.display()))?;
        Ok(Nvrtc { lib, include })
    }

    /// Compiles `source` for `arch` (`sm_90`); `Ok(ptx)`, or `Err(log)`.
    pub fn compile(&self, source: &str, arch: &str) -> Result<String, String> {
        let opts = [
            format!("--gpu-architecture={arch}"),
            format!("--include-path={}", self.include.display()),
            "--std=c++17".to_string(),
        ];
        let opts: Vec<CString> = opts
            .iter()
            .map(|o| CString::new(o.as_str()).expect("no NUL"))
            .collect();
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let src = CString::new(source).map_err(|_| "source contains NUL".to_string())?;
        let name = CString::new("kernel.cu").expect("no NUL");
        // SAFETY: the symbols have NVRTC 12's documented signatures; every pointer passed
        // outlives the call, and the program is destroyed exactly once.
        unsafe {
            let create = self
                .lib
                .get::<CreateFn>(b"nvrtcCreateProgram\0")
                .map_err(|e| e.to_string())?;
            let compile = self
                .lib
                .get::<CompileFn>(b"nvrtcCompileProgram\0")
                .map_err(|e| e.to_string())?;
            let destroy = self
                .lib
                .get::<DestroyFn>(b"nvrtcDestroyProgram\0")
                .map_err(|e| e.to_string())?;
            let mut prog: Program = std::ptr::null_mut();
            let rc = create(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if rc != 0 {
                return Err(format!("nvrtcCreateProgram failed with {rc}"));
            }
            let rc = compile(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
            let result = if rc == 0 {
                self.text(prog, b"nvrtcGetPTXSize\0", b"nvrtcGetPTX\0")
            } else {
                Err(self.text(prog, b"nvrtcGetProgramLogSize\0", b"nvrtcGetProgramLog\0")?)
            };
            destroy(&mut prog);
            result
        }
    }

    /// # Safety
    /// `prog` must be a live program.
    unsafe fn text(
        &self,
        prog: Program,
        size_sym: &[u8],
        text_sym: &[u8],
    ) -> Result<String, String> {
        let size_fn = self
            .lib
            .get::<SizeFn>(size_sym)
            .map_err(|e| e.to_string())?;
        let text_fn = self
            .lib
            .get::<TextFn>(text_sym)
            .map_err(|e| e.to_string())?;
        let mut size = 0usize;
        size_fn(prog, &mut size);
        let mut buf = vec![0u8; size.max(1)];
        text_fn(prog, buf.as_mut_ptr().cast());
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }
}
