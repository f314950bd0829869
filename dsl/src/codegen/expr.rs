//! Expressions of the typed IR as C expressions.

use super::ctype::{c_type_name, prec, scalar_c_type, scalar_literal, C};
use super::ops::{self, unsupported, Val};
use super::preamble::{Helper, Shfl};
use super::FnGen;
use crate::typed::{AtomicOp, Builtin, CallArg, Dim, Expr, ExprKind, Intrinsic, MemRef};
use crate::types::{ScalarType, Type};

const FULL_MASK: &str = "0xffffffffu";

impl FnGen<'_> {
    pub(super) fn expr(&mut self, e: &Expr) -> C {
        self.needs.ty(e.ty);
        match &e.kind {
            ExprKind::Lit(bits) => literal(e.ty, *bits),
            ExprKind::Var(id) => C::primary(self.names.var(id.0)),
            ExprKind::Load { mem, index } => self.element(*mem, index),
            ExprKind::Len(mem) => self.len(*mem),
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.val(a), self.val(b));
                ops::binary(self.needs, *op, a, b, e.ty)
            }
            ExprKind::Unary(op, a) => {
                let c = self.expr(a);
                ops::unary(self.needs, *op, c, e.ty)
            }
            ExprKind::Cast(x) => {
                let c = self.expr(x);
                ops::cast(self.needs, c, x.ty, e.ty)
            }
            ExprKind::Bitcast(x) => {
                let c = self.expr(x);
                self.bitcast(c, x.ty, e.ty)
            }
            ExprKind::Select(c, a, b) => {
                let (c, a, b) = (self.expr(c), self.expr(a), self.expr(b));
                let text = format!(
                    "{} ? {} : {}",
                    c.at(prec::LOR),
                    a.at(prec::LOR),
                    b.at(prec::LOR)
                );
                C::new(text, prec::COND)
            }
            ExprKind::Lane(v, lane) => {
                let v = self.expr(v);
                C::primary(format!("{}.v[{lane}]", v.at(prec::PRIMARY)))
            }
            ExprKind::MakeVector(lanes) => {
                let lanes: Vec<String> = lanes.iter().map(|l| self.expr(l).at(prec::ARG)).collect();
                C::primary(format!("{}{{{{{}}}}}", c_type_name(e.ty), lanes.join(", ")))
            }
            ExprKind::Builtin(b) => self.builtin(*b),
            ExprKind::Intrinsic(intr, args) => self.intrinsic(*intr, args, e.ty),
            ExprKind::Atomic {
                op,
                mem,
                index,
                args,
            } => self.atomic(*op, *mem, index, args, e.ty),
            ExprKind::LoadMatrix {
                mem,
                offset,
                count,
                trans,
            } => {
                let row = self.element(*mem, offset);
                let addr = C::new(format!("&{}", row.text), prec::UNARY);
                let h = Helper::LdMatrix(*count, *trans);
                self.needs.helper(h);
                C::call(&h.name(), [addr])
            }
            ExprKind::CopyAsync {
                dst,
                dst_index,
                src,
                src_index,
                bytes,
                src_bytes,
                evict_first,
            } => {
                let to = self.element(*dst, dst_index);
                let from = self.element(*src, src_index);
                let h = match evict_first {
                    true => Helper::CpAsyncEvictFirst,
                    false => Helper::CpAsync(*bytes, src_bytes.is_some()),
                };
                self.needs.helper(h);
                let addr = |c: C| C::new(format!("&{}", c.text), prec::UNARY);
                let mut args = vec![addr(to), addr(from)];
                args.extend(src_bytes.iter().map(|n| self.expr(n)));
                C::call(&h.name(), args)
            }
            ExprKind::Call { func, args } => {
                let name = self
                    .kernel
                    .device_fns
                    .get(func.0 as usize)
                    .map_or_else(|| "WF_UNKNOWN_FUNCTION".to_string(), |f| f.name.clone());
                let args: Vec<C> = args.iter().flat_map(|a| self.call_arg(a)).collect();
                C::call(&name, args)
            }
        }
    }

    pub(super) fn val(&mut self, e: &Expr) -> Val {
        let lit = match e.kind {
            ExprKind::Lit(bits) => Some(bits),
            _ => None,
        };
        Val {
            c: self.expr(e),
            ty: e.ty,
            lit,
        }
    }

    pub(super) fn mem_name(&self, mem: MemRef) -> String {
        match mem {
            MemRef::Param(i) => self.names.param(i).to_string(),
            MemRef::Array(id) => self.names.array(id.0).to_string(),
        }
    }

    /// `mem[index]`.
    pub(super) fn element(&mut self, mem: MemRef, index: &Expr) -> C {
        let index = self.expr(index);
        self.element_at(mem, &index)
    }

    pub(super) fn element_at(&self, mem: MemRef, index: &C) -> C {
        C::primary(format!("{}[{}]", self.mem_name(mem), index.at(prec::TOP)))
    }

    fn len(&self, mem: MemRef) -> C {
        match mem {
            MemRef::Param(i) => C::primary(self.names.param_len(i)),
            MemRef::Array(id) => match self.func.arrays.get(id.0 as usize) {
                Some(a) => C::primary(format!("{}u", a.len)),
                None => unsupported("unknown_array"),
            },
        }
    }

    fn call_arg(&mut self, arg: &CallArg) -> Vec<C> {
        match arg {
            CallArg::Value(e) => vec![self.expr(e)],
            CallArg::Mem(mem) => vec![C::primary(self.mem_name(*mem)), self.len(*mem)],
        }
    }

    fn builtin(&mut self, b: Builtin) -> C {
        let dim = |d: Dim| match d {
            Dim::X => "x",
            Dim::Y => "y",
            Dim::Z => "z",
        };
        match b {
            Builtin::ThreadIdx(d) => C::primary(format!("threadIdx.{}", dim(d))),
            Builtin::BlockIdx(d) => C::primary(format!("blockIdx.{}", dim(d))),
            Builtin::BlockDim(d) => C::primary(format!("blockDim.{}", dim(d))),
            Builtin::GridDim(d) => C::primary(format!("gridDim.{}", dim(d))),
            Builtin::LaneId if matches!(self.kernel.block_dim, Some([_, 1, 1])) => {
                C::new("threadIdx.x & 31u", prec::BAND)
            }
            Builtin::LaneId => {
                self.needs.helper(Helper::LaneId);
                C::call("wf_lane_id", [])
            }
            Builtin::WarpSize => C::primary("32u"),
        }
    }

    fn intrinsic(&mut self, intr: Intrinsic, args: &[Expr], ty: Type) -> C {
        let shfl = match intr {
            Intrinsic::SyncThreads => return C::call("__syncthreads", []),
            Intrinsic::ShflXor => Some(Shfl::Xor),
            Intrinsic::ShflDown => Some(Shfl::Down),
            Intrinsic::ShflUp => Some(Shfl::Up),
            Intrinsic::ShflIdx => Some(Shfl::Idx),
            Intrinsic::VoteAny | Intrinsic::VoteAll | Intrinsic::VoteBallot => {
                return self.vote(intr, args)
            }
            Intrinsic::MmaF16F32 | Intrinsic::MmaBf16F32 => {
                let input = match intr {
                    Intrinsic::MmaBf16F32 => ScalarType::BF16,
                    _ => ScalarType::F16,
                };
                return self.helper_call(Helper::Mma(input), args);
            }
            Intrinsic::MmaF16F16 => return self.helper_call(Helper::MmaF16Acc, args),
            Intrinsic::MmaE4m3F32 => {
                return self.helper_call(Helper::MmaFp8(ScalarType::F8E4M3), args)
            }
            Intrinsic::MmaE5m2F32 => {
                return self.helper_call(Helper::MmaFp8(ScalarType::F8E5M2), args)
            }
            Intrinsic::Half2(op, half) => return self.helper_call(Helper::Half2(op, half), args),
            Intrinsic::Pack2x16 => {
                let half = args.first().map_or(ScalarType::F16, |a| a.scalar_ty());
                return self.helper_call(Helper::Pack2x16(half), args);
            }
            Intrinsic::Unpack2x16 => return self.helper_call(Helper::Unpack2x16(ty.elem()), args),
            Intrinsic::CpAsyncCommit => return self.helper_call(Helper::CpAsyncCommit, &[]),
            Intrinsic::Prmt => return self.helper_call(Helper::Prmt, args),
            Intrinsic::Ex2Approx => return self.helper_call(Helper::Ex2Approx, args),
            Intrinsic::Lop3 => {
                let lut = match args.get(3).map(|a| &a.kind) {
                    Some(ExprKind::Lit(lut)) => *lut,
                    _ => return unsupported("lop3_needs_a_constant_table"),
                };
                self.needs.helper(Helper::Lop3);
                let operands: Vec<C> = args[..3].iter().map(|a| self.expr(a)).collect();
                return C::call(&format!("wf_lop3<0x{lut:02x}>"), operands);
            }
            Intrinsic::CpAsyncWait => {
                let n = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Lit(n)) => *n,
                    _ => return unsupported("cp_async_wait_needs_a_constant"),
                };
                self.needs.helper(Helper::CpAsyncWait);
                return C::call(&format!("{}<{n}>", Helper::CpAsyncWait.name()), []);
            }
            _ => None,
        };
        let vals: Vec<Val> = args.iter().map(|a| self.val(a)).collect();
        match shfl {
            Some(kind) => self.shuffle(kind, vals),
            None => ops::math(self.needs, intr, vals, ty),
        }
    }

    /// A call of the `wf_*` helper `h` (emitted in the preamble) with `args`.
    fn helper_call(&mut self, h: Helper, args: &[Expr]) -> C {
        self.needs.helper(h);
        let args: Vec<C> = args.iter().map(|a| self.expr(a)).collect();
        C::call(&h.name(), args)
    }

    /// Warp shuffles over the full warp. Bool and FP8 values travel as 32-bit integers,
    /// vectors lane by lane.
    fn shuffle(&mut self, kind: Shfl, mut args: Vec<Val>) -> C {
        if args.len() != 2 {
            return unsupported("shuffle_arity");
        }
        let lane = args.pop().expect("two arguments").c;
        let v = args.pop().expect("two arguments");
        let mask = C::primary(FULL_MASK);
        match v.ty {
            // One 32-bit shuffle for the pair, not one per 16-bit lane.
            Type::Vector(ScalarType::F16 | ScalarType::BF16, 2) => {
                self.needs.helper(Helper::PairShfl(kind));
                C::call(&Helper::PairShfl(kind).name(), [v.c, lane])
            }
            Type::Vector(..) => {
                self.needs.helper(Helper::VecShfl(kind));
                C::call(kind.vector_helper(), [v.c, lane])
            }
            Type::Scalar(ScalarType::Bool) => {
                let moved = C::call(kind.intrinsic(), [mask, v.c.cast_to("int"), lane]);
                C::infix(moved, "!=", C::primary("0"), prec::EQ)
            }
            Type::Scalar(s @ (ScalarType::F8E4M3 | ScalarType::F8E5M2)) => {
                C::call(kind.intrinsic(), [mask, v.c.cast_to("unsigned int"), lane])
                    .cast_to(scalar_c_type(s))
            }
            Type::Scalar(_) => C::call(kind.intrinsic(), [mask, v.c, lane]),
        }
    }

    fn vote(&mut self, intr: Intrinsic, args: &[Expr]) -> C {
        let Some(p) = args.first() else {
            return unsupported("vote_without_predicate");
        };
        let p = self.expr(p);
        let mask = C::primary(FULL_MASK);
        match intr {
            Intrinsic::VoteAny => C::infix(
                C::call("__any_sync", [mask, p]),
                "!=",
                C::primary("0"),
                prec::EQ,
            ),
            Intrinsic::VoteAll => C::infix(
                C::call("__all_sync", [mask, p]),
                "!=",
                C::primary("0"),
                prec::EQ,
            ),
            _ => C::call("__ballot_sync", [mask, p]),
        }
    }

    fn atomic(&mut self, op: AtomicOp, mem: MemRef, index: &Expr, args: &[Expr], ty: Type) -> C {
        let name = match op {
            AtomicOp::Add => "atomicAdd",
            AtomicOp::Min => "atomicMin",
            AtomicOp::Max => "atomicMax",
            AtomicOp::Cas => "atomicCAS",
        };
        let place = self.element(mem, index);
        let addr = C::new(format!("&{}", place.text), prec::UNARY);
        let args: Vec<C> = args.iter().map(|a| self.expr(a)).collect();
        match (ty, op) {
            // CUDA has these only on the unsigned type of the same width; the bits are the
            // same in two's complement.
            (Type::Scalar(ScalarType::I64), AtomicOp::Add | AtomicOp::Cas) => {
                let u = "unsigned long long";
                let args = args.into_iter().map(|a| a.cast_to(u));
                let addr = addr.cast_to(&format!("{u}*"));
                C::call(name, std::iter::once(addr).chain(args)).cast_to("long long")
            }
            (Type::Scalar(ScalarType::F32), AtomicOp::Cas) => {
                let args = args.into_iter().map(|a| C::call("__float_as_uint", [a]));
                let addr = addr.cast_to("unsigned int*");
                let old = C::call(name, std::iter::once(addr).chain(args));
                C::call("__uint_as_float", [old])
            }
            _ => C::call(name, std::iter::once(addr).chain(args)),
        }
    }

    /// Reinterprets the bits of `x` (same size) as `to`.
    fn bitcast(&mut self, x: C, from: Type, to: Type) -> C {
        use ScalarType::*;
        if from == to {
            return x;
        }
        let (Type::Scalar(f), Type::Scalar(t)) = (from, to) else {
            return self.generic_bitcast(x, to);
        };
        let call = |name: &str, x: C| C::call(name, [x]);
        match (f, t) {
            (F32, U32) => call("__float_as_uint", x),
            (F32, I32) => call("__float_as_int", x),
            (U32, F32) => call("__uint_as_float", x),
            (I32, F32) => call("__int_as_float", x),
            (I32, U32) | (U32, I32) | (I64, U64) | (U64, I64) => x.cast_to(scalar_c_type(t)),
            (F16, BF16) => call("__ushort_as_bfloat16", call("__half_as_ushort", x)),
            (BF16, F16) => call("__ushort_as_half", call("__bfloat16_as_ushort", x)),
            // Both are the raw byte.
            (F8E4M3, F8E5M2) | (F8E5M2, F8E4M3) => x,
            _ => self.generic_bitcast(x, to),
        }
    }

    fn generic_bitcast(&mut self, x: C, to: Type) -> C {
        self.needs.helper(Helper::Bitcast);
        C::call(&format!("wf_bitcast<{}>", c_type_name(to)), [x])
    }
}

/// A literal of any type; a vector literal is built from the lanes in its low bits.
fn literal(ty: Type, bits: u64) -> C {
    match ty {
        Type::Scalar(s) => scalar_literal(s, bits),
        Type::Vector(s, n) => {
            let width = s.size_bytes() as u32 * 8;
            let mask = if width >= 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            let lanes: Vec<String> = (0..n as u32)
                .map(|i| {
                    let lane_bits = bits.checked_shr(i * width).unwrap_or(0) & mask;
                    scalar_literal(s, lane_bits).at(prec::ARG)
                })
                .collect();
            C::primary(format!("{}{{{{{}}}}}", c_type_name(ty), lanes.join(", ")))
        }
    }
}
