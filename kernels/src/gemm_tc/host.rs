//! Host side of the tensor-core GEMM: layouts, the f64 reference, launch helpers, and the
//! library's problems and deterministic inputs.

use super::{gemm_tc_nn, gemm_tc_nt};
use crate::check::Problem;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;

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
pub fn reference(
    a: &[f16],
    b: &[f16],
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    (lda, ldb): (usize, usize),
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| a[i * lda + p].to_f64() * b[layout.b_index(p, j, ldb)].to_f64())
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

/// Runs the kernel of `layout` on `device`; `a` is `m` rows of [`padded`]`(k)`, `b` as
/// [`Layout::ldb`] says. Returns C (`m×n`, dense).
pub fn run(
    device: &Device,
    config: &Config,
    layout: Layout,
    a: &[f16],
    b: &[f16],
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let (lda, ldb) = (padded(k), layout.ldb(n, k));
    let (da, db) = (device.upload(a)?, device.upload(b)?);
    let mut dc = device.zeros::<f32>(m * n)?;
    let dims = dims(config, m as u32, n as u32);
    let (m, n, k, lda, ldb) = (m as u32, n as u32, k as u32, lda as u32, ldb as u32);
    match layout {
        Layout::Nt => gemm_tc_nt::launch(
            device, config, dims, &da, &db, &mut dc, m, n, k, lda, ldb, n,
        )?,
        Layout::Nn => gemm_tc_nn::launch(
            device, config, dims, &da, &db, &mut dc, m, n, k, lda, ldb, n,
        )?,
    }
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
pub fn inputs(layout: Layout, (m, n, k): (usize, usize, usize)) -> (Vec<f16>, Vec<f16>) {
    let mut rng = StdRng::seed_from_u64((m * 31 + n * 7 + k) as u64);
    let mut value = |col: usize, cols: usize| {
        let x = if col < cols {
            rng.random_range(-4i32..=4) as f32
        } else {
            1024.0
        };
        f16::from_f32(x)
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

/// The library's `output` for `layout`.
pub fn output(
    layout: Layout,
    device: &Device,
    config: &Config,
    problem: &Problem,
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let (a, b) = inputs(layout, shape(problem));
    run(device, config, layout, &a, &b, shape(problem))
}

/// The library's `expected` for `layout`.
pub fn expected(layout: Layout, problem: &Problem) -> Vec<f32> {
    let (m, n, k) = shape(problem);
    let (a, b) = inputs(layout, (m, n, k));
    reference(&a, &b, layout, (m, n, k), (padded(k), layout.ldb(n, k)))
}
