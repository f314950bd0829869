//! Host side of the tensor-core GEMM: layouts, the f64 reference, launch helpers and the
//! deterministic inputs.

use super::*;
use crate::family::Lcg;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// How A and B are stored (C is always row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A row-major; B column-major: `n` rows of `k` (`B^T` row-major, a `Linear` weight),
    /// `gemm_tc_nt`.
    Nt,
    /// A row-major; B row-major: `k` rows of `n`, `gemm_tc_nn` (`dX = dY·W`).
    Nn,
    /// A column-major: `k` rows of `m` (`C = Aᵀ·B` for a row-major `Aᵀ`); B row-major:
    /// `k` rows of `n`, `gemm_tc_tn` (`dW = dYᵀ·X`).
    Tn,
}

impl Layout {
    /// A's element (`i`, `p`) (m index, k index) in storage with leading dimension `lda`.
    pub fn a_index(self, i: usize, p: usize, lda: usize) -> usize {
        match self {
            Layout::Tn => p * lda + i,
            Layout::Nt | Layout::Nn => i * lda + p,
        }
    }

    /// B's element (`p`, `j`) (k index, n index) in storage with leading dimension `ldb`.
    pub fn b_index(self, p: usize, j: usize, ldb: usize) -> usize {
        match self {
            Layout::Nt => j * ldb + p,
            Layout::Nn | Layout::Tn => p * ldb + j,
        }
    }

    /// The leading dimension A gets from [`padded`]: rows of `k`, or of `m` (tn).
    pub fn lda(self, m: usize, k: usize) -> usize {
        padded(self.a_cols(m, k))
    }

    /// The leading dimension B gets from [`padded`]: rows of `k` (nt) or `n` (nn, tn).
    pub fn ldb(self, n: usize, k: usize) -> usize {
        padded(self.b_cols(n, k))
    }

    /// The number of A rows in storage.
    pub fn a_rows(self, m: usize, k: usize) -> usize {
        match self {
            Layout::Tn => k,
            Layout::Nt | Layout::Nn => m,
        }
    }

    /// The number of B rows in storage.
    pub fn b_rows(self, n: usize, k: usize) -> usize {
        match self {
            Layout::Nt => n,
            Layout::Nn | Layout::Tn => k,
        }
    }

    fn a_cols(self, m: usize, k: usize) -> usize {
        match self {
            Layout::Tn => m,
            Layout::Nt | Layout::Nn => k,
        }
    }

    fn b_cols(self, n: usize, k: usize) -> usize {
        match self {
            Layout::Nt => k,
            Layout::Nn | Layout::Tn => n,
        }
    }
}

/// The smallest leading dimension ≥ `cols` that keeps rows 16-byte aligned (8 halves).
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(8) * 8
}

/// C = A·B in f64, rounded once to f32. `a` and `b` are stored as `layout` says with
/// leading dimensions `lda` and `ldb`.
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
                    let x = a[layout.a_index(i, p, lda)].to_f32() as f64;
                    x * b[layout.b_index(p, j, ldb)].to_f32() as f64
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
        (Layout::Tn, F16, F32) => gemm_tc_tn_f16_f32::def(),
        (Layout::Tn, F16, F16) => gemm_tc_tn_f16_f16::def(),
        (Layout::Tn, F16, BF16) => gemm_tc_tn_f16_bf16::def(),
        (Layout::Tn, BF16, F32) => gemm_tc_tn_bf16_f32::def(),
        (Layout::Tn, BF16, F16) => gemm_tc_tn_bf16_f16::def(),
        (Layout::Tn, BF16, BF16) => gemm_tc_tn_bf16_bf16::def(),
        _ => return None,
    })
}

/// Launches the instance for `T` → `O` on buffers already on `device`: `a` and `b` as
/// `layout` stores them with leading dimensions `lda` and `ldb`, `c` is `m` rows of `ldc`,
/// overwritten with `A·B` (with `Aᵀ·B` for [`Layout::Tn`]).
#[allow(clippy::too_many_arguments)]
pub fn launch<T: Float + Element, O: Float + Element>(
    device: &Device,
    config: &Config,
    layout: Layout,
    a: &Buffer<T>,
    b: &Buffer<T>,
    c: &mut Buffer<O>,
    shape: (u32, u32, u32),
    lds: (u32, u32, u32),
) -> Result<(), warpforge_dsl::Error> {
    launch_with(device, config, layout, (a, b), c, shape, lds, false)
}

