//! The tensor-core and memory-pipeline intrinsics: `mma_*`, fragment packing, `ldmatrix_*`,
//! `cp_async_*`.

use super::{intrinsic, Call, BOOL, U32};
use crate::ir::{self, Span};
use crate::resolve::func::{FnBuilder, MemSpace, R};
use crate::resolve::infer::Ty;
use crate::typed::{Expr, ExprKind, Half2Op, Intrinsic, MemRef};
use crate::types::{ScalarType, Type};

impl FnBuilder<'_, '_> {
    /// A warp-wide tensor-core MMA (every lane of the warp must call it together):
    /// `(a: Vec4<u32>, b: Vec2<u32>, c) -> d`, with `c`/`d` `Vec4<f32>` (f32 accumulators)
    /// or `Vec2<u32>` (`mma_m16n8k16_f16_f16`: f16 accumulators packed in pairs).
    pub(super) fn mma(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        self.arity(func, args, 3, span)?;
        let (op, acc) = match func {
            "mma_m16n8k16_bf16_f32" => (Intrinsic::MmaBf16F32, Type::Vector(ScalarType::F32, 4)),
            "mma_m16n8k16_f16_f16" => (Intrinsic::MmaF16F16, Type::Vector(ScalarType::U32, 2)),
            "mma_m16n8k32_e4m3_f32" => (Intrinsic::MmaE4m3F32, Type::Vector(ScalarType::F32, 4)),
            "mma_m16n8k32_e5m2_f32" => (Intrinsic::MmaE5m2F32, Type::Vector(ScalarType::F32, 4)),
            _ => (Intrinsic::MmaF16F32, Type::Vector(ScalarType::F32, 4)),
        };
        let a = self.arg_of(&args[0], Type::Vector(ScalarType::U32, 4))?;
        let b = self.arg_of(&args[1], Type::Vector(ScalarType::U32, 2))?;
        let c = self.arg_of(&args[2], acc)?;
        Ok((intrinsic(op, vec![a, b, c], acc), Some(Ty::Known(acc))))
    }

    /// `{add,sub,mul,max,min}_{f16x2,bf16x2}(a, b)` and `fma_*(a, b, c)` on u32 registers.
    pub(super) fn half2(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        let (name, format) = func.split_once('_').unwrap_or((func, ""));
        let half = if format == "bf16x2" {
            ScalarType::BF16
        } else {
            ScalarType::F16
        };
        let op = match name {
            "add" => Half2Op::Add,
            "sub" => Half2Op::Sub,
            "mul" => Half2Op::Mul,
            "fma" => Half2Op::Fma,
            "max" => Half2Op::Max,
            _ => Half2Op::Min,
        };
        let n = if op == Half2Op::Fma { 3 } else { 2 };
        self.arity(func, args, n, span)?;
        let operands = args
            .iter()
            .map(|a| self.arg_of(a, U32))
            .collect::<R<Vec<_>>>()?;
        Ok((
            intrinsic(Intrinsic::Half2(op, half), operands, U32),
            Some(Ty::Known(U32)),
        ))
    }

    /// Two 16-bit floats in one u32 register (`pack_*`) and back (`unpack_*`).
    pub(super) fn pack(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        let half = if func.contains("bf16") {
            Type::Scalar(ScalarType::BF16)
        } else {
            Type::Scalar(ScalarType::F16)
        };
        if func.starts_with("pack") {
            self.arity(func, args, 2, span)?;
            let lo = self.arg_of(&args[0], half)?;
            let hi = self.arg_of(&args[1], half)?;
            return Ok((
                intrinsic(Intrinsic::Pack2x16, vec![lo, hi], U32),
                Some(Ty::Known(U32)),
            ));
        }
        self.arity(func, args, 1, span)?;
        let x = self.arg_of(&args[0], U32)?;
        let ty = Type::Vector(half.elem(), 2);
        Ok((
            intrinsic(Intrinsic::Unpack2x16, vec![x], ty),
            Some(Ty::Known(ty)),
        ))
    }

