//! Statements and function bodies.

use super::ctype::{c_type_name, prec, scalar_literal, C};
use super::ops::{self, Val};
use super::FnGen;
use crate::ir::BinOp;
use crate::typed::{
    ArraySpace, CallArg, Expr, ExprKind, Function, Intrinsic, Kernel, MemRef, Stmt, StmtKind, VarId,
};
use crate::types::{ScalarType, Type};

impl FnGen<'_> {
    pub(super) fn line(&mut self, text: &str) {
        self.lines.push(self.rust_line);
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    pub(super) fn block(&mut self, body: &[Stmt]) {
        self.indent += 1;
        for s in body {
            self.stmt(s);
        }
        self.indent -= 1;
    }

    /// Prints `s`; every C line it produces maps to its Rust line (a nested statement's lines
    /// to the nested statement, the closing brace back to `s`).
    fn stmt(&mut self, s: &Stmt) {
        let outer = self.rust_line.replace(s.span.line);
        self.stmt_kind(s);
        self.rust_line = outer;
    }

    fn stmt_kind(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Let { var, init } => self.let_stmt(*var, init.as_ref()),
            StmtKind::DeclareArray(id) => {
                let Some(a) = self.func.arrays.get(id.0 as usize) else {
                    return;
                };
                self.needs.ty(a.elem);
                let (ty, name) = (c_type_name(a.elem), self.names.array(id.0).to_string());
                let carved = self.shared.and_then(|l| l.offset(self.func_id, *id));
                match (a.space, carved) {
                    (ArraySpace::Shared, Some(offset)) => self.line(&format!(
                        "{ty}* {name} = reinterpret_cast<{ty}*>({} + {offset});",
                        super::smem::SMEM
                    )),
                    (ArraySpace::Shared, None) => {
                        // ldmatrix rows and 16-byte cp.async targets are 16-byte aligned.
                        let align = if self.loads_matrices(*id) {
                            "__align__(16) "
                        } else {
                            ""
                        };
                        self.line(&format!("__shared__ {align}{ty} {name}[{}];", a.len))
                    }
                    (ArraySpace::Local, _) => self.line(&format!("{ty} {name}[{}] = {{}};", a.len)),
                }
            }
            StmtKind::AssignVar { var, op, value } => {
                let target = C::primary(self.names.var(var.0));
                let ty = self.var_ty(*var);
                self.assign(target, ty, *op, value);
            }
            StmtKind::AssignLane { var, lane, value } => {
                let value = self.expr(value).at(prec::TOP);
                let name = self.names.var(var.0).to_string();
                self.line(&format!("{name}.v[{lane}] = {value};"));
            }
            StmtKind::Store {
                mem,
                index,
                op,
                value,
            } => self.store(*mem, index, *op, value),
            StmtKind::If { cond, then, els } => self.if_stmt(cond, then, els),
            StmtKind::For {
                var,
                start,
                end,
                step,
                unroll,
                body,
            } => self.for_stmt(*var, [start, end, step], *unroll, body),
            StmtKind::While { cond, body } => {
                let cond = self.expr(cond).at(prec::TOP);
                self.line(&format!("while ({cond}) {{"));
                self.block(body);
                self.line("}");
            }
            StmtKind::Break => self.line("break;"),
            StmtKind::Continue => self.line("continue;"),
            StmtKind::Return(None) => self.line("return;"),
            StmtKind::Return(Some(e)) => {
                let value = self.expr(e).at(prec::TOP);
                self.line(&format!("return {value};"));
            }
            StmtKind::Eval(e) => {
                let value = self.expr(e).at(prec::TOP);
                self.line(&format!("{value};"));
            }
        }
    }

    fn var_ty(&self, var: VarId) -> Type {
        self.func
            .vars
            .get(var.0 as usize)
            .map_or(Type::U32, |v| v.ty)
    }

    fn let_stmt(&mut self, var: VarId, init: Option<&Expr>) {
        let ty = self.var_ty(var);
        self.needs.ty(ty);
        let value = match init {
            Some(e) => self.expr(e).at(prec::ARG),
            None => zero(ty),
        };
        let name = self.names.var(var.0).to_string();
        self.line(&format!("{} {name} = {value};", c_type_name(ty)));
    }

    /// `target = value`, or `target op= value` where C's compound assignment means exactly
    /// the IR's operation; otherwise `target = target op value` spelled out.
    fn assign(&mut self, target: C, ty: Type, op: Option<BinOp>, value: &Expr) {
        let line = match op {
            None => format!("{} = {};", target.text, self.expr(value).at(prec::ARG)),
            Some(op) if ops::compound_is_exact(op, ty) => {
                format!(
                    "{} {}= {};",
                    target.text,
                    op.symbol(),
                    self.expr(value).at(prec::ARG)
                )
            }
            Some(op) => {
                let current = Val {
                    c: target.clone(),
                    ty,
                    lit: None,
                };
                let rhs = self.val(value);
                let combined = ops::binary(self.needs, op, current, rhs, ty);
                format!("{} = {};", target.text, combined.at(prec::ARG))
            }
        };
        self.line(&line);
    }

    fn store(&mut self, mem: MemRef, index: &Expr, op: Option<BinOp>, value: &Expr) {
        let elem = self.mem_elem(mem);
        let expanded = op.is_some_and(|op| !ops::compound_is_exact(op, elem));
        // The spelled-out form reads the element and writes it: name the index once when
        // evaluating it twice could differ.
        let index = if expanded && !is_pure(index) {
            let name = self.names.fresh("idx");
            let value = self.expr(index).at(prec::ARG);
            self.line(&format!("const unsigned int {name} = {value};"));
            C::primary(name)
        } else {
            self.expr(index)
        };
        let target = self.element_at(mem, &index);
        self.assign(target, elem, op, value);
    }

    fn mem_elem(&self, mem: MemRef) -> Type {
        let ty = match mem {
            MemRef::Param(i) => self.func.params.get(i as usize).and_then(|p| match p.kind {
                crate::typed::ParamKind::Slice { elem, .. } => Some(elem),
                crate::typed::ParamKind::Value { .. } => None,
            }),
            MemRef::Array(id) => self.func.arrays.get(id.0 as usize).map(|a| a.elem),
        };
        ty.unwrap_or(Type::U32)
    }

    fn if_stmt(&mut self, cond: &Expr, then: &[Stmt], els: &[Stmt]) {
        let cond = self.expr(cond).at(prec::TOP);
        self.line(&format!("if ({cond}) {{"));
        self.if_rest(then, els);
    }

    /// The branches of an `if`; an `else` holding only an `if` prints as `else if`.
    fn if_rest(&mut self, then: &[Stmt], els: &[Stmt]) {
        self.block(then);
        match els {
            [] => self.line("}"),
            [Stmt {
                kind: StmtKind::If { cond, then, els },
                ..
            }] => {
                let cond = self.expr(cond).at(prec::TOP);
                self.line(&format!("}} else if ({cond}) {{"));
                self.if_rest(then, els);
            }
            _ => {
                self.line("} else {");
                self.block(els);
                self.line("}");
            }
        }
    }

    /// `for (T i = start; i < end; i += step)`. `end` and `step` are evaluated once: kept
    /// inline when they cannot change, else named before the loop. A loop variable the body
    /// assigns is a copy of a hidden counter, as in Rust.
    fn for_stmt(
        &mut self,
        var: VarId,
        [start, end, step]: [&Expr; 3],
        unroll: Option<u32>,
        body: &[Stmt],
    ) {
        let ty = self.var_ty(var);
        let c_ty = c_type_name(ty);
        let name = self.names.var(var.0).to_string();
        let end = self.loop_bound(end, &format!("{name}_end"), &c_ty);
        let step_is_one = matches!(step.kind, ExprKind::Lit(1));
        let step = self.loop_bound(step, &format!("{name}_step"), &c_ty);
        let start = self.expr(start).at(prec::ARG);
        let mutable = self
            .func
            .vars
            .get(var.0 as usize)
            .is_some_and(|v| v.mutable);
        let counter = if mutable {
            self.names.fresh(&format!("{name}_iter"))
        } else {
            name.clone()
        };
        match unroll {
            Some(0) => self.line("#pragma unroll"),
            Some(n) => self.line(&format!("#pragma unroll {n}")),
            None => {}
        }
        let advance = if step_is_one {
            format!("++{counter}")
        } else {
            format!("{counter} += {}", step.at(prec::ARG))
        };
        self.line(&format!(
            "for ({c_ty} {counter} = {start}; {counter} < {}; {advance}) {{",
            end.at(prec::SHIFT)
        ));
        if mutable {
            self.indent += 1;
            self.line(&format!("{c_ty} {name} = {counter};"));
            self.indent -= 1;
        }
        self.block(body);
        self.line("}");
    }

    fn loop_bound(&mut self, e: &Expr, temp: &str, c_ty: &str) -> C {
        let stable = match &e.kind {
            ExprKind::Lit(_) | ExprKind::Builtin(_) | ExprKind::Len(_) => true,
            ExprKind::Var(v) => self.func.vars.get(v.0 as usize).is_some_and(|v| !v.mutable),
            _ => false,
        };
        if stable {
            return self.expr(e);
        }
        let value = self.expr(e).at(prec::ARG);
        let name = self.names.fresh(temp);
        self.line(&format!("const {c_ty} {name} = {value};"));
        C::primary(name)
    }
}

