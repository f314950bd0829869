//! The NVRTC C API, called through our own `libloading` function table.
//!
//! The library is loaded once per process, by the full path discovery found, and stays
//! loaded (it lives in a `static`). Using our own table rather than cudarc's `nvrtc` module
//! means no lookup by name through `LD_LIBRARY_PATH` (read by the loader only at process
//! start) and no panic when the library is absent: every failure is an [`NvrtcError`].

use super::discover::{discover, DiscoveryInputs, Toolkit};
use super::{Arch, NvrtcError};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::OnceLock;

type Status = c_int;
type Program = *mut c_void;

const SUCCESS: Status = 0;
const COMPILATION_FAILED: Status = 6;

/// The entry points we use, copied out of the library (valid while `_lib` is loaded).
struct Table {
    error_string: unsafe extern "C" fn(Status) -> *const c_char,
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status,
    num_supported_archs: unsafe extern "C" fn(*mut c_int) -> Status,
    supported_archs: unsafe extern "C" fn(*mut c_int) -> Status,
    create_program: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Status,
    compile_program: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status,
    destroy_program: unsafe extern "C" fn(*mut Program) -> Status,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    log: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    cubin_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    cubin: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    ptx_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    ptx: unsafe extern "C" fn(Program, *mut c_char) -> Status,
}

/// A loaded NVRTC: its function table, version, supported archs and the header directory.
pub struct Nvrtc {
    table: Table,
    pub toolkit: Toolkit,
    pub version: (i32, i32),
    pub supported: Vec<Arch>,
    /// `libnvrtc-builtins` of the same installation, loaded by full path (see
    /// [`preload_builtins`]); `None` when it is already on the loader's path or absent.
    _builtins: Option<libloading::os::unix::Library>,
    _lib: Library,
}

/// What one `nvrtcCompileProgram` produced.
pub struct RawOutput {
    pub log: String,
    /// `None` when compilation failed.
    pub images: Option<(Vec<u8>, String)>,
}

impl Nvrtc {
    /// The process-wide NVRTC, discovered from the environment and loaded on first use.
    /// The outcome, success or `NotFound`, holds for the rest of the process.
    pub fn get() -> Result<&'static Nvrtc, NvrtcError> {
        static NVRTC: OnceLock<Result<Nvrtc, NvrtcError>> = OnceLock::new();
        NVRTC
            .get_or_init(|| discover(&DiscoveryInputs::from_env()).and_then(Nvrtc::load))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Loads the library at `toolkit.lib` and reads its version and supported archs.
    pub fn load(toolkit: Toolkit) -> Result<Nvrtc, NvrtcError> {
        let load_err = |reason: String| NvrtcError::Load {
            path: toolkit.lib.display().to_string(),
            reason,
        };
        // SAFETY: loading libnvrtc runs no initializers with preconditions on our side.
        let lib = unsafe { Library::new(&toolkit.lib) }.map_err(|e| load_err(e.to_string()))?;
        let table = Table::resolve(&lib).map_err(load_err)?;
        let mut nvrtc = Nvrtc {
            table,
            toolkit,
            version: (0, 0),
            supported: Vec::new(),
            _builtins: None,
            _lib: lib,
        };
        nvrtc.version = nvrtc.query_version()?;
        nvrtc.supported = nvrtc.query_supported()?;
        nvrtc._builtins = preload_builtins(&nvrtc.toolkit.lib, nvrtc.version);
        Ok(nvrtc)
    }

    fn check(&self, call: &'static str, status: Status) -> Result<(), NvrtcError> {
        if status == SUCCESS {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static string for any status.
        let text = unsafe { (self.table.error_string)(status) };
        let message = if text.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        Err(NvrtcError::Api {
            call,
            code: status,
            message,
        })
    }

    fn query_version(&self) -> Result<(i32, i32), NvrtcError> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        let status = unsafe { (self.table.version)(&mut major, &mut minor) };
        self.check("nvrtcVersion", status)?;
        Ok((major, minor))
    }

    fn query_supported(&self) -> Result<Vec<Arch>, NvrtcError> {
        let mut n: c_int = 0;
        // SAFETY: valid out-pointer; then a buffer of exactly `n` ints.
        let status = unsafe { (self.table.num_supported_archs)(&mut n) };
        self.check("nvrtcGetNumSupportedArchs", status)?;
        let mut codes = vec![0 as c_int; n.max(0) as usize];
        let status = unsafe { (self.table.supported_archs)(codes.as_mut_ptr()) };
        self.check("nvrtcGetSupportedArchs", status)?;
        Ok(codes
            .into_iter()
            .map(|c| Arch::from_code(c as u32))
            .collect())
    }

    /// Compiles `source` (named `name` in the log) with `options`; a compile error is
    /// `Ok` with `images: None` so the caller can format the log.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        options: &[String],
    ) -> Result<RawOutput, NvrtcError> {
        let source_c = c_string(source, "the generated source")?;
        let name_c = c_string(name, "the program name")?;
        let options_c: Vec<CString> = options
            .iter()
            .map(|o| c_string(o, &format!("option `{o}`")))
            .collect::<Result<_, _>>()?;
        let option_ptrs: Vec<*const c_char> = options_c.iter().map(|o| o.as_ptr()).collect();
        let program = ProgramGuard::create(self, &source_c, &name_c)?;
        // SAFETY: the program is live; the option pointers outlive the call.
        let status = unsafe {
            (self.table.compile_program)(
                program.0,
                option_ptrs.len() as c_int,
                option_ptrs.as_ptr(),
            )
        };
        let log = program.read_log()?;
        if status == COMPILATION_FAILED {
            return Ok(RawOutput { log, images: None });
        }
        self.check("nvrtcCompileProgram", status)?;
        let cubin = program.read(self.table.cubin_size, self.table.cubin, "nvrtcGetCUBIN")?;
        let ptx = program.read(self.table.ptx_size, self.table.ptx, "nvrtcGetPTX")?;
        let ptx = String::from_utf8_lossy(trim_nul(&ptx)).into_owned();
        Ok(RawOutput {
            log,
            images: Some((cubin, ptx)),
        })
    }
}

