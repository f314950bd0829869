//! Resolving expressions: names, literals, operators, casts, indexing, `if` values.

use super::fold;
use super::func::{Binding, FnBuilder, R};
use super::infer::{Ty, VarKind};
use crate::ir::{self, BinOp, Span, UnOp};
use crate::typed::{Expr, ExprKind, MemRef, StmtKind};
use crate::types::{ScalarType, Type};

impl FnBuilder<'_, '_> {
    /// Lowers an expression that has a value.
    pub fn expr(&mut self, e: &ir::Expr) -> R<(Expr, Ty)> {
        let span = e.span;
        match &e.kind {
            ir::ExprKind::Int(v, suffix) => self.int_lit(*v, *suffix, span),
            ir::ExprKind::Float(v, suffix) => {
                let t = match suffix {
                    Some(s) => Ty::scalar(*s),
                    None => self.fresh(VarKind::Float),
                };
                let ty = self.concrete(t);
                let bits = self.float_bits(*v, ty, span)?;
                Ok((Expr::lit(ty, bits), t))
            }
            ir::ExprKind::Bool(b) => Ok((Expr::lit(Type::BOOL, *b as u64), Ty::Known(Type::BOOL))),
            ir::ExprKind::Path(name) => self.path(name, span),
            ir::ExprKind::Binary(op, a, b) => self.binary(*op, a, b, span),
            ir::ExprKind::Unary(op, a) => self.unary(*op, a, span),
            ir::ExprKind::Cast(a, to) => {
                let (x, _) = self.expr(a)?;
                self.check_cast(x.ty, *to, span)?;
                Ok((self.cast_typed(x, *to), Ty::Known(*to)))
            }
            ir::ExprKind::Index(base, index) => {
                let (mem, elem, _, _) = self.mem_of(base)?;
                let index = self.index_expr(index)?;
                let load = ExprKind::Load {
                    mem,
                    index: Box::new(index),
                };
                Ok((
                    Expr {
                        kind: load,
                        ty: elem,
                    },
                    Ty::Known(elem),
                ))
            }
            ir::ExprKind::Field(base, field) => self.field(base, field, span),
            ir::ExprKind::MethodCall {
                receiver,
                method,
                generics,
                args,
            } => {
                let (x, t) = self.method(receiver, method, generics, args, span)?;
                let t =
                    t.ok_or_else(|| self.err(span, format!("`.{method}()` returns no value")))?;
                Ok((x, t))
            }
            ir::ExprKind::Call {
                func,
                generics,
                args,
            } => {
                let (x, t) = self.call(func, generics, args, span)?;
                let t = t.ok_or_else(|| self.err(span, format!("`{func}()` returns no value")))?;
                Ok((x, t))
            }
            ir::ExprKind::CallDevice { def, consts, args } => {
                let def = def();
                let (x, t) = self.call_device(&def, consts, args, span)?;
                let t =
                    t.ok_or_else(|| self.err(span, format!("`{}()` returns no value", def.name)))?;
                Ok((x, t))
            }
            ir::ExprKind::If { cond, then, els } => self.if_value(cond, then, els, span),
            ir::ExprKind::Block(b) => {
                let (stmts, value) = self.block_with_value(b)?;
                for s in stmts {
                    self.push_pending(s);
                }
                value.ok_or_else(|| self.err(span, "this block has no value".into()))
            }
        }
    }

    /// Lowers an expression in statement position (its value, if any, is dropped).
    pub fn expr_stmt(&mut self, e: &ir::Expr) -> R<Option<StmtKind>> {
        let span = e.span;
        let value = match &e.kind {
            ir::ExprKind::MethodCall {
                receiver,
                method,
                generics,
                args,
            } => self.method(receiver, method, generics, args, span)?,
            ir::ExprKind::Call {
                func,
                generics,
                args,
            } => self.call(func, generics, args, span)?,
            ir::ExprKind::CallDevice { def, consts, args } => {
                self.call_device(&def(), consts, args, span)?
            }
            ir::ExprKind::If { cond, then, els } => return self.if_stmt(cond, then, Some(els)),
            _ => {
                let (x, t) = self.expr(e)?;
                (x, Some(t))
            }
        };
        let (x, _) = value;
        Ok(has_effect(&x).then_some(StmtKind::Eval(x)))
    }

