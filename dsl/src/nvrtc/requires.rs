//! The oldest GPU architecture a kernel can run on, from the intrinsics it uses.

use super::{Arch, NvrtcError};
use crate::typed::{CallArg, Expr, ExprKind, Half2Op, Intrinsic, Kernel, Stmt, StmtKind};
use crate::types::ScalarType;

/// The oldest arch with `intrinsic`, and the intrinsic's DSL name; `None` when every arch
/// has it.
pub fn intrinsic_min_arch(intrinsic: Intrinsic) -> Option<(Arch, &'static str)> {
    match intrinsic {
        Intrinsic::MmaF16F32 => Some((Arch::SM80, "mma_m16n8k16_f16_f32")),
        Intrinsic::MmaBf16F32 => Some((Arch::SM80, "mma_m16n8k16_bf16_f32")),
        Intrinsic::MmaF16F16 => Some((Arch::SM80, "mma_m16n8k16_f16_f16")),
        // PTX ISA, `mma` target notes: `.e4m3`/`.e5m2` with `.m16n8k32` need sm_89.
        Intrinsic::MmaE4m3F32 => Some((Arch::SM89, "mma_m16n8k32_e4m3_f32")),
        Intrinsic::MmaE5m2F32 => Some((Arch::SM89, "mma_m16n8k32_e5m2_f32")),
        Intrinsic::Half2(op, half) => half2_min_arch(op, half),
        Intrinsic::CpAsyncCommit => Some((Arch::SM80, "cp_async_commit")),
        Intrinsic::CpAsyncWait => Some((Arch::SM80, "cp_async_wait")),
        _ => None,
    }
}

/// The packed 16-bit-pair arithmetic: `min`/`max` (both formats) and `fma.rn.bf16x2` need
/// sm_80 (PTX ISA 9.7.4); the bf16 add/sub/mul are lowered to that fma (`add.bf16x2` would
/// need sm_90); f16 add/sub/mul/fma exist on every arch we target.
fn half2_min_arch(op: Half2Op, half: ScalarType) -> Option<(Arch, &'static str)> {
    use Half2Op::*;
    let bf16 = half == ScalarType::BF16;
    let name = match (op, bf16) {
        (Add | Sub | Mul | Fma, false) => return None,
        (Add, true) => "add_bf16x2",
        (Sub, true) => "sub_bf16x2",
        (Mul, true) => "mul_bf16x2",
        (Fma, true) => "fma_bf16x2",
        (Max, false) => "max_f16x2",
        (Min, false) => "min_f16x2",
        (Max, true) => "max_bf16x2",
        (Min, true) => "min_bf16x2",
    };
    Some((Arch::SM80, name))
}

/// The highest arch requirement of `kernel` (its body and its device functions) and the
/// intrinsic that needs it; `None` when the kernel runs on any arch.
pub fn min_arch(kernel: &Kernel) -> Option<(Arch, &'static str)> {
    let mut worst: Worst = None;
    for func in std::iter::once(&kernel.body).chain(&kernel.device_fns) {
        walk_exprs(&func.body, &mut |e| {
            if let Some(found) = requirement(e) {
                if worst.is_none_or(|(a, _)| found.0 > a) {
                    worst = Some(found);
                }
            }
        });
    }
    worst
}

/// An error when `kernel` needs a newer arch than `arch`.
pub fn check_arch(kernel: &Kernel, arch: Arch) -> Result<(), NvrtcError> {
    match min_arch(kernel) {
        Some((needs, intrinsic)) if needs > arch => Err(NvrtcError::ArchTooOld {
            kernel: kernel.name.clone(),
            intrinsic,
            needs,
            arch,
        }),
        _ => Ok(()),
    }
}

type Worst = Option<(Arch, &'static str)>;

/// What an intrinsic needs of the compiler: the PTX ISA version that introduced it and the
/// first NVRTC release that emits that ISA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtxRequirement {
    pub intrinsic: &'static str,
    pub ptx_isa: (u32, u32),
    pub nvrtc: (i32, i32),
}

/// The compiler an intrinsic needs, where it is newer than the oldest NVRTC we load (12.0,
/// PTX ISA 8.0): FP8 `mma.m16n8k32` with `.e4m3`/`.e5m2` came with PTX ISA 8.4 (CUDA 12.4).
/// Every other intrinsic of the DSL is in PTX ISA 7.x (CUDA 11), so any NVRTC 12 has it.
pub fn intrinsic_min_ptx(intrinsic: Intrinsic) -> Option<PtxRequirement> {
    let fp8 = |name| PtxRequirement {
        intrinsic: name,
        ptx_isa: (8, 4),
        nvrtc: (12, 4),
    };
    match intrinsic {
        Intrinsic::MmaE4m3F32 => Some(fp8("mma_m16n8k32_e4m3_f32")),
        Intrinsic::MmaE5m2F32 => Some(fp8("mma_m16n8k32_e5m2_f32")),
        _ => None,
    }
}

/// The newest compiler requirement of `kernel` (body and device functions).
pub fn min_ptx(kernel: &Kernel) -> Option<PtxRequirement> {
    let mut worst: Option<PtxRequirement> = None;
    for func in std::iter::once(&kernel.body).chain(&kernel.device_fns) {
        walk_exprs(&func.body, &mut |e| {
            if let ExprKind::Intrinsic(i, _) = &e.kind {
                if let Some(found) = intrinsic_min_ptx(*i) {
                    if worst.is_none_or(|w| found.nvrtc > w.nvrtc) {
                        worst = Some(found);
                    }
                }
            }
        });
    }
    worst
}

