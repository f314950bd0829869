//! Host side of the tensor-core GEMM: layouts, the f64 reference, launch helpers, and the
//! library's problems and deterministic inputs.

use super::*;
use crate::check::Problem;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// How B is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Column-major: `n` rows of `k` (`B^T` row-major, a `Linear` weight), [`gemm_tc_nt`].
    Nt,
    /// Row-major: `k` rows of `n`, [`gemm_tc_nn`].
    Nn,
}

impl Layout {
    /// B's element (`p`, `j`) (k index, n index) in storage with leading dimension `ldb`.
    pub fn b_index(self, p: usize, j: usize, ldb: usize) -> usize {
        match self {
            Layout::Nt => j * ldb + p,
            Layout::Nn => p * ldb + j,
        }
    }

    /// The leading dimension B gets from [`padded`]: rows of `k` (nt) or `n` (nn).
    pub fn ldb(self, n: usize, k: usize) -> usize {
        match self {
            Layout::Nt => padded(k),
            Layout::Nn => padded(n),
        }
    }

    /// The number of B rows in storage.
    pub fn b_rows(self, n: usize, k: usize) -> usize {
        match self {
            Layout::Nt => n,
            Layout::Nn => k,
        }
    }
}

/// The smallest leading dimension ≥ `cols` that keeps rows 16-byte aligned (8 halves).
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(8) * 8
}

/// C = A·B in f64, rounded once to f32. `a` is `m` rows of `lda`; `b` is stored as
/// `layout` says with leading dimension `ldb`.
pub fn reference<T: Float>(
    a: &[T],
    b: &[T],
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    (lda, ldb): (usize, usize),
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| {
                    a[i * lda + p].to_f32() as f64 * b[layout.b_index(p, j, ldb)].to_f32() as f64
                })
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// Launch dims for an `m×n` output: one block per `BM×BN` tile.
pub fn dims(config: &Config, m: u32, n: u32) -> LaunchDims {
    let get = |name: &str| config.get(name).unwrap_or(1) as u32;
    LaunchDims::grid_2d(
        (n.div_ceil(get("BN")).max(1), m.div_ceil(get("BM")).max(1)),
        (32 * get("WM") * get("WN"), 1),
    )
}

/// The instance of `layout` for operand type `t` (f16 or bf16) and output type `o` (f32,
/// f16 or bf16).
pub fn def_of(layout: Layout, t: ScalarType, o: ScalarType) -> Option<&'static KernelDef> {
    use ScalarType::{BF16, F16, F32};
    Some(match (layout, t, o) {
        (Layout::Nt, F16, F32) => gemm_tc_nt_f16_f32::def(),
        (Layout::Nt, F16, F16) => gemm_tc_nt_f16_f16::def(),
        (Layout::Nt, F16, BF16) => gemm_tc_nt_f16_bf16::def(),
        (Layout::Nt, BF16, F32) => gemm_tc_nt_bf16_f32::def(),
        (Layout::Nt, BF16, F16) => gemm_tc_nt_bf16_f16::def(),
        (Layout::Nt, BF16, BF16) => gemm_tc_nt_bf16_bf16::def(),
        (Layout::Nn, F16, F32) => gemm_tc_nn_f16_f32::def(),
        (Layout::Nn, F16, F16) => gemm_tc_nn_f16_f16::def(),
        (Layout::Nn, F16, BF16) => gemm_tc_nn_f16_bf16::def(),
        (Layout::Nn, BF16, F32) => gemm_tc_nn_bf16_f32::def(),
        (Layout::Nn, BF16, F16) => gemm_tc_nn_bf16_f16::def(),
        (Layout::Nn, BF16, BF16) => gemm_tc_nn_bf16_bf16::def(),
        _ => return None,
    })
}