    fn int_lit(&mut self, v: i128, suffix: Option<ScalarType>, span: Span) -> R<(Expr, Ty)> {
        let t = match suffix {
            Some(s) => Ty::scalar(s),
            None => self.fresh(VarKind::Int),
        };
        let ty = self.concrete(t);
        let s = ty.elem();
        if self.building && !int_fits(v, s) {
            return Err(self.err(span, format!("literal {v} does not fit in `{s}`")));
        }
        if s.is_float() {
            let bits = self.float_bits(v as f64, ty, span)?;
            return Ok((Expr::lit(ty, bits), t));
        }
        Ok((Expr::lit(ty, fold::to_bits(v, s)), t))
    }

    /// The bits of float literal `v` in type `ty` (round to nearest even).
    fn float_bits(&self, v: f64, ty: Type, span: Span) -> R<u64> {
        Ok(match ty.elem() {
            ScalarType::F32 => (v as f32).to_bits() as u64,
            ScalarType::F16 => half::f16::from_f64(v).to_bits() as u64,
            ScalarType::BF16 => half::bf16::from_f64(v).to_bits() as u64,
            ScalarType::F8E4M3 => float8::F8E4M3::from_f64(v).to_bits() as u64,
            ScalarType::F8E5M2 => float8::F8E5M2::from_f64(v).to_bits() as u64,
            other if self.building => {
                return Err(self.err(span, format!("a float literal can't have type `{other}`")))
            }
            _ => 0,
        })
    }

    fn path(&mut self, name: &str, span: Span) -> R<(Expr, Ty)> {
        match self.lookup(name) {
            Some(Binding::Var(v)) => {
                let t = self.var_ty(v);
                let ty = self.concrete(t);
                Ok((Expr { kind: ExprKind::Var(v), ty }, t))
            }
            Some(Binding::Const(s, v)) => {
                let ty = Type::Scalar(s);
                Ok((Expr::lit(ty, fold::to_bits(v as i128, s)), Ty::Known(ty)))
            }
            Some(Binding::Mem(..)) => Err(self.err(span, format!("`{name}` is a slice or array: index it (`{name}[i]`), or pass it to a device function"))),
            None => match named_constant(name) {
                Some((ty, bits)) => Ok((Expr::lit(ty, bits), Ty::Known(ty))),
                None => Err(self.err(span, format!("cannot find `{name}` in this kernel"))),
            },
        }
    }

    /// The memory a path names: (reference, element type, writable, name).
    pub fn mem_of(&mut self, base: &ir::Expr) -> R<(MemRef, Type, bool, String)> {
        if let ir::ExprKind::Path(name) = &base.kind {
            if let Some(Binding::Mem(m, elem, w)) = self.lookup(name) {
                return Ok((m, elem, w, name.clone()));
            }
        }
        Err(self.err(
            base.span,
            "only slice parameters and arrays can be indexed".into(),
        ))
    }

    /// An index, as u32 (Rust allows `u32` and `i32` indices on the DSL's slices).
    pub fn index_expr(&mut self, index: &ir::Expr) -> R<Expr> {
        let (i, t) = self.expr(index)?;
        if self.unifier.kind_of(t) == Some(VarKind::Int)
            || self.unifier.kind_of(t) == Some(VarKind::Any)
        {
            self.unify(t, Ty::scalar(ScalarType::U32), index.span)?;
        }
        let ty = self.concrete(t);
        match ty.scalar() {
            Some(ScalarType::U32) => Ok(Expr { ty, ..i }),
            Some(s) if s.is_int() => Ok(self.cast_typed(i, Type::U32)),
            _ if !self.building => Ok(i),
            _ => Err(self.err(
                index.span,
                format!("an index must be an integer (u32), not `{ty}`"),
            )),
        }
    }

    fn field(&mut self, base: &ir::Expr, field: &str, span: Span) -> R<(Expr, Ty)> {
        let (b, _) = self.expr(base)?;
        let lane = match field {
            "x" => 0,
            "y" => 1,
            "z" => 2,
            "w" => 3,
            _ => {
                return Err(self.err(
                    span,
                    format!("unknown field `{field}`: vectors have lanes x, y, z, w"),
                ))
            }
        };
        match b.ty {
            Type::Vector(s, n) if lane < n => {
                let ty = Type::Scalar(s);
                Ok((
                    Expr {
                        kind: ExprKind::Lane(Box::new(b), lane),
                        ty,
                    },
                    Ty::Known(ty),
                ))
            }
            _ if !self.building => Ok((b, Ty::Known(Type::F32))),
            other => Err(self.err(span, format!("`{other}` has no lane `.{field}`"))),
        }
    }

