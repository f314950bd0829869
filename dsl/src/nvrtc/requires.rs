//! The oldest GPU architecture a kernel can run on, from the intrinsics it uses.

use super::{Arch, NvrtcError};
use crate::typed::{CallArg, Expr, ExprKind, Intrinsic, Kernel, Stmt, StmtKind};

/// The oldest arch with `intrinsic`, and the intrinsic's DSL name; `None` when every arch
/// has it.
pub fn intrinsic_min_arch(intrinsic: Intrinsic) -> Option<(Arch, &'static str)> {
    match intrinsic {
        Intrinsic::MmaF16F32 => Some((Arch::SM80, "mma_m16n8k16_f16_f32")),
        Intrinsic::MmaBf16F32 => Some((Arch::SM80, "mma_m16n8k16_bf16_f32")),
        _ => None,
    }
}

/// The highest arch requirement of `kernel` (its body and its device functions) and the
/// intrinsic that needs it; `None` when the kernel runs on any arch.
pub fn min_arch(kernel: &Kernel) -> Option<(Arch, &'static str)> {
    let mut worst = None;
    for f in std::iter::once(&kernel.body).chain(&kernel.device_fns) {
        stmts(&f.body, &mut worst);
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

fn note(worst: &mut Worst, found: (Arch, &'static str)) {
    if worst.is_none_or(|(a, _)| found.0 > a) {
        *worst = Some(found);
    }
}

fn stmts(body: &[Stmt], worst: &mut Worst) {
    body.iter().for_each(|s| stmt(s, worst));
}

fn stmt(s: &Stmt, worst: &mut Worst) {
    match &s.kind {
        StmtKind::Let { init, .. } => init.iter().for_each(|e| expr(e, worst)),
        StmtKind::DeclareArray(_) | StmtKind::Break | StmtKind::Continue => {}
        StmtKind::AssignVar { value, .. } | StmtKind::AssignLane { value, .. } => {
            expr(value, worst)
        }
        StmtKind::Store { index, value, .. } => {
            expr(index, worst);
            expr(value, worst);
        }
        StmtKind::If { cond, then, els } => {
            expr(cond, worst);
            stmts(then, worst);
            stmts(els, worst);
        }
        StmtKind::For {
            start,
            end,
            step,
            body,
            ..
        } => {
            [start, end, step].into_iter().for_each(|e| expr(e, worst));
            stmts(body, worst);
        }
        StmtKind::While { cond, body } => {
            expr(cond, worst);
            stmts(body, worst);
        }
        StmtKind::Return(value) => value.iter().for_each(|e| expr(e, worst)),
        StmtKind::Eval(e) => expr(e, worst),
    }
}

fn expr(e: &Expr, worst: &mut Worst) {
    match &e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) | ExprKind::Len(_) | ExprKind::Builtin(_) => {}
        ExprKind::Load { index, .. } => expr(index, worst),
        ExprKind::Binary(_, a, b) => {
            expr(a, worst);
            expr(b, worst);
        }
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) | ExprKind::Lane(a, _) => {
            expr(a, worst)
        }
        ExprKind::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| expr(x, worst)),
        ExprKind::MakeVector(items) => items.iter().for_each(|x| expr(x, worst)),
        ExprKind::Intrinsic(i, args) => {
            if let Some(found) = intrinsic_min_arch(*i) {
                note(worst, found);
            }
            args.iter().for_each(|x| expr(x, worst));
        }
        ExprKind::Atomic { index, args, .. } => {
            expr(index, worst);
            args.iter().for_each(|x| expr(x, worst));
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| {
            if let CallArg::Value(x) = a {
                expr(x, worst)
            }
        }),
    }
}