/// Launches the instance for `T` → `O` on buffers already on `device`: `a` is `m` rows of
/// `lda`, `b` as `layout` stores it with leading dimension `ldb`, `c` is `m` rows of `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn launch<T: Float + Element, O: Float + Element>(
    device: &Device,
    config: &Config,
    layout: Layout,
    a: &Buffer<T>,
    b: &Buffer<T>,
    c: &mut Buffer<O>,
    (m, n, k): (u32, u32, u32),
    (lda, ldb, ldc): (u32, u32, u32),
) -> Result<(), warpforge_dsl::Error> {
    let def = def_of(layout, T::SCALAR, O::SCALAR).unwrap_or_else(|| {
        panic!(
            "no tensor-core GEMM for {} operands: they are f16 or bf16 (the trait bounds \
             admit f32 too)",
            T::SCALAR
        )
    });
    let mut args = [
        Arg::slice(a),
        Arg::slice(b),
        Arg::slice_mut(c),
        Arg::value(m),
        Arg::value(n),
        Arg::value(k),
        Arg::value(lda),
        Arg::value(ldb),
        Arg::value(ldc),
    ];
    device.launch(def, config, dims(config, m, n), &mut args)
}

/// Runs the instance for `T` → `O` on `device`; `a` is `m` rows of [`padded`]`(k)`, `b`
/// as [`Layout::ldb`] says. Returns C (`m×n`, dense).
pub fn run<T: Float + Element, O: Float + Element>(
    device: &Device,
    config: &Config,
    layout: Layout,
    a: &[T],
    b: &[T],
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<O>, warpforge_dsl::Error> {
    let (da, db) = (device.upload(a)?, device.upload(b)?);
    let mut dc = device.zeros::<O>(m * n)?;
    let shape = (m as u32, n as u32, k as u32);
    let lds = (padded(k) as u32, layout.ldb(n, k) as u32, n as u32);
    launch(device, config, layout, &da, &db, &mut dc, shape, lds)?;
    Ok(device.download(&dc)?)
}

/// Edge shapes: a single element, ragged M/N/K (not multiples of any tile or of 8), and a
/// shape with several K slices so the pipeline wraps around its stages.
pub fn problems() -> Vec<Problem> {
    [(1, 1, 1), (37, 70, 13), (64, 72, 96), (130, 66, 200)]
        .iter()
        .map(|&(m, n, k)| Problem::new(format!("{m}x{n}x{k}"), vec![m, n, k]))
        .collect()
}

/// Small integers (|x| ≤ 4, exact in f16): every product and partial sum is exact in f32,
/// so the kernel must match the reference exactly whatever its summation order. The
/// padding columns hold a large value that must never reach C.
pub fn inputs<T: Float>(layout: Layout, (m, n, k): (usize, usize, usize)) -> (Vec<T>, Vec<T>) {
    let mut rng = StdRng::seed_from_u64((m * 31 + n * 7 + k) as u64);
    let mut value = |col: usize, cols: usize| {
        let x = if col < cols {
            rng.random_range(-4i32..=4) as f32
        } else {
            1024.0
        };
        T::from_f32(x)
    };
    let lda = padded(k);
    let a = (0..m * lda).map(|e| value(e % lda, k)).collect();
    let (ldb, cols) = (layout.ldb(n, k), if layout == Layout::Nt { k } else { n });
    let b = (0..layout.b_rows(n, k) * ldb)
        .map(|e| value(e % ldb, cols))
        .collect();
    (a, b)
}

fn shape(problem: &Problem) -> (usize, usize, usize) {
    (problem.dims[0], problem.dims[1], problem.dims[2])
}

/// The library's `output` of the instance for `T` → `O`, as f32s.
pub fn output<T: Float + Element, O: Float + Element>(
    layout: Layout,
    device: &Device,
    config: &Config,
    problem: &Problem,
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let (a, b) = inputs::<T>(layout, shape(problem));
    let c = run::<T, O>(device, config, layout, &a, &b, shape(problem))?;
    Ok(c.into_iter().map(O::to_f32).collect())
}

/// The library's `expected` for `T` → `O`: the exact sum rounded once into `O`.
pub fn expected<T: Float, O: Float>(layout: Layout, problem: &Problem) -> Vec<f32> {
    let (m, n, k) = shape(problem);
    let (a, b) = inputs::<T>(layout, (m, n, k));
    let c = reference(&a, &b, layout, (m, n, k), (padded(k), layout.ldb(n, k)));
    c.into_iter().map(|x| O::from_f32(x).to_f32()).collect()
}