    fn binary(&mut self, op: BinOp, a: &ir::Expr, b: &ir::Expr, span: Span) -> R<(Expr, Ty)> {
        let (x, xt) = self.expr(a)?;
        let (y, yt) = self.expr(b)?;
        let bool_ty = Ty::Known(Type::BOOL);
        if op.is_logical() {
            self.unify(xt, bool_ty, a.span)?;
            self.unify(yt, bool_ty, b.span)?;
        } else if !matches!(op, BinOp::Shl | BinOp::Shr) {
            self.unify(xt, yt, span)?;
        }
        let x = Expr {
            ty: self.concrete(xt),
            ..x
        };
        let y = Expr {
            ty: self.concrete(yt),
            ..y
        };
        let result_ty = if op.is_comparison() || op.is_logical() {
            bool_ty
        } else {
            xt
        };
        Ok((self.binary_typed(op, x, y, span)?, result_ty))
    }

    /// Builds `x op y` from typed operands, checking the operator fits the type, folding
    /// constants, and making `&&`/`||` with trapping operands explicit selects.
    pub fn binary_typed(&mut self, op: BinOp, x: Expr, y: Expr, span: Span) -> R<Expr> {
        let ty = if op.is_comparison() || op.is_logical() {
            Type::BOOL
        } else {
            x.ty
        };
        if self.building {
            self.check_binary(op, x.ty, y.ty, span)?;
        }
        if let Some(folded) = fold::binary(op, &x, &y, ty) {
            return Ok(folded);
        }
        let kind = match op {
            // `a && b` evaluates b only where a holds: keep that visible to the
            // interpreter when b could trap (a load, a division) or has effects.
            BinOp::And if !is_safe(&y) => {
                ExprKind::Select(Box::new(x), Box::new(y), Box::new(Expr::lit(Type::BOOL, 0)))
            }
            BinOp::Or if !is_safe(&y) => {
                ExprKind::Select(Box::new(x), Box::new(Expr::lit(Type::BOOL, 1)), Box::new(y))
            }
            _ => ExprKind::Binary(op, Box::new(x), Box::new(y)),
        };
        Ok(Expr { kind, ty })
    }

