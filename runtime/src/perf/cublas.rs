//! cuBLAS as the GEMM baseline: `cublasGemmEx` with f16 A/B, f32 C and f32 compute.
//!
//! cuBLAS is column-major; our matrices are row-major. A row-major `m×n` C with leading
//! dimension `ldc` is, read column-major, `C^T` (`n×m`, same `ldc`), and
//! `C^T = B^T · A^T`. So cuBLAS computes an `n×m` product whose first operand is our B and
//! whose second is our A ([`column_major_args`]).
//!
//! The library is found by full path ([`find_cublas`]: `WARPFORGE_CUBLAS_LIB`, the toolkit's
//! lib64 under `CUDA_HOME`, `CUDA_PATH` or `/usr/local/cuda`, then the NVIDIA wheels that
//! PyTorch bundles in the site-packages directories `WARPFORGE_PYTHON_SITE` lists) and its
//! four entry points are called through our own table: cudarc's cuBLAS module looks the
//! library up by name, and its CUDA 12 build does not know `libcublas.so.13`. A machine
//! without cuBLAS gets [`CublasError::Missing`] naming every place tried, and the perf
//! report records the baseline as skipped with that reason.

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasHandle_t, cublasOperation_t, cublasStatus_t,
    cudaDataType,
};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use libloading::Library;
use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::Arc;
use warpforge_kernels::gemm_tc::Layout;

#[derive(Debug, thiserror::Error)]
pub enum CublasError {
    #[error(
        "libcublas (libcublas.so.13, .12 or later) was not found. Tried:\n{}\nInstall the \
         CUDA toolkit's cuBLAS, or point WARPFORGE_CUBLAS_LIB at the library",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    Missing { tried: Vec<String> },
    #[error("could not load cuBLAS from {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("cuBLAS {during} failed: {message}")]
    Call { during: String, message: String },
    #[error("the GEMM dimension {0} does not fit cuBLAS's 32-bit int")]
    TooLarge(usize),
}

/// Transpose flag of one cuBLAS operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    N,
    T,
}

/// Which of our row-major operands a cuBLAS operand is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    A,
    B,
}

/// The arguments of one column-major `C' = op(A') · op(B')` call (`m'×n'`, inner `k'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnMajorGemm {
    pub transa: Trans,
    pub transb: Trans,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Our operand passed as cuBLAS's A, and its leading dimension.
    pub a: Operand,
    pub lda: usize,
    pub b: Operand,
    pub ldb: usize,
    pub ldc: usize,
}

/// The column-major call that computes our row-major `C[m×n] = A[m×k] · B` (B stored as
/// `layout` says), with our leading dimensions `(lda, ldb, ldc)`.
///
/// cuBLAS's A is our B: row-major B (`k` rows of `n`) reads column-major as `B^T` (`n×k`),
/// already the operand, so `N`; column-major B (`n` rows of `k`) reads as `B` (`k×n`), so
/// `T`. cuBLAS's B is our A: row-major `m×k` reads column-major as `A^T` (`k×m`): `N`.
pub fn column_major_args(
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    (lda, ldb, ldc): (usize, usize, usize),
) -> ColumnMajorGemm {
    ColumnMajorGemm {
        transa: match layout {
            Layout::Nn | Layout::Tn => Trans::N,
            Layout::Nt => Trans::T,
        },
        // Column-major A (`k` rows of `m`) reads column-major as A itself (`m×k`): `T`.
        transb: match layout {
            Layout::Tn => Trans::T,
            Layout::Nn | Layout::Nt => Trans::N,
        },
        m: n,
        n: m,
        k,
        a: Operand::B,
        lda: ldb,
        b: Operand::A,
        ldb: lda,
        ldc,
    }
}

/// A reference column-major GEMM with BLAS semantics (`C = op(A)·op(B)`, f64 sums), for
/// testing [`column_major_args`] on the host.
#[cfg(test)]
pub fn host_gemm_column_major(g: &ColumnMajorGemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    // op(X)[r, c] of a column-major X with leading dimension ld.
    let at = |x: &[f32], t: Trans, ld: usize, r: usize, col: usize| match t {
        Trans::N => x[col * ld + r],
        Trans::T => x[r * ld + col],
    };
    for j in 0..g.n {
        for i in 0..g.m {
            let s: f64 = (0..g.k)
                .map(|p| at(a, g.transa, g.lda, i, p) as f64 * at(b, g.transb, g.ldb, p, j) as f64)
                .sum();
            c[j * g.ldc + i] = s as f32;
        }
    }
}

/// Where to look for libcublas.
#[derive(Clone, Debug, Default)]
pub struct CublasInputs {
    /// `WARPFORGE_CUBLAS_LIB`: the library, or a directory holding it.
    pub lib: Option<PathBuf>,
    /// CUDA toolkit roots: `CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda`.
    pub toolkits: Vec<PathBuf>,
    /// Python site-packages directories (`WARPFORGE_PYTHON_SITE`, colon-separated).
    pub python_sites: Vec<PathBuf>,
}

