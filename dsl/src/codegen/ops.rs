//! Scalar operations as C: arithmetic, casts and math with the IR's exact semantics
//! (wrapping integers, masked shifts, saturating float→int casts, f16/bf16/FP8 computed in
//! f32 and rounded back), and lane-wise helpers that apply them to vectors.

use super::ctype::{c_type_name, prec, scalar_c_type, type_tag, C};
use super::preamble::{Helper, Needs, WrapOp};
use crate::ir::{BinOp, UnOp};
use crate::typed::Intrinsic;
use crate::types::{ScalarType, Type};

/// An operand: its C text, its type, and its bits when it is a literal.
pub(crate) struct Val {
    pub c: C,
    pub ty: Type,
    pub lit: Option<u64>,
}

/// An identifier that fails to compile with a message naming the problem. The resolver
/// guarantees the IR never asks for these; if it does, NVRTC reports it instead of us
/// printing wrong code.
pub(crate) fn unsupported(what: &str) -> C {
    let what: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    C::primary(format!("WF_UNSUPPORTED_{what}"))
}

/// Types whose arithmetic is carried out in f32 and rounded back.
fn via_f32(s: ScalarType) -> bool {
    matches!(
        s,
        ScalarType::F16 | ScalarType::BF16 | ScalarType::F8E4M3 | ScalarType::F8E5M2
    )
}

/// Exact widening to f32.
pub(crate) fn to_f32(needs: &mut Needs, s: ScalarType, x: C) -> C {
    match s {
        ScalarType::F16 => C::call("__half2float", [x]),
        ScalarType::BF16 => C::call("__bfloat162float", [x]),
        ScalarType::F8E4M3 => {
            needs.helper(Helper::Fp8(s));
            C::call("wf_e4m3_to_float", [x])
        }
        ScalarType::F8E5M2 => {
            needs.helper(Helper::Fp8(s));
            C::call("wf_e5m2_to_float", [x])
        }
        _ => x,
    }
}

/// Rounding (to nearest even; FP8 saturating to finite) from f32.
pub(crate) fn from_f32(needs: &mut Needs, s: ScalarType, x: C) -> C {
    match s {
        ScalarType::F16 => C::call("__float2half_rn", [x]),
        ScalarType::BF16 => C::call("__float2bfloat16_rn", [x]),
        ScalarType::F8E4M3 => {
            needs.helper(Helper::Fp8(s));
            C::call("wf_float_to_e4m3", [x])
        }
        ScalarType::F8E5M2 => {
            needs.helper(Helper::Fp8(s));
            C::call("wf_float_to_e5m2", [x])
        }
        _ => x,
    }
}

pub(crate) fn binop_prec(op: BinOp) -> u8 {
    match op {
        BinOp::Mul | BinOp::Div | BinOp::Rem => prec::MUL,
        BinOp::Add | BinOp::Sub => prec::ADD,
        BinOp::Shl | BinOp::Shr => prec::SHIFT,
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => prec::REL,
        BinOp::Eq | BinOp::Ne => prec::EQ,
        BinOp::BitAnd => prec::BAND,
        BinOp::BitXor => prec::BXOR,
        BinOp::BitOr => prec::BOR,
        BinOp::And => prec::LAND,
        BinOp::Or => prec::LOR,
    }
}

fn plain(op: BinOp, a: C, b: C) -> C {
    C::infix(a, op.symbol(), b, binop_prec(op))
}

/// `a op b` on scalars or vectors; `b.ty` differs from `a.ty` only for shift amounts.
pub(crate) fn binary(needs: &mut Needs, op: BinOp, a: Val, b: Val, result: Type) -> C {
    if matches!(a.ty, Type::Vector(..)) || matches!(b.ty, Type::Vector(..)) {
        let name = lanewise(
            needs,
            binop_name(op),
            &[a.ty, b.ty],
            result,
            &|needs, mut v| {
                let y = v.pop().expect("two lanes");
                let x = v.pop().expect("two lanes");
                scalar_binary(needs, op, x, y)
            },
        );
        return C::call(&name, [a.c, b.c]);
    }
    scalar_binary(needs, op, a, b)
}

