//! Host side of the int4 GEMM: which instance serves which (group dim, type), the packed
//! weight on a device, launch helpers (GEMM, split-K reduction, act-order permutation), the
//! split heuristic and the host reference.

use super::gemm::*;
use super::layout::{pack, permute_columns, Int4Float, PackedInt4};
use super::{GroupDim, Int4Error, Int4Weight};
use crate::operand::Operand;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, KernelDef, ScalarType};

/// Blocks the automatic split (`SPLIT = 0`) aims for: a little more than one wave on the
/// 108–132-SM GPUs the kernel targets (one 89 KiB block per SM on sm_86/89, two on sm_80/90).
pub const TARGET_BLOCKS: u32 = 160;

/// Most K slices the automatic split uses (each adds `4·m·n` bytes of partial sums).
pub const MAX_SPLITS: u32 = 16;

/// Why an int4 GEMM could not run.
#[derive(Debug, thiserror::Error)]
pub enum Int4GemmError {
    #[error(transparent)]
    Weight(#[from] Int4Error),
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
}

impl From<DeviceError> for Int4GemmError {
    fn from(e: DeviceError) -> Self {
        Int4GemmError::Kernel(e.into())
    }
}

/// The GEMM instance for group dim `dim` and activations `t` (f16 or bf16).
pub fn def_of(dim: GroupDim, t: ScalarType) -> Option<&'static KernelDef> {
    Some(match (dim, t) {
        (GroupDim::Oc, ScalarType::F16) => int4_gemm_oc_f16::def(),
        (GroupDim::Oc, ScalarType::BF16) => int4_gemm_oc_bf16::def(),
        (GroupDim::Ic, ScalarType::F16) => int4_gemm_ic_f16::def(),
        (GroupDim::Ic, ScalarType::BF16) => int4_gemm_ic_bf16::def(),
        _ => return None,
    })
}

fn reduce_def(t: ScalarType) -> &'static KernelDef {
    match t {
        ScalarType::BF16 => int4_splitk_reduce_bf16::def(),
        _ => int4_splitk_reduce_f16::def(),
    }
}

fn permute_def(t: ScalarType) -> &'static KernelDef {
    match t {
        ScalarType::BF16 => int4_permute_cols_bf16::def(),
        _ => int4_permute_cols_f16::def(),
    }
}

fn get(config: &Config, name: &str, or: u32) -> u32 {
    config.get(name).map_or(or, |v| v as u32)
}

/// The split of K for `config` at `m × n_pad × k_pad`: (splits, K tiles per split), every
/// split non-empty. `SPLIT = 0` picks enough splits for [`TARGET_BLOCKS`] blocks, at most
/// [`MAX_SPLITS`] and one K tile each.
pub fn splits(config: &Config, m: u32, n_pad: u32, k_pad: u32) -> (u32, u32) {
    let (bm, bn, bk) = (
        get(config, "BM", 16),
        get(config, "BN", 128),
        get(config, "BK", 128),
    );
    let k_tiles = k_pad.div_ceil(bk).max(1);
    let blocks = n_pad.div_ceil(bn) * m.div_ceil(bm).max(1);
    let wanted = match get(config, "SPLIT", 0) {
        0 => TARGET_BLOCKS.div_ceil(blocks).clamp(1, MAX_SPLITS),
        s => s,
    };
    let per = k_tiles.div_ceil(wanted.min(k_tiles));
    (k_tiles.div_ceil(per), per)
}

/// Launch dims of the GEMM: (column tiles, row tiles, splits).
pub fn dims(config: &Config, m: u32, n_pad: u32, splits: u32) -> LaunchDims {
    let (bm, bn) = (get(config, "BM", 16), get(config, "BN", 128));
    let threads = 32 * get(config, "WN", 2) * get(config, "WK", 4);
    LaunchDims {
        grid: [n_pad.div_ceil(bn), m.div_ceil(bm).max(1), splits],
        block: [threads, 1, 1],
    }
}

/// f32 elements of split-K workspace `config` needs at `m × n` (0 without split-K; pass a
/// buffer of at least 1 element either way).
pub fn workspace_len(config: &Config, m: usize, packed: &PackedInt4) -> usize {
    let (s, _) = splits(config, m as u32, packed.n_pad as u32, packed.k_pad as u32);
    if s > 1 {
        s as usize * m * packed.n
    } else {
        0
    }
}

