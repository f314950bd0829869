//! Calls: the DSL's intrinsics by name (`thread_idx_x()`, `warp_shfl_xor(..)`,
//! `atomic_add(..)`, `f16::from_f32(..)`), methods (`x.exp()`, `buf.len()`), and calls of
//! `#[device]` functions.
//!
//! Each returns the expression and its type, or no type for a call without a value
//! (`sync_threads()`).

use super::fold;
use super::func::{FnBuilder, MemSpace, R};
use super::infer::{Ty, VarKind};
use crate::ir::{self, DeviceFnDef, ParamType, Span};
use crate::typed::{AtomicOp, Builtin, CallArg, Dim, Expr, ExprKind, FnId, Intrinsic};
use crate::types::{ScalarType, Type};

mod tensor_core;

type Call = (Expr, Option<Ty>);

const F32: Type = Type::F32;
const U32: Type = Type::U32;
const BOOL: Type = Type::BOOL;

impl FnBuilder<'_, '_> {
    /// A call of an intrinsic by path.
    pub fn call(
        &mut self,
        func: &str,
        generics: &[Type],
        args: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        if let Some(b) = builtin(func) {
            self.arity(func, args, 0, span)?;
            return Ok(self.builtin_value(b));
        }
        let typed_value = |x: Expr| {
            let t = Ty::Known(x.ty);
            (x, Some(t))
        };
        match func {
            "sync_threads" => {
                self.arity(func, args, 0, span)?;
                Ok((intrinsic(Intrinsic::SyncThreads, vec![], BOOL), None))
            }
            "warp_shfl_xor" | "warp_shfl_down" | "warp_shfl_up" | "warp_shfl_idx" => {
                self.arity(func, args, 2, span)?;
                let (v, vt) = self.expr(&args[0])?;
                let lane = self.arg_of(&args[1], U32)?;
                let op = match func {
                    "warp_shfl_xor" => Intrinsic::ShflXor,
                    "warp_shfl_down" => Intrinsic::ShflDown,
                    "warp_shfl_up" => Intrinsic::ShflUp,
                    _ => Intrinsic::ShflIdx,
                };
                let ty = self.concrete(vt);
                Ok((intrinsic(op, vec![Expr { ty, ..v }, lane], ty), Some(vt)))
            }
            "warp_any" | "warp_all" | "warp_ballot" => {
                self.arity(func, args, 1, span)?;
                let p = self.arg_of(&args[0], BOOL)?;
                let (op, ty) = match func {
                    "warp_any" => (Intrinsic::VoteAny, BOOL),
                    "warp_all" => (Intrinsic::VoteAll, BOOL),
                    _ => (Intrinsic::VoteBallot, U32),
                };
                Ok(typed_value(intrinsic(op, vec![p], ty)))
            }
            "atomic_add" | "atomic_min" | "atomic_max" | "atomic_cas" => self.atomic(func, args, span),
            "mma_m16n8k16_f16_f32" | "mma_m16n8k16_bf16_f32" | "mma_m16n8k16_f16_f16" | "mma_m16n8k32_e4m3_f32" | "mma_m16n8k32_e5m2_f32" => self.mma(func, args, span),
            "add_f16x2" | "sub_f16x2" | "mul_f16x2" | "fma_f16x2" | "max_f16x2" | "min_f16x2" | "add_bf16x2" | "sub_bf16x2" | "mul_bf16x2" | "fma_bf16x2" | "max_bf16x2" | "min_bf16x2" => self.half2(func, args, span),
            "pack_f16x2" | "pack_bf16x2" | "unpack_f16x2" | "unpack_bf16x2" => self.pack(func, args, span),
            "cp_async_4" | "cp_async_8" | "cp_async_16" | "cp_async_4_zfill" | "cp_async_8_zfill" | "cp_async_16_zfill" | "cp_async_16_zfill_evict_first" => self.copy_async(func, args, span),
            "lop3" => {
                self.arity(func, args, 4, span)?;
                let operands = args[..3].iter().map(|a| self.arg_of(a, U32)).collect::<R<Vec<_>>>()?;
                let (lut, _) = self.expr(&args[3])?;
                let lut = match fold::const_value(&lut) {
                    Some(v) if (0..=255).contains(&v) => v as u64,
                    _ if !self.building => 0,
                    _ => return Err(self.err(args[3].span, "`lop3(a, b, c, lut)` takes a constant lut in 0..=255 (the truth table F(0xF0, 0xCC, 0xAA))".into())),
                };
                let mut all = operands;
                all.push(Expr::lit(U32, lut));
                Ok(typed_value(intrinsic(Intrinsic::Lop3, all, U32)))
            }
            "prmt" => {
                self.arity(func, args, 3, span)?;
                let operands = args.iter().map(|a| self.arg_of(a, U32)).collect::<R<Vec<_>>>()?;
                Ok(typed_value(intrinsic(Intrinsic::Prmt, operands, U32)))
            }
            "ex2_approx" => {
                self.arity(func, args, 1, span)?;
                let x = self.arg_of(&args[0], F32)?;
                Ok(typed_value(intrinsic(Intrinsic::Ex2Approx, vec![x], F32)))
            }
            "cp_async_commit" => {
                self.arity(func, args, 0, span)?;
                Ok((intrinsic(Intrinsic::CpAsyncCommit, vec![], BOOL), None))
            }
            "cp_async_wait" => {
                self.arity(func, args, 1, span)?;
                let (n, _) = self.expr(&args[0])?;
                let n = match fold::const_value(&n) {
                    Some(v) if (0..=7).contains(&v) => v as u64,
                    _ if !self.building => 0,
                    _ => return Err(self.err(args[0].span, "`cp_async_wait(n)` takes a constant n in 0..=7 (the number of most recent groups left pending)".into())),
                };
                Ok((intrinsic(Intrinsic::CpAsyncWait, vec![Expr::lit(U32, n)], BOOL), None))
            }
            "ldmatrix_x1" | "ldmatrix_x2" | "ldmatrix_x4" | "ldmatrix_x1_trans" | "ldmatrix_x2_trans" | "ldmatrix_x4_trans" => self.load_matrix(func, args, span),
            "rsqrt" => {
                self.arity(func, args, 1, span)?;
                self.float_math(Intrinsic::Rsqrt, &args[0], &[], span)
            }
            "f32::from_f32" | "f16::from_f32" | "bf16::from_f32" | "F8E4M3::from_f32" | "F8E5M2::from_f32" | "f8e4m3::from_f32" | "f8e5m2::from_f32" => {
                self.arity(func, args, 1, span)?;
                let x = self.arg_of(&args[0], F32)?;
                let target = func.split("::").next().and_then(ScalarType::from_rust_name).unwrap_or(ScalarType::F32);
                Ok(typed_value(self.cast_typed(x, Type::Scalar(target))))
            }
            "f32::from_bits" => {
                self.arity(func, args, 1, span)?;
                let x = self.arg_of(&args[0], U32)?;
                Ok(typed_value(Expr { kind: ExprKind::Bitcast(Box::new(x)), ty: F32 }))
            }
            "Vec2::new" | "Vec4::new" => self.make_vector(func, generics, args, span),
            _ if func.ends_with("::max_finite") => self.max_finite(func, args, span),
            "shared_array" | "local_array" => Err(self.err(span, format!("declare arrays in a `let`: `let mut name = {func}::<T>(LEN);`"))),
            _ => Err(self.err(span, format!("`{func}` is not a warpforge intrinsic; see `warpforge_dsl::prelude` for what kernels can call, or mark your function `#[device]`"))),
        }
    }

