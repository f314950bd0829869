//! cuBLAS as the GEMM baseline: `cublasGemmEx` with f16 A/B, f32 C and f32 compute.
//!
//! cuBLAS is column-major; our matrices are row-major. A row-major `m×n` C with leading
//! dimension `ldc` is, read column-major, `C^T` (`n×m`, same `ldc`), and
//! `C^T = B^T · A^T`. So cuBLAS computes an `n×m` product whose first operand is our B and
//! whose second is our A ([`column_major_args`]). The library is loaded at run time
//! (cudarc's `dynamic-loading`): a machine without libcublas gets [`CublasError::Missing`],
//! and the perf report records the baseline as skipped.

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::{result, CudaBlas};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::sync::Arc;
use warpforge_kernels::gemm_tc::Layout;

#[derive(Debug, thiserror::Error)]
pub enum CublasError {
    #[error(
        "libcublas was not found (looked for libcublas.so* on the library path); install the \
         CUDA toolkit's cuBLAS or add its lib directory to LD_LIBRARY_PATH"
    )]
    Missing,
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
            Layout::Nn => Trans::N,
            Layout::Nt => Trans::T,
        },
        transb: Trans::N,
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

/// A cuBLAS handle on a stream.
pub struct Cublas {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
}

fn call_error(during: &str) -> impl Fn(result::CublasError) -> CublasError + '_ {
    move |e| CublasError::Call {
        during: during.to_string(),
        message: e.to_string(),
    }
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
    /// Loads libcublas and creates a handle whose work goes to `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Result<Cublas, CublasError> {
        // SAFETY: only tries to open the library (cudarc would panic on first use instead).
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CublasError::Missing);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(call_error("handle creation"))?;
        Ok(Cublas { blas, stream })
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
        unsafe {
            result::gemm_ex(
                *self.blas.handle(),
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
        }
        .map_err(call_error("GemmEx"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