/// The zero value of a type, for `let` without an initializer.
fn zero(ty: Type) -> String {
    match ty {
        Type::Scalar(s @ (ScalarType::Bool | ScalarType::F32)) => scalar_literal(s, 0).text,
        Type::Scalar(s) if s.is_int() => scalar_literal(s, 0).text,
        // Value-initialization zeroes `__half`, `__nv_bfloat16`, FP8 bytes and `wf_vec`.
        _ => "{}".to_string(),
    }
}

impl FnGen<'_> {
    /// Whether an `ldmatrix` of this function reads array `id`, or a `cp.async` writes it,
    /// directly or through the device functions it is passed to.
    fn loads_matrices(&self, id: crate::typed::ArrayId) -> bool {
        loads_matrices_in(self.kernel, self.func, MemRef::Array(id))
    }
}

/// Whether `func` uses `mem` as an `ldmatrix` source or `cp.async` destination, itself or
/// in a device function it passes `mem` to (the resolver rejects recursion, so this ends).
fn loads_matrices_in(kernel: &Kernel, func: &Function, mem: MemRef) -> bool {
    let mut found = false;
    crate::nvrtc::walk_exprs(&func.body, &mut |e| match &e.kind {
        ExprKind::LoadMatrix { mem: m, .. } | ExprKind::CopyAsync { dst: m, .. } => {
            found |= *m == mem
        }
        ExprKind::Call { func, args } => {
            let Some(callee) = kernel.device_fns.get(func.0 as usize) else {
                return;
            };
            for (i, arg) in args.iter().enumerate() {
                if matches!(arg, CallArg::Mem(m) if *m == mem) && !found {
                    found = loads_matrices_in(kernel, callee, MemRef::Param(i as u32));
                }
            }
        }
        _ => {}
    });
    found
}