    fn check_binary(&self, op: BinOp, a: Type, b: Type, span: Span) -> R<()> {
        let s = match a {
            Type::Scalar(s) => s,
            Type::Vector(..) => {
                return Err(self.err(
                    span,
                    format!(
                        "`{}` is not defined on vectors; operate on the lanes",
                        op.symbol()
                    ),
                ))
            }
        };
        let ok = match op {
            BinOp::And | BinOp::Or => s == ScalarType::Bool,
            BinOp::Eq | BinOp::Ne => !matches!(s, ScalarType::F8E4M3 | ScalarType::F8E5M2),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                s != ScalarType::Bool && !matches!(s, ScalarType::F8E4M3 | ScalarType::F8E5M2)
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                s.is_int() || matches!(s, ScalarType::F32 | ScalarType::F16 | ScalarType::BF16)
            }
            BinOp::Rem => s.is_int() || s == ScalarType::F32,
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => s.is_int() || s == ScalarType::Bool,
            BinOp::Shl | BinOp::Shr => s.is_int() && b.scalar().is_some_and(|t| t.is_int()),
        };
        if ok {
            return Ok(());
        }
        let hint = if matches!(s, ScalarType::F8E4M3 | ScalarType::F8E5M2) {
            "; FP8 values are for storage: convert with `.to_f32()` first"
        } else {
            ""
        };
        Err(self.err(
            span,
            format!("`{}` is not defined on `{a}`{hint}", op.symbol()),
        ))
    }

    fn unary(&mut self, op: UnOp, a: &ir::Expr, span: Span) -> R<(Expr, Ty)> {
        if let (UnOp::Neg, ir::ExprKind::Int(v, suffix)) = (op, &a.kind) {
            return self.int_lit(-v, *suffix, span);
        }
        if let (UnOp::Neg, ir::ExprKind::Float(v, suffix)) = (op, &a.kind) {
            let neg = ir::Expr::new(ir::ExprKind::Float(-v, *suffix), span);
            return self.expr(&neg);
        }
        let (x, t) = self.expr(a)?;
        let ty = self.concrete(t);
        if self.building {
            let s = ty.scalar().unwrap_or(ScalarType::Bool);
            let ok = match op {
                UnOp::Neg => {
                    s.is_signed_int()
                        || matches!(s, ScalarType::F32 | ScalarType::F16 | ScalarType::BF16)
                }
                UnOp::Not => s.is_int() || s == ScalarType::Bool,
            };
            if !ok || ty.scalar().is_none() {
                let sym = if op == UnOp::Neg { "-" } else { "!" };
                return Err(self.err(span, format!("`{sym}` is not defined on `{ty}`")));
            }
        }
        let x = Expr { ty, ..x };
        if let Some(folded) = fold::unary(op, &x) {
            return Ok((folded, t));
        }
        Ok((
            Expr {
                kind: ExprKind::Unary(op, Box::new(x)),
                ty,
            },
            t,
        ))
    }

    fn check_cast(&self, from: Type, to: Type, span: Span) -> R<()> {
        if !self.building {
            return Ok(());
        }
        match (from, to) {
            (Type::Scalar(_), Type::Scalar(ScalarType::Bool)) => {
                Err(self.err(span, "`as bool` is not allowed; compare with `!= 0`".into()))
            }
            (Type::Scalar(_), Type::Scalar(_)) => Ok(()),
            _ => Err(self.err(
                span,
                format!("can't cast `{from}` to `{to}`; cast lane by lane"),
            )),
        }
    }

    /// `T::max_finite()`: the largest finite value of the float format `T`, as an f32
    /// literal, so generic kernels can saturate to their output format.
    pub fn max_finite(&self, func: &str, args: &[ir::Expr], span: Span) -> R<(Expr, Option<Ty>)> {
        let ty = func.strip_suffix("::max_finite").unwrap_or(func);
        let Some(max) = ScalarType::from_rust_name(ty).and_then(max_finite) else {
            return Err(self.err(
                span,
                format!("`{func}()` is defined for the float formats f32, f16, bf16, F8E4M3 and F8E5M2, not `{ty}`"),
            ));
        };
        if !args.is_empty() {
            return Err(self.err(span, format!("`{func}()` takes no arguments")));
        }
        let lit = Expr::lit(Type::F32, max.to_bits() as u64);
        Ok((lit, Some(Ty::Known(Type::F32))))
    }

    /// `x as to` (no node when the type is already `to`).
    pub fn cast_typed(&mut self, x: Expr, to: Type) -> Expr {
        if x.ty == to {
            return x;
        }
        if let Some(folded) = fold::cast(&x, to) {
            return folded;
        }
        Expr {
            kind: ExprKind::Cast(Box::new(x)),
            ty: to,
        }
    }

    fn if_value(
        &mut self,
        cond: &ir::Expr,
        then: &ir::Block,
        els: &ir::Block,
        span: Span,
    ) -> R<(Expr, Ty)> {
        let (c, ct) = self.expr(cond)?;
        self.unify(ct, Ty::Known(Type::BOOL), cond.span)?;
        let (Some(then_tail), Some(else_tail)) = (&then.tail, &els.tail) else {
            return Err(self.err(
                span,
                "an `if` used as a value needs a value in both branches".into(),
            ));
        };
        if then.stmts.is_empty() && els.stmts.is_empty() {
            let (a, at) = self.expr(then_tail)?;
            let (b, bt) = self.expr(else_tail)?;
            self.unify(at, bt, span)?;
            let ty = self.concrete(at);
            let (a, b) = (Expr { ty, ..a }, Expr { ty, ..b });
            if let Some(k) = fold::const_value(&c) {
                return Ok((if k != 0 { a } else { b }, at));
            }
            return Ok((
                Expr {
                    kind: ExprKind::Select(Box::new(c), Box::new(a), Box::new(b)),
                    ty,
                },
                at,
            ));
        }
        // Branches with statements: hoist into an `if` statement that assigns a temporary.
        let t = self.fresh(VarKind::Any);
        let tmp = self.temp_var(t);
        let mut branches = Vec::new();
        for block in [then, els] {
            let (mut stmts, value) = self.block_with_value(block)?;
            let (v, vt) = value.expect("both branches have a tail");
            let tail_span = block.tail.as_ref().map_or(span, |t| t.span);
            self.unify(t, vt, tail_span)?;
            let assign = StmtKind::AssignVar {
                var: tmp,
                op: None,
                value: v,
            };
            stmts.push(crate::typed::Stmt {
                kind: assign,
                span: tail_span,
            });
            branches.push(stmts);
        }
        let els_stmts = branches.pop().unwrap_or_default();
        let then_stmts = branches.pop().unwrap_or_default();
        let ty = self.concrete(t);
        self.push_pending(crate::typed::Stmt {
            kind: StmtKind::Let {
                var: tmp,
                init: None,
            },
            span,
        });
        self.push_pending(crate::typed::Stmt {
            kind: StmtKind::If {
                cond: c,
                then: then_stmts,
                els: els_stmts,
            },
            span,
        });
        Ok((
            Expr {
                kind: ExprKind::Var(tmp),
                ty,
            },
            t,
        ))
    }
}