    fn builtin_value(&mut self, b: Builtin) -> Call {
        let known = match (b, self.ctx.block_dim) {
            (Builtin::WarpSize, _) => Some(32),
            (Builtin::BlockDim(d), Some(dims)) => Some(dims[d as usize]),
            _ => None,
        };
        let e = match known {
            Some(v) => Expr::lit(U32, v as u64),
            None => Expr {
                kind: ExprKind::Builtin(b),
                ty: U32,
            },
        };
        (e, Some(Ty::Known(U32)))
    }

    /// `receiver.method(args)`.
    pub fn method(
        &mut self,
        receiver: &ir::Expr,
        method: &str,
        generics: &[Type],
        args: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        let _ = generics;
        if method == "len" {
            self.arity(method, args, 0, span)?;
            let (mem, _, _, _) = self.mem_of(receiver)?;
            return Ok((
                Expr {
                    kind: ExprKind::Len(mem),
                    ty: U32,
                },
                Some(Ty::Known(U32)),
            ));
        }
        let float_unary = match method {
            "exp" => Some(Intrinsic::Exp),
            "exp2" => Some(Intrinsic::Exp2),
            "ln" => Some(Intrinsic::Ln),
            "sqrt" => Some(Intrinsic::Sqrt),
            "tanh" => Some(Intrinsic::Tanh),
            "floor" => Some(Intrinsic::Floor),
            _ => None,
        };
        if let Some(op) = float_unary {
            self.arity(method, args, 0, span)?;
            return self.float_math(op, receiver, &[], span);
        }
        match method {
            "mul_add" => {
                self.arity(method, args, 2, span)?;
                self.float_math(Intrinsic::Fma, receiver, args, span)
            }
            "abs" | "min" | "max" => {
                let (op, n) = match method {
                    "abs" => (Intrinsic::Abs, 0),
                    "min" => (Intrinsic::Min, 1),
                    _ => (Intrinsic::Max, 1),
                };
                self.arity(method, args, n, span)?;
                self.numeric_math(op, receiver, args, span)
            }
            "to_f32" => {
                self.arity(method, args, 0, span)?;
                let (x, t) = self.expr(receiver)?;
                let ty = self.concrete(t);
                if self.building && !matches!(ty.scalar(), Some(s) if s.is_float()) {
                    return Err(self.err(span, format!("`.to_f32()` converts f32, f16, bf16 and FP8 values, not `{ty}`; use `as f32`")));
                }
                Ok((self.cast_typed(Expr { ty, ..x }, F32), Some(Ty::Known(F32))))
            }
            "to_bits" => {
                self.arity(method, args, 0, span)?;
                let (x, t) = self.expr(receiver)?;
                self.unify(t, Ty::Known(F32), receiver.span).map_err(|_| self.err(span, "`.to_bits()` is supported on f32 (giving u32)".into()))?;
                Ok((Expr { kind: ExprKind::Bitcast(Box::new(Expr { ty: F32, ..x })), ty: U32 }, Some(Ty::Known(U32))))
            }
            "wrapping_add" | "wrapping_sub" | "wrapping_mul" => {
                self.arity(method, args, 1, span)?;
                let (x, xt) = self.expr(receiver)?;
                let (y, yt) = self.expr(&args[0])?;
                self.unify(xt, yt, span)?;
                let op = match method {
                    "wrapping_add" => ir::BinOp::Add,
                    "wrapping_sub" => ir::BinOp::Sub,
                    _ => ir::BinOp::Mul,
                };
                let ty = self.concrete(xt);
                if self.building && !ty.elem().is_int() {
                    return Err(self.err(span, format!("`.{method}()` is for integers, not `{ty}`")));
                }
                let e = self.binary_typed(op, Expr { ty, ..x }, Expr { ty, ..y }, span)?;
                Ok((e, Some(xt)))
            }
            _ => Err(self.err(span, format!("method `.{method}()` is not supported in kernels; supported: exp, exp2, ln, sqrt, tanh, floor, abs, min, max, mul_add, to_f32, to_bits, wrapping_add/sub/mul, len"))),
        }
    }