/// Whether evaluating `e` twice gives the same value and no effect.
fn is_pure(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) | ExprKind::Len(_) | ExprKind::Builtin(_) => true,
        ExprKind::Load { index, .. } => is_pure(index),
        ExprKind::Binary(_, a, b) => is_pure(a) && is_pure(b),
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) | ExprKind::Lane(a, _) => {
            is_pure(a)
        }
        ExprKind::Select(c, a, b) => is_pure(c) && is_pure(a) && is_pure(b),
        ExprKind::MakeVector(lanes) => lanes.iter().all(is_pure),
        ExprKind::Intrinsic(intr, args) => {
            let collective = matches!(
                intr,
                Intrinsic::SyncThreads
                    | Intrinsic::ShflXor
                    | Intrinsic::ShflDown
                    | Intrinsic::ShflUp
                    | Intrinsic::ShflIdx
                    | Intrinsic::VoteAny
                    | Intrinsic::VoteAll
                    | Intrinsic::VoteBallot
                    | Intrinsic::MmaF16F32
                    | Intrinsic::MmaBf16F32
                    | Intrinsic::MmaF16F16
                    | Intrinsic::MmaE4m3F32
                    | Intrinsic::MmaE5m2F32
            );
            !collective && args.iter().all(is_pure)
        }
        ExprKind::Atomic { .. }
        | ExprKind::LoadMatrix { .. }
        | ExprKind::CopyAsync { .. }
        | ExprKind::Call { .. } => false,
    }
}