/// An error when the NVRTC of `version` (loaded from `lib`) is older than `kernel` needs.
pub fn check_nvrtc_version(
    kernel: &Kernel,
    version: (i32, i32),
    lib: &std::path::Path,
) -> Result<(), NvrtcError> {
    match min_ptx(kernel) {
        Some(req) if version < req.nvrtc => Err(NvrtcError::NvrtcTooOld {
            kernel: kernel.name.clone(),
            intrinsic: req.intrinsic,
            ptx_isa: req.ptx_isa,
            needs: req.nvrtc,
            found: version,
            lib: lib.display().to_string(),
        }),
        _ => Ok(()),
    }
}

/// Everything that must hold before `kernel` is compiled for `arch` with the loaded NVRTC:
/// [`check_arch`], then the NVRTC version against [`min_ptx`] (loads NVRTC).
pub fn check_compile(kernel: &Kernel, arch: Arch) -> Result<(), NvrtcError> {
    check_arch(kernel, arch)?;
    let nvrtc = super::api::Nvrtc::get()?;
    check_nvrtc_version(kernel, nvrtc.version, &nvrtc.toolkit.lib)
}

/// What an expression node (not its operands) needs.
fn requirement(e: &Expr) -> Worst {
    match &e.kind {
        ExprKind::Intrinsic(i, _) => intrinsic_min_arch(*i),
        // PTX has ldmatrix from sm_75; sm_80 is the oldest arch we support for it.
        ExprKind::LoadMatrix { count, trans, .. } => {
            let name = match (count, trans) {
                (1, false) => "ldmatrix_x1",
                (2, false) => "ldmatrix_x2",
                (_, false) => "ldmatrix_x4",
                (1, true) => "ldmatrix_x1_trans",
                (2, true) => "ldmatrix_x2_trans",
                (_, true) => "ldmatrix_x4_trans",
            };
            Some((Arch::SM80, name))
        }
        ExprKind::CopyAsync {
            evict_first: true, ..
        } => Some((Arch::SM80, "cp_async_16_zfill_evict_first")),
        ExprKind::CopyAsync {
            bytes, src_bytes, ..
        } => Some((Arch::SM80, copy_async_name(*bytes, src_bytes.is_some()))),
        _ => None,
    }
}

/// Calls `f` on every expression of `body`, operands after the expression that holds them.
pub(crate) fn walk_exprs(body: &[Stmt], f: &mut dyn FnMut(&Expr)) {
    body.iter().for_each(|s| stmt(s, f));
}

fn stmt(s: &Stmt, f: &mut dyn FnMut(&Expr)) {
    match &s.kind {
        StmtKind::Let { init, .. } => init.iter().for_each(|e| expr(e, f)),
        StmtKind::DeclareArray(_) | StmtKind::Break | StmtKind::Continue => {}
        StmtKind::AssignVar { value, .. } | StmtKind::AssignLane { value, .. } => expr(value, f),
        StmtKind::Store { index, value, .. } => {
            expr(index, f);
            expr(value, f);
        }
        StmtKind::If { cond, then, els } => {
            expr(cond, f);
            walk_exprs(then, f);
            walk_exprs(els, f);
        }
        StmtKind::For {
            start,
            end,
            step,
            body,
            ..
        } => {
            [start, end, step].into_iter().for_each(|e| expr(e, f));
            walk_exprs(body, f);
        }
        StmtKind::While { cond, body } => {
            expr(cond, f);
            walk_exprs(body, f);
        }
        StmtKind::Return(value) => value.iter().for_each(|e| expr(e, f)),
        StmtKind::Eval(e) => expr(e, f),
    }
}

fn expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match &e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) | ExprKind::Len(_) | ExprKind::Builtin(_) => {}
        ExprKind::Load { index, .. } => expr(index, f),
        ExprKind::LoadMatrix { offset, .. } => expr(offset, f),
        ExprKind::CopyAsync {
            dst_index,
            src_index,
            src_bytes,
            ..
        } => {
            expr(dst_index, f);
            expr(src_index, f);
            src_bytes.iter().for_each(|e| expr(e, f));
        }
        ExprKind::Binary(_, a, b) => {
            expr(a, f);
            expr(b, f);
        }
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) | ExprKind::Lane(a, _) => {
            expr(a, f)
        }
        ExprKind::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| expr(x, f)),
        ExprKind::MakeVector(items) | ExprKind::Intrinsic(_, items) => {
            items.iter().for_each(|x| expr(x, f))
        }
        ExprKind::Atomic { index, args, .. } => {
            expr(index, f);
            args.iter().for_each(|x| expr(x, f));
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| {
            if let CallArg::Value(x) = a {
                expr(x, f)
            }
        }),
    }
}

/// The DSL name of a `cp.async` of `bytes` bytes (`zfill`: with a source size).
pub(crate) fn copy_async_name(bytes: u8, zfill: bool) -> &'static str {
    match (bytes, zfill) {
        (4, false) => "cp_async_4",
        (8, false) => "cp_async_8",
        (_, false) => "cp_async_16",
        (4, true) => "cp_async_4_zfill",
        (8, true) => "cp_async_8_zfill",
        (_, true) => "cp_async_16_zfill",
    }
}