    /// `cp_async_{4,8,16}(&mut tile, dst_index, src, src_index)`: global buffer → shared
    /// array of the same element type, `bytes` a whole number of elements. The `_zfill`
    /// forms take a fifth argument, the number of source bytes to read (the rest is zeroed).
    pub(super) fn copy_async(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        let evict_first = func.ends_with("_evict_first");
        let zfill = func.trim_end_matches("_evict_first").ends_with("_zfill");
        self.arity(func, args, if zfill { 5 } else { 4 }, span)?;
        let bytes: u8 = match func
            .trim_end_matches("_evict_first")
            .trim_end_matches("_zfill")
        {
            "cp_async_4" => 4,
            "cp_async_8" => 8,
            _ => 16,
        };
        let (dst, elem, writable, name) = self.mem_of(&args[0])?;
        if self.building && self.mem_space(dst) != MemSpace::Shared {
            let what = self.what_is(dst, &name);
            return Err(self.err(args[0].span, format!("`{func}` copies into a shared array (`shared_array::<T>(N)` passed as `&mut tile`, or a device function's `&mut [T]` parameter bound to one); {what}: it must be a shared array")));
        }
        if self.building && !writable {
            return Err(self.err(
                args[0].span,
                format!("`{func}` writes `{name}`, which can't be written: pass it as `&mut`"),
            ));
        }
        let dst_index = self.index_expr(&args[1])?;
        let (src, src_elem, _, src_name) = self.mem_of(&args[2])?;
        if self.building && self.mem_space(src) != MemSpace::Global {
            let what = self.what_is(src, &src_name);
            return Err(self.err(args[2].span, format!("`{func}` copies from a global buffer (a kernel's slice parameter, or a device function's parameter bound to one); {what}")));
        }
        let size = elem.size_bytes();
        if self.building
            && (src_elem != elem
                || size == 0
                || size > bytes as usize
                || !(bytes as usize).is_multiple_of(size))
        {
            return Err(self.err(span, format!("`{func}` copies {bytes} bytes between slices of one element type that divides {bytes} bytes; got `{src_name}: [{src_elem}]` into `{name}: [{elem}]`")));
        }
        let src_index = self.index_expr(&args[3])?;
        let src_bytes = match zfill {
            true => Some(Box::new(self.arg_of(&args[4], U32)?)),
            false => None,
        };
        let kind = ExprKind::CopyAsync {
            dst,
            dst_index: Box::new(dst_index),
            src,
            src_index: Box::new(src_index),
            bytes,
            src_bytes,
            evict_first,
        };
        Ok((Expr { kind, ty: BOOL }, None))
    }

    /// What `mem` (named `name`) is, for an error saying it is in the wrong memory space.
    fn what_is(&self, mem: MemRef, name: &str) -> String {
        let space = self.mem_space(mem).describe();
        match mem {
            MemRef::Array(_) => format!("`{name}` is {space}"),
            MemRef::Param(_) if self.is_entry() => format!("parameter `{name}` is {space}"),
            MemRef::Param(_) => format!(
                "parameter `{name}` of `{}` is bound to {space} by its caller",
                self.name
            ),
        }
    }

    /// `ldmatrix_x{1,2,4}[_trans](&tile, offset)` on a shared array of f16 or bf16.
    pub(super) fn load_matrix(&mut self, func: &str, args: &[ir::Expr], span: Span) -> R<Call> {
        self.arity(func, args, 2, span)?;
        let (mem, elem, _, name) = self.mem_of(&args[0])?;
        let trans = func.ends_with("_trans");
        let (half, byte) = match elem.scalar() {
            Some(ScalarType::F16 | ScalarType::BF16) => (true, false),
            Some(ScalarType::F8E4M3 | ScalarType::F8E5M2) => (false, true),
            _ => (false, false),
        };
        if self.building && self.mem_space(mem) != MemSpace::Shared {
            let what = self.what_is(mem, &name);
            return Err(self.err(args[0].span, format!("`{func}` reads a shared array (`shared_array::<f16>(N)`, or a device function's slice parameter bound to one); {what}: it must be a shared array")));
        }
        if self.building && !(half || byte) {
            return Err(self.err(args[0].span, format!("`{func}` reads 16-bit or 8-bit elements (f16, bf16 or FP8); `{name}` is a slice of `{elem}`")));
        }
        if self.building && trans && byte {
            return Err(self.err(span, format!("`{func}` on the FP8 array `{name}`: a transposed ldmatrix moves 16-bit pairs, not 8-bit elements; store the FP8 operand K-major and use the non-`_trans` form")));
        }
        let offset = self.arg_of(&args[1], U32)?;
        let count: u8 = if func.contains("x1") {
            1
        } else if func.contains("x2") {
            2
        } else {
            4
        };
        let ty = match count {
            1 => U32,
            n => Type::Vector(ScalarType::U32, n),
        };
        let kind = ExprKind::LoadMatrix {
            mem,
            offset: Box::new(offset),
            count,
            trans,
        };
        Ok((Expr { kind, ty }, Some(Ty::Known(ty))))
    }
}