impl CublasInputs {
    pub fn from_env() -> CublasInputs {
        let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
        let mut toolkits: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
            .iter()
            .filter_map(|n| var(n).map(PathBuf::from))
            .collect();
        toolkits.push(PathBuf::from("/usr/local/cuda"));
        CublasInputs {
            lib: var("WARPFORGE_CUBLAS_LIB").map(PathBuf::from),
            toolkits,
            python_sites: var("WARPFORGE_PYTHON_SITE")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default(),
        }
    }
}

const STEM: &str = "libcublas.so";

/// The full path of libcublas, by the order of [`CublasInputs`]'s fields.
pub fn find_cublas(inputs: &CublasInputs) -> Result<PathBuf, CublasError> {
    let arch_lib = format!("targets/{}-linux/lib", std::env::consts::ARCH);
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(lib) = &inputs.lib {
        if lib.is_file() {
            return Ok(lib.clone());
        }
        dirs.push(lib.clone());
    }
    for root in &inputs.toolkits {
        dirs.extend(["lib64", "lib", arch_lib.as_str()].map(|d| root.join(d)));
    }
    for site in &inputs.python_sites {
        dirs.extend(["nvidia/cu13/lib", "nvidia/cublas/lib"].map(|d| site.join(d)));
    }
    if let Some(found) = dirs
        .iter()
        .find_map(|d| warpforge_dsl::nvrtc::newest_lib(d, STEM))
    {
        return Ok(found);
    }
    let mut tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if inputs.python_sites.is_empty() {
        tried.push("WARPFORGE_PYTHON_SITE: not set (PyTorch's bundled cuBLAS not searched)".into());
    }
    Err(CublasError::Missing { tried })
}

/// The four entry points we call, from the loaded library.
struct Table {
    create: unsafe extern "C" fn(*mut cublasHandle_t) -> cublasStatus_t,
    destroy: unsafe extern "C" fn(cublasHandle_t) -> cublasStatus_t,
    set_stream: unsafe extern "C" fn(cublasHandle_t, *mut c_void) -> cublasStatus_t,
    #[allow(clippy::type_complexity)]
    gemm_ex: unsafe extern "C" fn(
        cublasHandle_t,
        cublasOperation_t,
        cublasOperation_t,
        c_int,
        c_int,
        c_int,
        *const c_void,
        *const c_void,
        cudaDataType,
        c_int,
        *const c_void,
        cudaDataType,
        c_int,
        *const c_void,
        *mut c_void,
        cudaDataType,
        c_int,
        cublasComputeType_t,
        cublasGemmAlgo_t,
    ) -> cublasStatus_t,
    _lib: Library,
}

impl Table {
    fn load(path: &std::path::Path) -> Result<Table, CublasError> {
        let err = |reason: String| CublasError::Load {
            path: path.display().to_string(),
            reason,
        };
        // SAFETY: loading libcublas runs its initializers, which have no preconditions.
        let lib = unsafe { Library::new(path) }.map_err(|e| err(e.to_string()))?;
        // SAFETY: each symbol is declared with its signature from cublas_api.h (v2 API).
        unsafe {
            Ok(Table {
                create: *lib
                    .get(b"cublasCreate_v2\0")
                    .map_err(|e| err(e.to_string()))?,
                destroy: *lib
                    .get(b"cublasDestroy_v2\0")
                    .map_err(|e| err(e.to_string()))?,
                set_stream: *lib
                    .get(b"cublasSetStream_v2\0")
                    .map_err(|e| err(e.to_string()))?,
                gemm_ex: *lib.get(b"cublasGemmEx\0").map_err(|e| err(e.to_string()))?,
                _lib: lib,
            })
        }
    }
}

/// A cuBLAS handle on a stream.
pub struct Cublas {
    table: Table,
    handle: cublasHandle_t,
    stream: Arc<CudaStream>,
    /// The library's full path, for the report.
    pub path: PathBuf,
}

fn check(during: &str, status: cublasStatus_t) -> Result<(), CublasError> {
    if status == cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return Ok(());
    }
    Err(CublasError::Call {
        during: during.to_string(),
        message: format!("{status:?}"),
    })
}

fn int(x: usize) -> Result<i32, CublasError> {
    i32::try_from(x).map_err(|_| CublasError::TooLarge(x))
}

fn op(t: Trans) -> cublasOperation_t {
    match t {
        Trans::N => cublasOperation_t::CUBLAS_OP_N,
        Trans::T => cublasOperation_t::CUBLAS_OP_T,
    }
}