/// Whether evaluating `e` can neither trap nor have an effect (so `&&` may evaluate it
/// unconditionally).
pub(super) fn is_safe(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) | ExprKind::Builtin(_) | ExprKind::Len(_) => true,
        ExprKind::Binary(op, a, b) => {
            let traps = matches!(op, BinOp::Div | BinOp::Rem) && e.ty.elem().is_int();
            !traps && is_safe(a) && is_safe(b)
        }
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) | ExprKind::Lane(a, _) => {
            is_safe(a)
        }
        ExprKind::Select(c, a, b) => is_safe(c) && is_safe(a) && is_safe(b),
        ExprKind::MakeVector(v) => v.iter().all(is_safe),
        ExprKind::Load { .. }
        | ExprKind::Intrinsic(..)
        | ExprKind::Atomic { .. }
        | ExprKind::LoadMatrix { .. }
        | ExprKind::CopyAsync { .. }
        | ExprKind::Call { .. } => false,
    }
}

/// Whether an expression statement does something (calls, atomics, collectives).
fn has_effect(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Intrinsic(..)
        | ExprKind::Atomic { .. }
        | ExprKind::LoadMatrix { .. }
        | ExprKind::CopyAsync { .. }
        | ExprKind::Call { .. } => true,
        ExprKind::Binary(_, a, b) => has_effect(a) || has_effect(b),
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) | ExprKind::Lane(a, _) => {
            has_effect(a)
        }
        ExprKind::Select(c, a, b) => has_effect(c) || has_effect(a) || has_effect(b),
        ExprKind::MakeVector(v) => v.iter().any(has_effect),
        ExprKind::Load { index, .. } => has_effect(index),
        _ => false,
    }
}

/// Associated constants kernels may use: `f32::INFINITY`, `u32::MAX`, ...
fn named_constant(path: &str) -> Option<(Type, u64)> {
    let (ty, name) = path.split_once("::")?;
    let f = |v: f32| Some((Type::F32, v.to_bits() as u64));
    match (ty, name) {
        ("f32", "INFINITY") => f(f32::INFINITY),
        ("f32", "NEG_INFINITY") => f(f32::NEG_INFINITY),
        ("f32", "NAN") => f(f32::NAN),
        ("f32", "MAX") => f(f32::MAX),
        ("f32", "MIN") => f(f32::MIN),
        ("f32", "MIN_POSITIVE") => f(f32::MIN_POSITIVE),
        ("f32", "EPSILON") => f(f32::EPSILON),
        _ => {
            let s = ScalarType::from_rust_name(ty).filter(|s| s.is_int())?;
            let v: i128 = match (s, name) {
                (ScalarType::I32, "MAX") => i32::MAX as i128,
                (ScalarType::I32, "MIN") => i32::MIN as i128,
                (ScalarType::U32, "MAX") => u32::MAX as i128,
                (ScalarType::I64, "MAX") => i64::MAX as i128,
                (ScalarType::I64, "MIN") => i64::MIN as i128,
                (ScalarType::U64, "MAX") => u64::MAX as i128,
                (_, "MIN") => 0,
                _ => return None,
            };
            Some((Type::Scalar(s), fold::to_bits(v, s)))
        }
    }
}

/// The largest finite value of a float format, as an `f32`; `None` for integers and bool.
fn max_finite(s: ScalarType) -> Option<f32> {
    use crate::prelude::{bf16, f16, FloatFormat, F8E4M3, F8E5M2};
    Some(match s {
        ScalarType::F32 => f32::max_finite(),
        ScalarType::F16 => f16::max_finite(),
        ScalarType::BF16 => bf16::max_finite(),
        ScalarType::F8E4M3 => F8E4M3::max_finite(),
        ScalarType::F8E5M2 => F8E5M2::max_finite(),
        _ => return None,
    })
}

fn int_fits(v: i128, s: ScalarType) -> bool {
    match s {
        ScalarType::I32 => (i32::MIN as i128..=i32::MAX as i128).contains(&v),
        ScalarType::U32 => (0..=u32::MAX as i128).contains(&v),
        ScalarType::I64 => (i64::MIN as i128..=i64::MAX as i128).contains(&v),
        ScalarType::U64 => (0..=u64::MAX as i128).contains(&v),
        _ => true,
    }
}
