//! Expressions of the fuzz generator: typed, total (no division by zero or by a negative,
//! indices `% len`), over the variables in scope, the inputs and the thread indices.

use crate::gen::*;
use warpforge_dsl::ir::{BinOp, UnOp};
use warpforge_dsl::typed::*;
use warpforge_dsl::types::Type;

impl Gen {
    /// `<u32 expr> % len(mem)`.
    pub(crate) fn index_into(&mut self, mem: MemRef, ctx: Ctx) -> Expr {
        let raw = self.expr(U32, 1, ctx);
        bin(BinOp::Rem, raw, ex(ExprKind::Len(mem), U32))
    }

    pub(crate) fn expr(&mut self, ty: Type, depth: u32, ctx: Ctx) -> Expr {
        if depth == 0 || self.rng.chance(25) {
            return self.leaf(ty, ctx);
        }
        let d = depth - 1;
        if ty == BOOL {
            return self.bool_expr(d, ctx);
        }
        match self.rng.below(10) {
            0..=4 => self.arith(ty, d, ctx),
            5 => {
                let from = NUMERIC[self.rng.below(3) as usize];
                let inner = self.expr(from, d, ctx);
                ex(ExprKind::Cast(Box::new(inner)), ty)
            }
            6 => {
                let c = self.expr(BOOL, d, ctx);
                let (a, b) = (self.expr(ty, d, ctx), self.expr(ty, d, ctx));
                ex(ExprKind::Select(Box::new(c), Box::new(a), Box::new(b)), ty)
            }
            7 => {
                let op = if self.rng.chance(50) {
                    Intrinsic::Min
                } else {
                    Intrinsic::Max
                };
                let (a, b) = (self.expr(ty, d, ctx), self.expr(ty, d, ctx));
                ex(ExprKind::Intrinsic(op, vec![a, b]), ty)
            }
            8 if ty == F32 => self.float_math(d, ctx),
            _ => {
                let op = if ty == F32 || (ty == I32 && self.rng.chance(50)) {
                    UnOp::Neg
                } else {
                    UnOp::Not
                };
                ex(ExprKind::Unary(op, Box::new(self.expr(ty, d, ctx))), ty)
            }
        }
    }

    pub(crate) fn arith(&mut self, ty: Type, d: u32, ctx: Ctx) -> Expr {
        let a = self.expr(ty, d, ctx);
        if ty == F32 {
            let op = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div][self.rng.below(4) as usize];
            return bin(op, a, self.expr(F32, d, ctx));
        }
        let ops = [
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::BitAnd,
            BinOp::BitOr,
            BinOp::BitXor,
            BinOp::Shl,
            BinOp::Shr,
            BinOp::Div,
            BinOp::Rem,
        ];
        match ops[self.rng.below(ops.len() as u32) as usize] {
            op @ (BinOp::Div | BinOp::Rem) => {
                // A positive literal divisor: no division by zero, no `MIN / -1`.
                let divisor = Expr::lit(ty, 1 + self.rng.below(9) as u64);
                bin(op, a, divisor)
            }
            op @ (BinOp::Shl | BinOp::Shr) => bin(op, a, self.expr(U32, d, ctx)),
            op => bin(op, a, self.expr(ty, d, ctx)),
        }
    }

    pub(crate) fn float_math(&mut self, d: u32, ctx: Ctx) -> Expr {
        let x = self.expr(F32, d, ctx);
        let call = |op, args| ex(ExprKind::Intrinsic(op, args), F32);
        match self.rng.below(4) {
            0 => call(Intrinsic::Abs, vec![x]),
            1 => call(Intrinsic::Floor, vec![x]),
            2 => call(Intrinsic::Sqrt, vec![call(Intrinsic::Abs, vec![x])]),
            _ => {
                let (b, c) = (self.expr(F32, d, ctx), self.expr(F32, d, ctx));
                call(Intrinsic::Fma, vec![x, b, c])
            }
        }
    }

    pub(crate) fn bool_expr(&mut self, d: u32, ctx: Ctx) -> Expr {
        match self.rng.below(4) {
            0 => {
                let op = if self.rng.chance(50) {
                    BinOp::And
                } else {
                    BinOp::Or
                };
                bin(op, self.expr(BOOL, d, ctx), self.expr(BOOL, d, ctx))
            }
            1 => ex(
                ExprKind::Unary(UnOp::Not, Box::new(self.expr(BOOL, d, ctx))),
                BOOL,
            ),
            _ => {
                let ty = NUMERIC[self.rng.below(3) as usize];
                let ops = [
                    BinOp::Eq,
                    BinOp::Ne,
                    BinOp::Lt,
                    BinOp::Le,
                    BinOp::Gt,
                    BinOp::Ge,
                ];
                let op = ops[self.rng.below(6) as usize];
                bin(op, self.expr(ty, d, ctx), self.expr(ty, d, ctx))
            }
        }
    }

    pub(crate) fn leaf(&mut self, ty: Type, ctx: Ctx) -> Expr {
        if ty == BOOL {
            return Expr::lit(BOOL, self.rng.below(2) as u64);
        }
        let vars = self.visible(ty, false);
        match self.rng.below(5) {
            0 | 1 if !vars.is_empty() => {
                let i = self.rng.below(vars.len() as u32) as usize;
                self.var(vars[i])
            }
            2 if ty == U32 => {
                let b = [
                    Builtin::ThreadIdx(Dim::X),
                    Builtin::BlockIdx(Dim::X),
                    Builtin::LaneId,
                ];
                builtin(b[self.rng.below(3) as usize])
            }
            3 if ctx.depth < 3 => {
                let (mem, elem) = if ty == F32 {
                    (IN_F32, F32)
                } else {
                    (IN_I32, I32)
                };
                let index = self.index_into(MemRef::Param(mem), ctx);
                let load = ex(
                    ExprKind::Load {
                        mem: MemRef::Param(mem),
                        index: Box::new(index),
                    },
                    elem,
                );
                if elem == ty {
                    load
                } else {
                    ex(ExprKind::Cast(Box::new(load)), ty)
                }
            }
            _ => self.literal(ty),
        }
    }

    pub(crate) fn literal(&mut self, ty: Type) -> Expr {
        if ty == F32 {
            let picks = [0.0f32, -0.0, 1.0, -2.5, 0.1, 1e10, -3e-5, 65504.0];
            let v = if self.rng.chance(70) {
                picks[self.rng.below(picks.len() as u32) as usize]
            } else {
                (self.rng.below(2001) as f32 - 1000.0) / 8.0
            };
            return Expr::lit(F32, v.to_bits() as u64);
        }
        let v: u32 = match self.rng.below(4) {
            0 => self.rng.next() as u32,
            1 => [0, 1, u32::MAX, 0x8000_0000, 0x7fff_ffff][self.rng.below(5) as usize],
            _ => self.rng.below(64),
        };
        Expr::lit(ty, v as u64)
    }
}