impl Cublas {
    /// Finds and loads libcublas and creates a handle whose work goes to `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Result<Cublas, CublasError> {
        let path = find_cublas(&CublasInputs::from_env())?;
        let table = Table::load(&path)?;
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| CublasError::Call {
                during: "binding the context".into(),
                message: e.to_string(),
            })?;
        let mut handle: cublasHandle_t = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the context is current on this thread.
        check("cublasCreate", unsafe { (table.create)(&mut handle) })?;
        let cublas = Cublas {
            table,
            handle,
            stream,
            path,
        };
        // SAFETY: a live handle and a stream of the current context.
        let raw_stream = cublas.stream.cu_stream() as *mut c_void;
        check("cublasSetStream", unsafe {
            (cublas.table.set_stream)(cublas.handle, raw_stream)
        })?;
        Ok(cublas)
    }

    /// `C = A·B` for our row-major operands (f16 bits in `a` and `b`, `m` rows of `lda`
    /// and B as `layout` says), C `m` rows of `ldc` f32. Enqueued on the stream.
    pub fn gemm(
        &self,
        layout: Layout,
        dims: (usize, usize, usize),
        lds: (usize, usize, usize),
        a: &CudaSlice<u16>,
        b: &CudaSlice<u16>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), CublasError> {
        let g = column_major_args(layout, dims, lds);
        let stream = &self.stream;
        let (pa, _ra) = a.device_ptr(stream);
        let (pb, _rb) = b.device_ptr(stream);
        let (pc, _rc) = c.device_ptr_mut(stream);
        let ptr = |o: Operand| match o {
            Operand::A => pa,
            Operand::B => pb,
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the pointers are live allocations of the sizes the dims and leading
        // dimensions imply (the caller sized them with the same dims); alpha and beta are
        // host f32s as the default pointer mode expects; the stream is the handle's.
        let status = unsafe {
            (self.table.gemm_ex)(
                self.handle,
                op(g.transa),
                op(g.transb),
                int(g.m)?,
                int(g.n)?,
                int(g.k)?,
                (&alpha as *const f32).cast(),
                ptr(g.a) as *const _,
                cudaDataType::CUDA_R_16F,
                int(g.lda)?,
                ptr(g.b) as *const _,
                cudaDataType::CUDA_R_16F,
                int(g.ldb)?,
                (&beta as *const f32).cast(),
                pc as *mut _,
                cudaDataType::CUDA_R_32F,
                int(g.ldc)?,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        check("cublasGemmEx", status)
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed only here.
        let _ = unsafe { (self.table.destroy)(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cublas_is_found_by_full_path_in_order_and_its_absence_listed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let touch = |p: PathBuf| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
            p
        };
        let site = d.join("site-packages");
        let mut inputs = CublasInputs {
            lib: None,
            toolkits: vec![d.join("usr-local-cuda")],
            python_sites: Vec::new(),
        };
        let msg = find_cublas(&inputs).unwrap_err().to_string();
        assert!(msg.contains("usr-local-cuda/lib64"), "{msg}");
        assert!(msg.contains("WARPFORGE_PYTHON_SITE: not set"), "{msg}");
        inputs.python_sites.push(site.clone());
        let torch = touch(site.join("nvidia/cu13/lib/libcublas.so.13"));
        touch(site.join("nvidia/cu13/lib/libcublasLt.so.13"));
        assert_eq!(
            find_cublas(&inputs).unwrap(),
            torch,
            "PyTorch's bundled cuBLAS"
        );
        touch(d.join("usr-local-cuda/lib64/libcublas.so.12"));
        let toolkit = touch(d.join("usr-local-cuda/lib64/libcublas.so.13"));
        assert_eq!(
            find_cublas(&inputs).unwrap(),
            toolkit,
            "the toolkit first, newest major"
        );
        let own = touch(d.join("own/libcublas.so.12"));
        inputs.lib = Some(own.clone());
        assert_eq!(find_cublas(&inputs).unwrap(), own, "the override wins");
    }
    use warpforge_dsl::prelude::f16;
    use warpforge_kernels::gemm_tc::{inputs, padded, reference};

    /// Our row-major data through the mapped column-major call gives our reference C.
    fn check(layout: Layout, (m, n, k): (usize, usize, usize)) {
        let (a, b) = inputs(layout, (m, n, k));
        let lds = (padded(k), layout.ldb(n, k), n);
        let want = reference(&a, &b, layout, (m, n, k), (lds.0, lds.1));
        let g = column_major_args(layout, (m, n, k), lds);
        let widen = |x: &[f16]| x.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
        let (a, b) = (widen(&a), widen(&b));
        let pick = |o: Operand| if o == Operand::A { &a } else { &b };
        let mut c = vec![f32::NAN; m * n];
        host_gemm_column_major(&g, pick(g.a), pick(g.b), &mut c);
        assert_eq!(c, want, "{layout:?} {m}x{n}x{k}");
    }

    #[test]
    fn the_mapping_computes_our_row_major_product() {
        for layout in [Layout::Nt, Layout::Nn] {
            for dims in [(1, 1, 1), (3, 5, 7), (7, 3, 16), (16, 9, 13)] {
                check(layout, dims);
            }
        }
    }

    #[test]
    fn the_mapping_swaps_the_operands_and_transposes_a_column_major_b() {
        let g = column_major_args(Layout::Nt, (2, 3, 8), (8, 8, 3));
        assert_eq!((g.transa, g.transb), (Trans::T, Trans::N));
        assert_eq!((g.m, g.n, g.k), (3, 2, 8));
        assert_eq!((g.a, g.b), (Operand::B, Operand::A));
        let g = column_major_args(Layout::Nn, (2, 3, 8), (8, 8, 3));
        assert_eq!((g.transa, g.lda, g.ldb, g.ldc), (Trans::N, 8, 8, 3));
    }
}