fn scalar_binary(needs: &mut Needs, op: BinOp, a: Val, b: Val) -> C {
    let s = a.ty.elem();
    if op.is_logical() {
        return plain(op, a.c, b.c);
    }
    if matches!(op, BinOp::Shl | BinOp::Shr) {
        return shift(needs, op, a, b);
    }
    if s.is_float() {
        return float_binary(needs, op, s, a.c, b.c);
    }
    if s.is_signed_int() {
        let wrap = match op {
            BinOp::Add => Some((WrapOp::Add, "wf_add")),
            BinOp::Sub => Some((WrapOp::Sub, "wf_sub")),
            BinOp::Mul => Some((WrapOp::Mul, "wf_mul")),
            _ => None,
        };
        if let Some((w, name)) = wrap {
            needs.helper(Helper::Wrap(w, s));
            return C::call(name, [a.c, b.c]);
        }
    }
    plain(op, a.c, b.c)
}

fn float_binary(needs: &mut Needs, op: BinOp, s: ScalarType, a: C, b: C) -> C {
    if via_f32(s) {
        let a = to_f32(needs, s, a);
        let b = to_f32(needs, s, b);
        let r = float_binary(needs, op, ScalarType::F32, a, b);
        return if op.is_comparison() {
            r
        } else {
            from_f32(needs, s, r)
        };
    }
    match op {
        BinOp::Rem => C::call("fmodf", [a, b]),
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => plain(op, a, b),
        _ if op.is_comparison() => plain(op, a, b),
        _ => unsupported(&format!("{}_on_{s}", binop_name(op))),
    }
}

/// Shifts take the amount modulo the width; `>>` is arithmetic on signed types (nvcc's
/// documented behaviour), and `<<` on signed types goes through unsigned to wrap.
fn shift(needs: &mut Needs, op: BinOp, a: Val, b: Val) -> C {
    let s = a.ty.elem();
    if !s.is_int() {
        return unsupported(&format!("{}_on_{s}", binop_name(op)));
    }
    let mask = s.bits() as u64 - 1;
    if op == BinOp::Shl && s.is_signed_int() {
        needs.helper(Helper::Wrap(WrapOp::Shl, s));
        let amount = match b.lit {
            Some(bits) => C::primary((bits & mask).to_string()),
            None => b.c,
        };
        return C::call("wf_shl", [a.c, amount]);
    }
    let amount = match b.lit {
        Some(bits) => C::primary((bits & mask).to_string()),
        None => C::infix(b.c, "&", C::primary(mask.to_string()), prec::BAND),
    };
    plain(op, a.c, amount)
}

pub(crate) fn binop_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::Rem => "rem",
        BinOp::BitAnd => "and",
        BinOp::BitOr => "or",
        BinOp::BitXor => "xor",
        BinOp::Shl => "shl",
        BinOp::Shr => "shr",
        BinOp::Eq => "eq",
        BinOp::Ne => "ne",
        BinOp::Lt => "lt",
        BinOp::Le => "le",
        BinOp::Gt => "gt",
        BinOp::Ge => "ge",
        BinOp::And => "land",
        BinOp::Or => "lor",
    }
}

/// Whether C's `x op= v` has exactly the IR's semantics for this type.
pub(crate) fn compound_is_exact(op: BinOp, ty: Type) -> bool {
    let Type::Scalar(s) = ty else { return false };
    match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul => {
            s == ScalarType::F32 || (s.is_int() && !s.is_signed_int())
        }
        BinOp::Div => s == ScalarType::F32 || s.is_int(),
        BinOp::Rem => s.is_int(),
        BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => s.is_int() || s == ScalarType::Bool,
        // Compound shifts would still need the masked amount; print them expanded.
        _ => false,
    }
}

pub(crate) fn unary(needs: &mut Needs, op: UnOp, a: C, ty: Type) -> C {
    if let Type::Vector(..) = ty {
        let name = match op {
            UnOp::Neg => "neg",
            UnOp::Not => "not",
        };
        let f = lanewise(needs, name, &[ty], ty, &|needs, mut v| {
            scalar_unary(needs, op, v.pop().expect("one lane").c, ty.elem())
        });
        return C::call(&f, [a]);
    }
    scalar_unary(needs, op, a, ty.elem())
}