    /// A float intrinsic on `x` (f32, f16 or bf16) with more operands of its type.
    fn float_math(
        &mut self,
        op: Intrinsic,
        x: &ir::Expr,
        rest: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        self.math(op, x, rest, span, true)
    }

    /// abs/min/max on floats (f32/f16/bf16) or integers.
    fn numeric_math(
        &mut self,
        op: Intrinsic,
        x: &ir::Expr,
        rest: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        self.math(op, x, rest, span, false)
    }

    fn math(
        &mut self,
        op: Intrinsic,
        x: &ir::Expr,
        rest: &[ir::Expr],
        span: Span,
        floats_only: bool,
    ) -> R<Call> {
        let (x, xt) = self.expr(x)?;
        if floats_only && self.unifier.kind_of(xt) == Some(VarKind::Any) {
            self.unify(xt, Ty::Known(F32), span)?;
        }
        let mut operands = vec![x];
        for r in rest {
            let (y, yt) = self.expr(r)?;
            self.unify(xt, yt, r.span)?;
            operands.push(y);
        }
        let ty = self.concrete(xt);
        let ok = match ty.scalar() {
            Some(s) if s.is_int() => !floats_only && (op != Intrinsic::Abs || s.is_signed_int()),
            Some(s) => matches!(s, ScalarType::F32 | ScalarType::F16 | ScalarType::BF16),
            None => false,
        };
        if self.building && !ok {
            let want = if floats_only {
                "f32, f16 or bf16"
            } else {
                "f32, f16, bf16 or an integer"
            };
            return Err(self.err(span, format!("`{op:?}` needs {want}, not `{ty}`")));
        }
        let operands = operands.into_iter().map(|o| Expr { ty, ..o }).collect();
        Ok((intrinsic(op, operands, ty), Some(xt)))
    }