/// The weight-gradient GEMM with accumulation: `C += Aᵀ·B` ([`Layout::Tn`]; `a` is `k` rows
/// of `lda` ≥ `m`, `b` `k` rows of `ldb` ≥ `n`, `c` `m` rows of `ldc`), each sum formed in
/// f32 and rounded once into `O` — with `O = f32`, gradient accumulation over micro-batches
/// (`dW += dYᵀ·X`).
#[allow(clippy::too_many_arguments)]
pub fn launch_tn_accumulate<T: Float + Element, O: Float + Element>(
    device: &Device,
    config: &Config,
    a: &Buffer<T>,
    b: &Buffer<T>,
    c: &mut Buffer<O>,
    shape: (u32, u32, u32),
    lds: (u32, u32, u32),
) -> Result<(), warpforge_dsl::Error> {
    launch_with(device, config, Layout::Tn, (a, b), c, shape, lds, true)
}

#[allow(clippy::too_many_arguments)]
fn launch_with<T: Float + Element, O: Float + Element>(
    device: &Device,
    config: &Config,
    layout: Layout,
    (a, b): (&Buffer<T>, &Buffer<T>),
    c: &mut Buffer<O>,
    (m, n, k): (u32, u32, u32),
    (lda, ldb, ldc): (u32, u32, u32),
    accumulate: bool,
) -> Result<(), warpforge_dsl::Error> {
    let def = def_of(layout, T::SCALAR, O::SCALAR).unwrap_or_else(|| {
        panic!(
            "no tensor-core GEMM for {} operands: they are f16 or bf16 (the trait bounds \
             admit f32 too)",
            T::SCALAR
        )
    });
    let sizes = (T::SCALAR.size_bytes(), O::SCALAR.size_bytes());
    let lens = (a.len(), b.len(), c.len());
    check_operands(def, layout, sizes, lens, (m, n, k), (lda, ldb, ldc))?;
    let mut args = vec![
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
    if layout == Layout::Tn {
        args.push(Arg::value(accumulate as u32));
    }
    device.launch(def, config, dims(config, m, n), &mut args)
}

/// The launch's operands against its dims, before either backend sees it: `lda` and `ldb`
/// keep 16-byte rows (8 halves) for the `cp.async` copies, every leading dimension covers
/// its row, every buffer its rows.
fn check_operands(
    def: &KernelDef,
    layout: Layout,
    (t_bytes, o_bytes): (usize, usize),
    (a_len, b_len, c_len): (usize, usize, usize),
    (m, n, k): (u32, u32, u32),
    (lda, ldb, ldc): (u32, u32, u32),
) -> Result<(), warpforge_dsl::backend::DeviceError> {
    use crate::operand::Operand;
    let (m, n, k) = (m as usize, n as usize, k as usize);
    let operand = |param, rows, cols, ld: u32, elem_bytes, len| Operand {
        kernel: def.name.as_str(),
        param,
        rows,
        cols,
        ld: ld as usize,
        elem_bytes,
        len,
    };
    let (a_rows, a_cols) = (layout.a_rows(m, k), layout.a_cols(m, k));
    let (b_rows, b_cols) = (layout.b_rows(n, k), layout.b_cols(n, k));
    operand("lda", a_rows, a_cols, lda, t_bytes, a_len).check(Some(16))?;
    operand("ldb", b_rows, b_cols, ldb, t_bytes, b_len).check(Some(16))?;
    operand("ldc", m, n, ldc, o_bytes, c_len).check(None)
}

/// Runs the instance for `T` → `O` on `device`; `a` and `b` stored as `layout` says with
/// the leading dimensions [`Layout::lda`] and [`Layout::ldb`]. Returns C (`m×n`, dense).
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
    let lds = (layout.lda(m, k) as u32, layout.ldb(n, k) as u32, n as u32);
    launch(device, config, layout, &da, &db, &mut dc, shape, lds)?;
    Ok(device.download(&dc)?)
}

/// Small integers (|x| ≤ 4, exact in f16 and bf16; the same for the same shape): every
/// product and partial sum is exact in f32, so every config must match the reference
/// exactly whatever its summation order. A and B are stored as `layout` says with
/// [`Layout::lda`] and [`Layout::ldb`]; the padding columns hold 1024, which a config
/// reading past `k` (or `m`, `n`) would carry into C.
pub fn inputs<T: Float>(layout: Layout, (m, n, k): (usize, usize, usize)) -> (Vec<T>, Vec<T>) {
    let mut rng = Lcg::for_dims(&[m, n, k], 4);
    let mut fill = |rows: usize, ld: usize, cols: usize| -> Vec<T> {
        (0..rows * ld)
            .map(|e| {
                T::from_f32(if e % ld < cols {
                    rng.integer(4)
                } else {
                    1024.0
                })
            })
            .collect()
    };
    let a = fill(layout.a_rows(m, k), layout.lda(m, k), layout.a_cols(m, k));
    let b = fill(layout.b_rows(n, k), layout.ldb(n, k), layout.b_cols(n, k));
    (a, b)
}