fn scalar_unary(needs: &mut Needs, op: UnOp, a: C, s: ScalarType) -> C {
    match op {
        UnOp::Not if s == ScalarType::Bool => a.prefix("!"),
        UnOp::Not if s.is_int() => a.prefix("~"),
        UnOp::Neg if s == ScalarType::F32 => a.prefix("-"),
        UnOp::Neg if via_f32(s) => {
            let x = to_f32(needs, s, a).prefix("-");
            from_f32(needs, s, x)
        }
        UnOp::Neg if s.is_signed_int() => {
            needs.helper(Helper::Wrap(WrapOp::Neg, s));
            C::call("wf_neg", [a])
        }
        // Unsigned negation is modular in C.
        UnOp::Neg if s.is_int() => a.prefix("-"),
        _ => unsupported(&format!("{op:?}_on_{s}")),
    }
}

/// `x as to` (see `typed::ExprKind::Cast`).
pub(crate) fn cast(needs: &mut Needs, x: C, from: Type, to: Type) -> C {
    if from == to {
        return x;
    }
    if matches!(from, Type::Vector(..)) || matches!(to, Type::Vector(..)) {
        if from.lanes() != to.lanes() {
            return unsupported(&format!("cast_{}_to_{}", type_tag(from), type_tag(to)));
        }
        let f = lanewise(needs, "cast", &[from], to, &|needs, mut v| {
            scalar_cast(needs, v.pop().expect("one lane").c, from.elem(), to.elem())
        });
        return C::call(&f, [x]);
    }
    scalar_cast(needs, x, from.elem(), to.elem())
}

fn scalar_cast(needs: &mut Needs, x: C, from: ScalarType, to: ScalarType) -> C {
    use ScalarType::*;
    if from == to {
        return x;
    }
    match (from, to) {
        (Bool, t) if t.is_int() => x.cast_to(scalar_c_type(t)),
        (Bool, t) => {
            let one_zero = C::new(format!("{} ? 1.0f : 0.0f", x.at(prec::LOR)), prec::COND);
            from_f32(needs, t, one_zero)
        }
        (f, Bool) if f.is_int() => C::infix(x, "!=", C::primary("0"), prec::EQ),
        (f, Bool) => C::infix(to_f32(needs, f, x), "!=", C::primary("0.0f"), prec::EQ),
        (f, t) if f.is_int() && t.is_int() => x.cast_to(scalar_c_type(t)),
        (f, t) if f.is_int() => int_to_float(needs, x, f, t),
        (f, t) if t.is_int() => {
            let name = match t {
                I32 => "__float2int_rz",
                U32 => "__float2uint_rz",
                I64 => "__float2ll_rz",
                _ => "__float2ull_rz",
            };
            C::call(name, [to_f32(needs, f, x)])
        }
        // Widening to f32 is exact, so this rounds once.
        (f, t) => {
            let wide = to_f32(needs, f, x);
            from_f32(needs, t, wide)
        }
    }
}

fn int_to_float(needs: &mut Needs, x: C, from: ScalarType, to: ScalarType) -> C {
    use ScalarType::*;
    let direct = match (to, from) {
        (F16, I32) => "__int2half_rn",
        (F16, U32) => "__uint2half_rn",
        (F16, I64) => "__ll2half_rn",
        (F16, U64) => "__ull2half_rn",
        (BF16, I32) => "__int2bfloat16_rn",
        (BF16, U32) => "__uint2bfloat16_rn",
        (BF16, I64) => "__ll2bfloat16_rn",
        (BF16, U64) => "__ull2bfloat16_rn",
        // int → f32 is exact up to 2^24, and every larger value saturates in FP8 anyway,
        // so going through f32 rounds as if once.
        _ => {
            let f = x.cast_to("float");
            return from_f32(needs, to, f);
        }
    };
    C::call(direct, [x])
}