    /// An argument that must have type `ty` (untyped literals take it).
    fn arg_of(&mut self, arg: &ir::Expr, ty: Type) -> R<Expr> {
        let (x, t) = self.expr(arg)?;
        self.unify(t, Ty::Known(ty), arg.span)?;
        Ok(Expr { ty, ..x })
    }

    fn arity(&self, name: &str, args: &[ir::Expr], n: usize, span: Span) -> R<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(self.err(
                span,
                format!("`{name}` takes {n} argument(s), got {}", args.len()),
            ))
        }
    }

    fn atomic(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        let (op, n) = match func {
            "atomic_add" => (AtomicOp::Add, 3),
            "atomic_min" => (AtomicOp::Min, 3),
            "atomic_max" => (AtomicOp::Max, 3),
            _ => (AtomicOp::Cas, 4),
        };
        self.arity(func, args, n, span)?;
        let (mem, elem, mutable, name) = self.mem_of(&args[0])?;
        if !mutable {
            return Err(self.err(
                args[0].span,
                format!("`{func}` writes to `{name}`: declare it `&mut [{elem}]`"),
            ));
        }
        let index = self.index_expr(&args[1])?;
        let values = args[2..]
            .iter()
            .map(|a| self.arg_of(a, elem))
            .collect::<R<Vec<_>>>()?;
        let s = elem.scalar();
        let ok = match op {
            AtomicOp::Add => matches!(s, Some(ScalarType::F32 | ScalarType::I32 | ScalarType::U32)),
            AtomicOp::Min | AtomicOp::Max => matches!(s, Some(ScalarType::I32 | ScalarType::U32)),
            AtomicOp::Cas => matches!(s, Some(ScalarType::I32 | ScalarType::U32 | ScalarType::U64)),
        };
        if !ok {
            return Err(self.err(span, format!("`{func}` is not supported on `{elem}` (add: f32/i32/u32; min/max: i32/u32; cas: i32/u32/u64)")));
        }
        let e = Expr {
            kind: ExprKind::Atomic {
                op,
                mem,
                index: Box::new(index),
                args: values,
            },
            ty: elem,
        };
        Ok((e, Some(Ty::Known(elem))))
    }

    fn make_vector(
        &mut self,
        func: &str,
        generics: &[Type],
        args: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        let lanes = if func.starts_with("Vec2") { 2 } else { 4 };
        self.arity(func, args, lanes, span)?;
        let t = match generics.first() {
            Some(g) => Ty::Known(*g),
            None => self.fresh(VarKind::Any),
        };
        let mut parts = Vec::new();
        for a in args {
            let (x, xt) = self.expr(a)?;
            self.unify(t, xt, a.span)?;
            parts.push(x);
        }
        let elem = self.concrete(t).elem();
        let parts = parts
            .into_iter()
            .map(|p| Expr {
                ty: Type::Scalar(elem),
                ..p
            })
            .collect();
        let ty = Type::Vector(elem, lanes as u8);
        Ok((
            Expr {
                kind: ExprKind::MakeVector(parts),
                ty,
            },
            Some(Ty::Known(ty)),
        ))
    }

    /// A call of a `#[device]` function.
    pub fn call_device(
        &mut self,
        def: &DeviceFnDef,
        consts: &[ir::Expr],
        args: &[ir::Expr],
        span: Span,
    ) -> R<Call> {
        let mut const_args = Vec::new();
        for c in consts {
            let (x, _) = self.expr(c)?;
            let v = fold::const_value(&x).ok_or_else(|| {
                self.err(
                    c.span,
                    "const generic arguments must be constant expressions".into(),
                )
            })?;
            const_args.push(v as i64);
        }
        self.arity(&def.name, args, def.params.len(), span)?;
        let mut call_args = Vec::new();
        let mut spaces = Vec::new();
        for (p, a) in def.params.iter().zip(args) {
            call_args.push(match p.ty {
                ParamType::Value(ty) => {
                    spaces.push(MemSpace::Global);
                    CallArg::Value(self.arg_of(a, ty)?)
                }
                ParamType::Slice { elem, mutable } => {
                    let (mem, got, writable, name) = self.mem_of(a)?;
                    if got != elem || (mutable && !writable) {
                        let want = if mutable {
                            format!("&mut [{elem}]")
                        } else {
                            format!("&[{elem}]")
                        };
                        return Err(self.err(
                            a.span,
                            format!(
                                "`{}` takes `{}: {want}`, but `{name}` is a slice of `{got}`{}",
                                def.name,
                                p.name,
                                if writable {
                                    ""
                                } else {
                                    " that can't be written"
                                }
                            ),
                        ));
                    }
                    spaces.push(self.mem_space(mem));
                    CallArg::Mem(mem)
                }
            });
        }
        let func = if self.building {
            self.specialize_device(def, (const_args, spaces), span)?
        } else {
            FnId(0)
        };
        let ty = def.ret.unwrap_or(BOOL);
        let e = Expr {
            kind: ExprKind::Call {
                func,
                args: call_args,
            },
            ty,
        };
        Ok((e, def.ret.map(Ty::Known)))
    }
}

fn intrinsic(op: Intrinsic, args: Vec<Expr>, ty: Type) -> Expr {
    Expr {
        kind: ExprKind::Intrinsic(op, args),
        ty,
    }
}

fn builtin(func: &str) -> Option<Builtin> {
    let dim = |s: &str| match s {
        "x" => Some(Dim::X),
        "y" => Some(Dim::Y),
        "z" => Some(Dim::Z),
        _ => None,
    };
    if let Some((kind, d)) = func.rsplit_once('_') {
        let d = dim(d);
        let b = match kind {
            "thread_idx" => d.map(Builtin::ThreadIdx),
            "block_idx" => d.map(Builtin::BlockIdx),
            "block_dim" => d.map(Builtin::BlockDim),
            "grid_dim" => d.map(Builtin::GridDim),
            _ => None,
        };
        if b.is_some() {
            return b;
        }
    }
    match func {
        "lane_id" => Some(Builtin::LaneId),
        "warp_size" => Some(Builtin::WarpSize),
        _ => None,
    }
}