/// A packed weight on a device.
pub struct DeviceInt4 {
    pub packed: PackedInt4,
    pub weights: Buffer<u32>,
    pub scales: Buffer<u32>,
    /// The zeros, or a 2-word placeholder for symmetric weights (never read).
    pub zeros: Buffer<u32>,
    /// Act-order's permutation (`perm[i]` = A's column that becomes column `i`).
    pub perm: Option<Buffer<u32>>,
}

impl DeviceInt4 {
    pub fn upload(device: &Device, packed: PackedInt4) -> Result<DeviceInt4, warpforge_dsl::Error> {
        let zeros = match &packed.zeros {
            Some(z) => device.upload(z)?,
            None => device.upload(&[0u32, 0])?,
        };
        let perm = match &packed.perm {
            Some(p) => Some(device.upload(p)?),
            None => None,
        };
        Ok(DeviceInt4 {
            weights: device.upload(&packed.weights)?,
            scales: device.upload(&packed.scales)?,
            zeros,
            perm,
            packed,
        })
    }
}

fn mismatch(def: &KernelDef, param: &str, expected: String, got: String) -> DeviceError {
    DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: param.into(),
        expected,
        got,
    }
}

/// `c = a · dequant(w)` on buffers already on `device`: `a` is `m` rows of `lda` (`lda % 8
/// == 0`, columns already permuted for an act-order weight), `c` dense `m × n`,
/// `workspace` at least [`workspace_len`] f32s (and ≥ 1). One GEMM launch, plus the split-K
/// reduction when the config splits K.
#[allow(clippy::too_many_arguments)]
pub fn launch<T: Int4Float>(
    device: &Device,
    config: &Config,
    w: &DeviceInt4,
    a: &Buffer<T>,
    lda: u32,
    m: u32,
    c: &mut Buffer<T>,
    workspace: &mut Buffer<f32>,
) -> Result<(), warpforge_dsl::Error> {
    let p = &w.packed;
    let def = def_of(p.dim, T::SCALAR)
        .unwrap_or_else(|| panic!("no int4 GEMM for {} activations (f16 or bf16)", T::SCALAR));
    if p.dtype != T::SCALAR {
        let got = format!("a weight packed for {}", p.dtype);
        return Err(mismatch(def, "w", format!("{} scales", T::SCALAR), got).into());
    }
    let (m_us, n, k) = (m as usize, p.n, p.k);
    let operand = |param, rows, cols, ld: u32, elem_bytes, len| Operand {
        kernel: def.name.as_str(),
        param,
        rows,
        cols,
        ld: ld as usize,
        elem_bytes,
        len,
    };
    operand("lda", m_us, k, lda, 2, a.len()).check(Some(16))?;
    if c.len() != m_us * n {
        let want = format!("{} elements (m·n, dense)", m_us * n);
        return Err(mismatch(def, "c", want, c.len().to_string()).into());
    }
    let (n_pad, k_pad) = (p.n_pad as u32, p.k_pad as u32);
    let (s, per) = splits(config, m, n_pad, k_pad);
    let need = workspace_len(config, m_us, p).max(1);
    if workspace.len() < need {
        let want = format!("at least {need} f32s (splits · m · n)");
        return Err(mismatch(def, "partial", want, workspace.len().to_string()).into());
    }
    let mut args = [
        Arg::slice(a),
        Arg::slice(&w.weights),
        Arg::slice(&w.scales),
        Arg::slice(&w.zeros),
        Arg::slice_mut(c),
        Arg::slice_mut(workspace),
        Arg::value(m),
        Arg::value(n as u32),
        Arg::value(k as u32),
        Arg::value(lda),
        Arg::value(n_pad),
        Arg::value(k_pad),
        Arg::value(p.group_stride.trailing_zeros()),
        Arg::value(p.zeros.is_some() as u32),
        Arg::value(per),
    ];
    device.launch(def, config, dims(config, m, n_pad, s), &mut args)?;
    if s > 1 {
        let len = (m_us * n) as u32;
        let mut args = [
            Arg::slice(&*workspace),
            Arg::slice_mut(c),
            Arg::value(len),
            Arg::value(s),
        ];
        let dims = LaunchDims::linear(len.div_ceil(256), 256);
        device.launch(reduce_def(T::SCALAR), &Config::new(), dims, &mut args)?;
    }
    Ok(())
}

