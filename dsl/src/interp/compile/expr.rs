//! Expressions: register operations, lazy `&&`/`||`/`Select`, intrinsics, inlined calls.

use crate::ir::BinOp;
use crate::typed::{Builtin, CallArg, Dim, Expr, ExprKind, FnId, Half2Op, Intrinsic, ParamKind};
use crate::types::ScalarType;

use super::{Compiler, Frame, Result, MAX_CALL_DEPTH};
use crate::interp::program::*;

impl<'k> Compiler<'k> {
    /// Compiles `e`, returning the register holding its value. `hint`, when given, is where
    /// the caller will copy the value: the root operation may write there directly.
    pub(super) fn expr(
        &mut self,
        f: &mut Frame<'k>,
        e: &Expr,
        out: &mut Vec<Node>,
        hint: Option<Reg>,
    ) -> Result<Reg> {
        let lanes = e.ty.lanes();
        let dst = |c: &mut Self| hint.unwrap_or_else(|| c.temp(lanes));
        Ok(match &e.kind {
            ExprKind::Lit(bits) if lanes == 1 => self.constant(*bits),
            ExprKind::Lit(_) => return Err(self.unsupported("vector literal")),
            ExprKind::Var(v) => self.var(f, *v)?,
            ExprKind::Load { mem, index } => {
                let mem = self.mem(f, *mem)?;
                let index = self.expr(f, index, out, None)?;
                let dst = dst(self);
                let site = self.site;
                out.push(Node::Op(Op::Load {
                    mem,
                    index,
                    dst,
                    site,
                }));
                dst
            }
            ExprKind::Len(m) => {
                let len = self.mems[self.mem(f, *m)? as usize].len;
                self.constant(len)
            }
            ExprKind::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let dst = self.temp(1);
                self.expr_into(f, a, out, dst)?;
                let mut rhs = Vec::new();
                self.expr_into(f, b, &mut rhs, dst)?;
                let (then, els) = if *op == BinOp::And {
                    (rhs, vec![])
                } else {
                    (vec![], rhs)
                };
                out.push(Node::If {
                    cond: dst,
                    then,
                    els,
                });
                dst
            }
            ExprKind::Binary(op, a, b) => {
                let (ra, rb) = (self.expr(f, a, out, None)?, self.expr(f, b, out, None)?);
                let (a_wide, b_wide) = (a.ty.lanes() > 1, b.ty.lanes() > 1);
                let ty = a.scalar_ty();
                let dst = dst(self);
                for l in 0..lanes as u32 {
                    let (a, b) = (ra + l * a_wide as u32, rb + l * b_wide as u32);
                    out.push(Node::Op(Op::Bin {
                        op: *op,
                        ty,
                        dst: dst + l,
                        a,
                        b,
                    }));
                }
                dst
            }
            ExprKind::Unary(op, a) => {
                let ra = self.expr(f, a, out, None)?;
                let dst = dst(self);
                for l in 0..lanes as u32 {
                    let ty = a.scalar_ty();
                    out.push(Node::Op(Op::Un {
                        op: *op,
                        ty,
                        dst: dst + l,
                        a: ra + l,
                    }));
                }
                dst
            }
            ExprKind::Cast(a) => {
                let src = self.expr(f, a, out, None)?;
                let (from, to) = (a.scalar_ty(), e.scalar_ty());
                let dst = dst(self);
                for l in 0..lanes as u32 {
                    out.push(Node::Op(Op::Cast {
                        from,
                        to,
                        dst: dst + l,
                        src: src + l,
                    }));
                }
                dst
            }
            ExprKind::Bitcast(a)
                if a.ty.lanes() == lanes && a.ty.size_bytes() == e.ty.size_bytes() =>
            {
                // The encodings of equal-width types are the same bits.
                self.expr(f, a, out, hint)?
            }
            ExprKind::Bitcast(a) => {
                return Err(self.unsupported(format!("bitcast from {} to {}", a.ty, e.ty)))
            }
            ExprKind::Select(c, a, b) => {
                let cond = self.expr(f, c, out, None)?;
                let dst = self.temp(lanes);
                let (mut then, mut els) = (Vec::new(), Vec::new());
                self.expr_into(f, a, &mut then, dst)?;
                self.expr_into(f, b, &mut els, dst)?;
                out.push(Node::If { cond, then, els });
                dst
            }
            ExprKind::Lane(v, i) => self.expr(f, v, out, None)? + *i as u32,
            ExprKind::MakeVector(items) => {
                let dst = self.temp(lanes);
                for (l, item) in items.iter().enumerate() {
                    self.expr_into(f, item, out, dst + l as u32)?;
                }
                dst
            }
            ExprKind::Builtin(b) => self.builtin(*b),
            ExprKind::Intrinsic(i, args) => self.intrinsic(f, e, *i, args, out)?,
            ExprKind::Atomic {
                op,
                mem,
                index,
                args,
            } => {
                let mem = self.writable_mem(f, *mem)?;
                let info = &self.mems[mem as usize];
                if info.lanes != 1 || !matches!(info.elem.size_bytes(), 4 | 8) {
                    let what = format!(
                        "atomic on `{}` of {} (4- or 8-byte scalars only)",
                        info.name, info.elem
                    );
                    return Err(self.unsupported(what));
                }
                let index = self.expr(f, index, out, None)?;
                let mut regs = [self.constant(0); 2];
                for (r, a) in regs.iter_mut().zip(args) {
                    *r = self.expr(f, a, out, None)?;
                }
                let dst = self.temp(1);
                out.push(Node::Op(Op::Atomic {
                    op: *op,
                    mem,
                    index,
                    args: regs,
                    dst,
                    site: self.site,
                }));
                dst
            }
            ExprKind::LoadMatrix {
                mem,
                offset,
                count,
                trans,
            } => {
                let mem = self.mem(f, *mem)?;
                let offset = self.expr(f, offset, out, None)?;
                let dst = self.temp(*count);
                out.push(Node::Op(Op::LdMatrix(MatrixLoad {
                    mem,
                    offset,
                    dst,
                    count: *count,
                    trans: *trans,
                    site: self.site,
                })));
                dst
            }
            ExprKind::CopyAsync {
                dst,
                dst_index,
                src,
                src_index,
                bytes,
                src_bytes,
                // A cache hint: the copy's result is the same.
                evict_first: _,
            } => {
                let dst = self.writable_mem(f, *dst)?;
                let src = self.mem(f, *src)?;
                let dst_index = self.expr(f, dst_index, out, None)?;
                let src_index = self.expr(f, src_index, out, None)?;
                let src_bytes = match src_bytes {
                    Some(n) => Some(self.expr(f, n, out, None)?),
                    None => None,
                };
                out.push(Node::Op(Op::CopyAsync(AsyncCopy {
                    dst,
                    dst_index,
                    src,
                    src_index,
                    bytes: *bytes,
                    src_bytes,
                    site: self.site,
                })));
                self.constant(0)
            }
            ExprKind::Call { func, args } => self.call(f, *func, args, out)?,
        })
    }

    fn builtin(&mut self, b: Builtin) -> Reg {
        let d = |d: Dim| match d {
            Dim::X => 0,
            Dim::Y => 1,
            Dim::Z => 2,
        };
        match b {
            Builtin::ThreadIdx(dim) => self.builtins.thread_idx[d(dim)],
            Builtin::BlockIdx(dim) => self.builtins.block_idx[d(dim)],
            Builtin::BlockDim(dim) => self.constant(self.dims.block[d(dim)] as u64),
            Builtin::GridDim(dim) => self.constant(self.dims.grid[d(dim)] as u64),
            Builtin::LaneId => self.builtins.lane_id,
            Builtin::WarpSize => self.constant(32),
        }
    }

    fn intrinsic(
        &mut self,
        f: &mut Frame<'k>,
        e: &Expr,
        i: Intrinsic,
        args: &[Expr],
        out: &mut Vec<Node>,
    ) -> Result<Reg> {
        match (i, args.first().map(|a| &a.kind)) {
            (Intrinsic::CpAsyncCommit, _) => {
                out.push(Node::Op(Op::CpAsyncCommit));
                return Ok(self.constant(0));
            }
            (Intrinsic::Lop3, _) | (Intrinsic::Prmt, _) => return self.bits(f, i, args, out),
            (Intrinsic::CpAsyncWait, Some(ExprKind::Lit(n))) => {
                out.push(Node::Op(Op::CpAsyncWait { n: *n as u32 }));
                return Ok(self.constant(0));
            }
            _ => {}
        }
        let mut regs = Vec::with_capacity(args.len());
        for a in args {
            regs.push(self.expr(f, a, out, None)?);
        }
        if let Some(dst) = self.tensor_core(i, &regs, out) {
            return Ok(dst);
        }
        let arity = match MathFn::of(i) {
            Some(m) => m.arity(),
            None if i == Intrinsic::SyncThreads => 0,
            None if matches!(
                i,
                Intrinsic::VoteAny | Intrinsic::VoteAll | Intrinsic::VoteBallot
            ) =>
            {
                1
            }
            None => 2,
        };
        if regs.len() != arity {
            let got = regs.len();
            return Err(self.unsupported(format!("{i:?} takes {arity} arguments, got {got}")));
        }
        let lanes = e.ty.lanes() as u32;
        let ty = e.scalar_ty();
        if let Some(m) = MathFn::of(i) {
            let dst = self.temp(lanes as u8);
            for l in 0..lanes {
                let mut a = [regs[0] + l; 3];
                for (k, r) in regs.iter().enumerate() {
                    a[k] = r + l * (args[k].ty.lanes() > 1) as u32;
                }
                out.push(Node::Op(Op::Math {
                    f: m,
                    ty,
                    dst: dst + l,
                    args: a,
                }));
            }
            return Ok(dst);
        }
        let kind = match i {
            Intrinsic::SyncThreads => {
                out.push(Node::SyncThreads { site: self.site });
                return Ok(self.constant(0));
            }
            Intrinsic::VoteAny | Intrinsic::VoteAll | Intrinsic::VoteBallot => {
                let kind = match i {
                    Intrinsic::VoteAny => VoteKind::Any,
                    Intrinsic::VoteAll => VoteKind::All,
                    _ => VoteKind::Ballot,
                };
                let dst = self.temp(1);
                out.push(Node::Op(Op::Vote {
                    kind,
                    dst,
                    src: regs[0],
                    site: self.site,
                }));
                return Ok(dst);
            }
            Intrinsic::ShflXor => ShflKind::Xor,
            Intrinsic::ShflDown => ShflKind::Down,
            Intrinsic::ShflUp => ShflKind::Up,
            _ => ShflKind::Idx,
        };
        let dst = self.temp(lanes as u8);
        for l in 0..lanes {
            out.push(Node::Op(Op::Shfl {
                kind,
                dst: dst + l,
                src: regs[0] + l,
                lane: regs[1],
                site: self.site,
            }));
        }
        Ok(dst)
    }

    /// `lop3` (its truth table a literal fourth argument) and `prmt`.
    fn bits(
        &mut self,
        f: &mut Frame<'k>,
        i: Intrinsic,
        args: &[Expr],
        out: &mut Vec<Node>,
    ) -> Result<Reg> {
        let op = match (i, args.get(3).map(|a| &a.kind)) {
            (Intrinsic::Lop3, Some(ExprKind::Lit(lut))) => BitsOp::Lop3(*lut as u8),
            (Intrinsic::Prmt, None) if args.len() == 3 => BitsOp::Prmt,
            _ => return Err(self.unsupported(format!("{i:?} with {} arguments", args.len()))),
        };
        let mut regs = [0; 3];
        for (r, a) in regs.iter_mut().zip(args) {
            *r = self.expr(f, a, out, None)?;
        }
        let dst = self.temp(1);
        out.push(Node::Op(Op::Bits {
            op,
            dst,
            args: regs,
        }));
        Ok(dst)
    }

    /// The tensor-core intrinsics and their fragment packing; `None` for other intrinsics.
    /// Packing works on the bit patterns: a 16-bit float register holds its storage bits.
    fn tensor_core(&mut self, i: Intrinsic, regs: &[Reg], out: &mut Vec<Node>) -> Option<Reg> {
        let bin = |op, dst, a, b| {
            Node::Op(Op::Bin {
                op,
                ty: ScalarType::U32,
                dst,
                a,
                b,
            })
        };
        match (i, regs) {
            (_, &[a, b, c]) if MmaKind::of(i).is_some() => {
                let kind = MmaKind::of(i)?;
                let dst = self.temp(kind.acc_regs());
                let site = self.site;
                out.push(Node::Op(Op::Mma {
                    kind,
                    dst,
                    a,
                    b,
                    c,
                    site,
                }));
                Some(dst)
            }
            (Intrinsic::Half2(op, half), &[a, b]) | (Intrinsic::Half2(op, half), &[a, b, _])
                if (regs.len() == 3) == (op == Half2Op::Fma) =>
            {
                let dst = self.temp(1);
                let c = regs.get(2).copied().unwrap_or(a);
                out.push(Node::Op(Op::Half2 {
                    op,
                    half,
                    dst,
                    args: [a, b, c],
                }));
                Some(dst)
            }
            (Intrinsic::Pack2x16, &[lo, hi]) => {
                let (dst, sixteen) = (self.temp(1), self.constant(16));
                out.push(bin(BinOp::Shl, dst, hi, sixteen));
                out.push(bin(BinOp::BitOr, dst, dst, lo));
                Some(dst)
            }
            (Intrinsic::Unpack2x16, &[x]) => {
                let (dst, low, sixteen) = (self.temp(2), self.constant(0xffff), self.constant(16));
                out.push(bin(BinOp::BitAnd, dst, x, low));
                out.push(bin(BinOp::Shr, dst + 1, x, sixteen));
                Some(dst)
            }
            _ => None,
        }
    }

    /// Inlines a device function call; returns the register of its result.
    fn call(
        &mut self,
        f: &mut Frame<'k>,
        func: FnId,
        args: &[CallArg],
        out: &mut Vec<Node>,
    ) -> Result<Reg> {
        let kernel = self.kernel;
        let Some(callee) = kernel.device_fns.get(func.0 as usize) else {
            return Err(self.unsupported(format!("call of unknown device function {}", func.0)));
        };
        let depth = f.depth + 1;
        if depth > MAX_CALL_DEPTH || args.len() != callee.params.len() {
            return Err(self.unsupported(format!(
                "call of {}: recursion, or {} arguments for {} parameters",
                callee.name,
                args.len(),
                callee.params.len()
            )));
        }
        self.max_depth = self.max_depth.max(depth);
        let mut frame = self.frame(callee, Some(func.0), depth)?;
        for (param, arg) in callee.params.iter().zip(args) {
            let mem = match (param.kind, arg) {
                (ParamKind::Value { var, .. }, CallArg::Value(e)) => {
                    let reg = self.var(&frame, var)?;
                    self.expr_into(f, e, out, reg)?;
                    None
                }
                (ParamKind::Slice { .. }, CallArg::Mem(m)) => Some(self.mem(f, *m)?),
                _ => {
                    let what = format!(
                        "call of {}: argument kind for `{}`",
                        callee.name, param.name
                    );
                    return Err(self.unsupported(what));
                }
            };
            frame.params.push(mem);
        }
        frame.ret = callee.ret.map(|t| self.temp(t.lanes()));
        let body = self.block(&mut frame, &callee.body)?;
        out.push(Node::Call { depth, body });
        Ok(match frame.ret {
            Some(r) => r,
            None => self.constant(0),
        })
    }
}