/// A math intrinsic on scalars or vectors (lane-wise).
pub(crate) fn math(needs: &mut Needs, intr: Intrinsic, args: Vec<Val>, result: Type) -> C {
    if args.iter().any(|a| matches!(a.ty, Type::Vector(..))) {
        let tys: Vec<Type> = args.iter().map(|a| a.ty).collect();
        let name = format!("{intr:?}").to_lowercase();
        let f = lanewise(needs, &name, &tys, result, &|needs, v| {
            scalar_math(
                needs,
                intr,
                result.elem(),
                v.into_iter().map(|a| a.c).collect(),
            )
        });
        return C::call(&f, args.into_iter().map(|a| a.c));
    }
    scalar_math(
        needs,
        intr,
        result.elem(),
        args.into_iter().map(|a| a.c).collect(),
    )
}

fn scalar_math(needs: &mut Needs, intr: Intrinsic, s: ScalarType, args: Vec<C>) -> C {
    if via_f32(s) {
        let wide: Vec<C> = args.into_iter().map(|a| to_f32(needs, s, a)).collect();
        let r = scalar_math(needs, intr, ScalarType::F32, wide);
        return from_f32(needs, s, r);
    }
    let name = match (intr, s) {
        (Intrinsic::Exp, ScalarType::F32) => "expf",
        (Intrinsic::Exp2, ScalarType::F32) => "exp2f",
        (Intrinsic::Ln, ScalarType::F32) => "logf",
        (Intrinsic::Sqrt, ScalarType::F32) => "sqrtf",
        (Intrinsic::Rsqrt, ScalarType::F32) => "rsqrtf",
        (Intrinsic::Tanh, ScalarType::F32) => "tanhf",
        (Intrinsic::Abs, ScalarType::F32) => "fabsf",
        (Intrinsic::Floor, ScalarType::F32) => "floorf",
        (Intrinsic::Fma, ScalarType::F32) => "fmaf",
        (Intrinsic::Min, ScalarType::F32) => "fminf",
        (Intrinsic::Max, ScalarType::F32) => "fmaxf",
        (Intrinsic::Min, s) if s.is_int() => "min",
        (Intrinsic::Max, s) if s.is_int() => "max",
        (Intrinsic::Abs, s) if s.is_signed_int() => {
            needs.helper(Helper::Wrap(WrapOp::Abs, s));
            "wf_abs"
        }
        (Intrinsic::Abs, s) if s.is_int() => {
            return args
                .into_iter()
                .next()
                .unwrap_or_else(|| unsupported("abs"))
        }
        _ => return unsupported(&format!("{intr:?}_on_{s}")),
    };
    C::call(name, args)
}

/// Emits (once) a helper applying `lane_op` to each lane, and returns its name. Vector
/// arguments contribute their lane `i`, scalar arguments themselves.
pub(crate) fn lanewise(
    needs: &mut Needs,
    op: &str,
    args: &[Type],
    result: Type,
    lane_op: &dyn Fn(&mut Needs, Vec<Val>) -> C,
) -> String {
    let mut name = format!("wf_{op}");
    let mut last = None;
    for ty in args {
        if last != Some(*ty) {
            name.push('_');
            name.push_str(&type_tag(*ty));
        }
        last = Some(*ty);
    }
    if op == "cast" {
        name.push_str("_to_");
        name.push_str(&type_tag(result));
    }
    if needs.has_generated(&name) {
        return name;
    }
    let params: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("{} {}", c_type_name(*ty), param_letter(i)))
        .collect();
    let lanes: Vec<Val> = args
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let text = match ty {
                Type::Vector(..) => format!("{}.v[i]", param_letter(i)),
                Type::Scalar(_) => param_letter(i).to_string(),
            };
            Val {
                c: C::primary(text),
                ty: Type::Scalar(ty.elem()),
                lit: None,
            }
        })
        .collect();
    let body = lane_op(needs, lanes).at(prec::TOP);
    needs.ty(result);
    let rt = c_type_name(result);
    let text = format!(
        "static __device__ __forceinline__ {rt} {name}({}) {{\n    {rt} r;\n    for (int i = 0; \
         i < {}; ++i) {{\n        r.v[i] = {body};\n    }}\n    return r;\n}}\n",
        params.join(", "),
        result.lanes()
    );
    needs.add_generated(name.clone(), text);
    name
}

fn param_letter(i: usize) -> &'static str {
    ["a", "b", "c", "d"].get(i).copied().unwrap_or("e")
}