/// Act-order on a device: `out[r, i] = a[r, perm[i]]` for `rows` rows of `ld`, `i <
/// perm.len()`.
pub fn permute_activations<T: Int4Float>(
    device: &Device,
    a: &Buffer<T>,
    perm: &Buffer<u32>,
    out: &mut Buffer<T>,
    rows: u32,
    ld: u32,
) -> Result<(), warpforge_dsl::Error> {
    let cols = perm.len() as u32;
    let def = permute_def(T::SCALAR);
    operand_rows(def, rows, cols, ld, a.len())?;
    operand_rows(def, rows, cols, ld, out.len())?;
    let mut args = [
        Arg::slice(a),
        Arg::slice(perm),
        Arg::slice_mut(out),
        Arg::value(rows),
        Arg::value(cols),
        Arg::value(ld),
    ];
    let dims = LaunchDims::grid_2d((cols.div_ceil(256), rows), (256, 1));
    device.launch(def, &Config::new(), dims, &mut args)
}

fn operand_rows(
    def: &KernelDef,
    rows: u32,
    cols: u32,
    ld: u32,
    len: usize,
) -> Result<(), DeviceError> {
    Operand {
        kernel: def.name.as_str(),
        param: "ld",
        rows: rows as usize,
        cols: cols as usize,
        ld: ld as usize,
        elem_bytes: 2,
        len,
    }
    .check(None)
}

/// Packs `w`, uploads it and `a` (`m` rows of `lda`, original column order), permutes A
/// for act-order on the host, launches, and returns C (`m × n`).
pub fn run<T: Int4Float>(
    device: &Device,
    config: &Config,
    w: &Int4Weight,
    a: &[T],
    m: usize,
    lda: usize,
) -> Result<Vec<T>, Int4GemmError> {
    let packed = pack::<T>(w)?;
    let a = match &packed.perm {
        Some(perm) => permute_columns(a, m, lda, perm),
        None => a.to_vec(),
    };
    let mut ws = device.zeros::<f32>(workspace_len(config, m, &packed).max(1))?;
    let dw = DeviceInt4::upload(device, packed)?;
    let da = device.upload(&a)?;
    let mut dc = device.zeros::<T>(m * w.n)?;
    launch(
        device, config, &dw, &da, lda as u32, m as u32, &mut dc, &mut ws,
    )?;
    Ok(device.download(&dc)?)
}

/// The host reference: `C = A · W_T` in f64 with `W_T` the dequantized weight rounded once
/// to `T` (the kernel's register values), rounded to f32. `a` is `m` rows of `lda` in the
/// original column order.
pub fn reference<T: Int4Float>(w: &Int4Weight, a: &[T], m: usize, lda: usize) -> Vec<f32> {
    let wt: Vec<f64> = w
        .dequantize()
        .into_iter()
        .map(|x| T::from_f32(x).to_f32() as f64)
        .collect();
    let mut c = vec![0f32; m * w.n];
    for i in 0..m {
        let mut row = vec![0f64; w.n];
        for p in 0..w.k {
            let x = a[i * lda + p].to_f32() as f64;
            for (o, r) in row.iter_mut().enumerate() {
                *r += x * wt[p * w.n + o];
            }
        }
        for (o, r) in row.into_iter().enumerate() {
            c[i * w.n + o] = r as f32;
        }
    }
    c
}

/// The heuristic default config for `m` rows: the declared default (16-row tiles) up to
/// 16 rows, 32-row tiles up to 32, then 64-row tiles with 2×2 warps over 128 columns.
pub fn default_config(def: &KernelDef, m: usize) -> Config {
    let base = def.space.default_config();
    match m {
        0..=16 => base,
        17..=32 => base.with("BM", 32),
        _ => base.with("BM", 64).with("WK", 2).with("BK", 64),
    }
}