/// Loads `libnvrtc-builtins.so.<major>.<minor>` from the directory of `lib`, by full path
/// and globally. NVRTC opens it by name at its first compile, which only finds it on the
/// loader's path (`LD_LIBRARY_PATH` at process start, ld.so.conf): a toolkit's lib64 or a
/// wheel's lib found at run time is on neither, and the compile fails with
/// `NVRTC_ERROR_BUILTIN_OPERATION_FAILURE`. Once loaded, the loader hands NVRTC this copy
/// (it matches the name against loaded objects' sonames).
fn preload_builtins(
    lib: &std::path::Path,
    (major, minor): (i32, i32),
) -> Option<libloading::os::unix::Library> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let dir = lib.parent()?;
    let name = format!("libnvrtc-builtins.so.{major}.{minor}");
    let path = dir.join(&name);
    if !path.is_file() {
        tracing::debug!("no {name} beside {}", lib.display());
        return None;
    }
    // SAFETY: the builtins library has no initializers with preconditions on our side.
    match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("could not preload {}: {e}", path.display());
            None
        }
    }
}

fn c_string(text: &str, what: &str) -> Result<CString, NvrtcError> {
    CString::new(text).map_err(|_| NvrtcError::NulByte {
        what: what.to_string(),
    })
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// An NVRTC program, destroyed on drop.
struct ProgramGuard<'a>(Program, &'a Nvrtc);

type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> Status;
type ReadFn = unsafe extern "C" fn(Program, *mut c_char) -> Status;

impl<'a> ProgramGuard<'a> {
    fn create(nvrtc: &'a Nvrtc, source: &CStr, name: &CStr) -> Result<Self, NvrtcError> {
        let mut program: Program = ptr::null_mut();
        // SAFETY: valid C strings; no headers are passed (count 0, null arrays).
        let status = unsafe {
            (nvrtc.table.create_program)(
                &mut program,
                source.as_ptr(),
                name.as_ptr(),
                0,
                ptr::null(),
                ptr::null(),
            )
        };
        nvrtc.check("nvrtcCreateProgram", status)?;
        Ok(ProgramGuard(program, nvrtc))
    }

    /// Reads one of the program's outputs through its size/get pair.
    fn read(&self, size: SizeFn, get: ReadFn, call: &'static str) -> Result<Vec<u8>, NvrtcError> {
        let mut len = 0usize;
        // SAFETY: the program is live; the buffer has the size NVRTC asked for.
        let status = unsafe { size(self.0, &mut len) };
        self.1.check(call, status)?;
        let mut buf = vec![0u8; len];
        let status = unsafe { get(self.0, buf.as_mut_ptr().cast()) };
        self.1.check(call, status)?;
        Ok(buf)
    }

    fn read_log(&self) -> Result<String, NvrtcError> {
        let t = &self.1.table;
        let log = self.read(t.log_size, t.log, "nvrtcGetProgramLog")?;
        Ok(String::from_utf8_lossy(trim_nul(&log))
            .trim_end()
            .to_string())
    }
}

impl Drop for ProgramGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed only here.
        let _ = unsafe { (self.1.table.destroy_program)(&mut self.0) };
    }
}

impl Table {
    fn resolve(lib: &Library) -> Result<Table, String> {
        // SAFETY: each symbol is declared with its signature from nvrtc.h.
        unsafe {
            Ok(Table {
                error_string: sym(lib, b"nvrtcGetErrorString\0")?,
                version: sym(lib, b"nvrtcVersion\0")?,
                num_supported_archs: sym(lib, b"nvrtcGetNumSupportedArchs\0")?,
                supported_archs: sym(lib, b"nvrtcGetSupportedArchs\0")?,
                create_program: sym(lib, b"nvrtcCreateProgram\0")?,
                compile_program: sym(lib, b"nvrtcCompileProgram\0")?,
                destroy_program: sym(lib, b"nvrtcDestroyProgram\0")?,
                log_size: sym(lib, b"nvrtcGetProgramLogSize\0")?,
                log: sym(lib, b"nvrtcGetProgramLog\0")?,
                cubin_size: sym(lib, b"nvrtcGetCUBINSize\0")?,
                cubin: sym(lib, b"nvrtcGetCUBIN\0")?,
                ptx_size: sym(lib, b"nvrtcGetPTXSize\0")?,
                ptx: sym(lib, b"nvrtcGetPTX\0")?,
            })
        }
    }
}

/// # Safety
/// `T` must be the symbol's true function pointer type.
unsafe fn sym<T: Copy>(lib: &Library, name: &[u8]) -> Result<T, String> {
    let symbol = lib.get::<T>(name).map_err(|e| {
        let shown = String::from_utf8_lossy(trim_nul(name)).into_owned();
        format!("missing symbol {shown}: {e}")
    })?;
    Ok(*symbol)
}
