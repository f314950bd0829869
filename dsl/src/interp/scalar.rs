//! Semantics of the scalar operations on bit patterns (`typed::ExprKind::Lit` encoding).
//!
//! Integers: two's complement, wrapping `+ - *` (PTX `add`/`sub`/`mul.lo`), shift amounts
//! taken modulo the bit width (Rust `wrapping_shl`; the CUDA C masks the amount), arithmetic
//! right shift for signed types (PTX `shr.s*`). Division by zero is checked by the caller.
//! Floats: f32 is computed natively (IEEE 754 binary32, round to nearest even, as PTX
//! `add.rn.f32` etc.). f16, bf16 and FP8 operands are converted to f32 exactly, computed in
//! f32, and rounded back once to nearest even: for `+ - * / sqrt` this equals a single
//! rounding of the exact result because 24 >= 2p + 2 for p = 11 (f16), 8 (bf16), 4 or 3
//! (FP8) (Figueroa, "When is double rounding innocuous?", 1995). FMA of the narrow types uses
//! round-to-odd (see `convert::fma_round_odd`).
//! Transcendentals (`exp`, `exp2`, `ln`, `tanh`) use Rust's f32 functions: a documented model
//! of CUDA's `expf` etc., which are within 2 ulp; `rsqrt` is `1 / sqrt(x)` in f32.

use crate::convert;
use crate::ir::{BinOp, UnOp};
use crate::types::ScalarType as S;

use super::program::MathFn;

/// Decodes a value of type `ty` to f32: exact for every float type and for integers of up
/// to 24 bits (integers are only decoded here by casts, which round once).
pub(super) fn to_f32(ty: S, bits: u64) -> f32 {
    match ty {
        S::F32 => f32::from_bits(bits as u32),
        S::F16 => convert::f16_to_f32(bits as u16),
        S::BF16 => convert::bf16_to_f32(bits as u16),
        S::F8E4M3 => convert::E4M3.decode(bits as u8),
        S::F8E5M2 => convert::E5M2.decode(bits as u8),
        S::Bool => bits as f32,
        S::I32 | S::I64 => sext(ty, bits) as f32,
        S::U32 | S::U64 => bits as f32,
    }
}

/// Rounds an f32 to the float type `ty` (nearest even; FP8 with satfinite).
pub(super) fn from_f32(ty: S, x: f32) -> u64 {
    match ty {
        S::F16 => convert::f32_to_f16(x) as u64,
        S::BF16 => convert::f32_to_bf16(x) as u64,
        S::F8E4M3 => convert::E4M3.encode(x) as u64,
        S::F8E5M2 => convert::E5M2.encode(x) as u64,
        _ => x.to_bits() as u64,
    }
}

/// The signed value of an integer (or bool) bit pattern.
#[inline]
pub(super) fn sext(ty: S, bits: u64) -> i64 {
    match ty {
        S::I32 => bits as u32 as i32 as i64,
        _ => bits as i64,
    }
}

/// Truncates to the width of `ty` (the canonical encoding).
#[inline]
fn trunc(ty: S, v: u64) -> u64 {
    match ty.bits() {
        1 => v & 1,
        8 => v & 0xff,
        16 => v & 0xffff,
        32 => v & 0xffff_ffff,
        _ => v,
    }
}

fn sign_bit(ty: S) -> u64 {
    1u64 << (ty.bits() - 1)
}

/// `a op b` for operands of type `ty`; comparisons give a bool (0/1).
pub(super) fn binary(op: BinOp, ty: S, a: u64, b: u64) -> u64 {
    if ty.is_float() {
        float_binary(op, ty, a, b)
    } else {
        int_binary(op, ty, a, b)
    }
}

fn compare<T: PartialOrd>(op: BinOp, x: T, y: T) -> u64 {
    (match op {
        BinOp::Eq => x == y,
        BinOp::Ne => x != y,
        BinOp::Lt => x < y,
        BinOp::Le => x <= y,
        BinOp::Gt => x > y,
        _ => x >= y,
    }) as u64
}

fn float_binary(op: BinOp, ty: S, a: u64, b: u64) -> u64 {
    let (x, y) = (to_f32(ty, a), to_f32(ty, b));
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        // fmod is exact (C99 7.12.10.1), so rounding back is exact too.
        BinOp::Rem => x % y,
        _ if op.is_comparison() => return compare(op, x, y),
        // Bitwise and logical operators do not apply to floats (the resolver rejects them).
        _ => return int_binary(op, S::U64, a, b),
    };
    from_f32(ty, r)
}

fn int_binary(op: BinOp, ty: S, a: u64, b: u64) -> u64 {
    let width = ty.bits().max(1);
    let signed = ty.is_signed_int();
    let amount = (b as u32) & (width - 1);
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div | BinOp::Rem => return int_div_rem(op, ty, a, b),
        BinOp::BitAnd | BinOp::And => a & b,
        BinOp::BitOr | BinOp::Or => a | b,
        BinOp::BitXor => a ^ b,
        BinOp::Shl => a << amount,
        BinOp::Shr if signed => (sext(ty, a) >> amount) as u64,
        BinOp::Shr => a >> amount,
        _ if signed => return compare(op, sext(ty, a), sext(ty, b)),
        _ => return compare(op, a, b),
    };
    trunc(ty, r)
}

/// Integer `/` and `%` (the divisor is nonzero); `MIN / -1` wraps to `MIN` (and `% -1` to 0)
/// as Rust's `wrapping_div` does.
fn int_div_rem(op: BinOp, ty: S, a: u64, b: u64) -> u64 {
    let div = op == BinOp::Div;
    let r = match ty {
        S::I32 => {
            let (x, y) = (a as u32 as i32, b as u32 as i32);
            (if div {
                x.wrapping_div(y)
            } else {
                x.wrapping_rem(y)
            }) as u32 as u64
        }
        S::I64 => {
            let (x, y) = (a as i64, b as i64);
            (if div {
                x.wrapping_div(y)
            } else {
                x.wrapping_rem(y)
            }) as u64
        }
        _ => {
            if div {
                a / b
            } else {
                a % b
            }
        }
    };
    trunc(ty, r)
}

/// `op a` on type `ty`.
pub(super) fn unary(op: UnOp, ty: S, a: u64) -> u64 {
    match (op, ty) {
        // Float negation flips the sign bit only (PTX `neg.f32`, exact also for NaN).
        (UnOp::Neg, t) if t.is_float() => a ^ sign_bit(t),
        (UnOp::Neg, t) => trunc(t, a.wrapping_neg()),
        (UnOp::Not, S::Bool) => a ^ 1,
        (UnOp::Not, t) => trunc(t, !a),
    }
}

/// `a as to` for a value of type `from` (see `typed::ExprKind::Cast`).
pub(super) fn cast(from: S, to: S, a: u64) -> u64 {
    if from == to {
        return a;
    }
    match (from.is_float(), to.is_float()) {
        (false, false) => {
            let v = if from.is_signed_int() {
                sext(from, a) as u64
            } else {
                a
            };
            if to == S::Bool {
                (v != 0) as u64
            } else {
                trunc(to, v)
            }
        }
        (false, true) => int_to_float(from, to, a),
        (true, false) => float_to_int(to, to_f32(from, a)),
        // Decoding is exact, so this is one rounding of the source value.
        (true, true) => from_f32(to, to_f32(from, a)),
    }
}

/// Integer → float with one rounding to nearest even (PTX `cvt.rn.f*.s*`/`.u*`).
fn int_to_float(from: S, to: S, a: u64) -> u64 {
    let (negative, magnitude) = if from.is_signed_int() {
        let v = sext(from, a);
        (v < 0, v.unsigned_abs())
    } else {
        (false, a)
    };
    if to == S::F32 {
        // Rust's `as` rounds integers to nearest even.
        let m = magnitude as f32;
        return (if negative { -m } else { m }).to_bits() as u64;
    }
    from_f32(to, convert::int_to_f32_round_odd(negative, magnitude))
}

/// Float → integer: truncation toward zero, saturating, NaN → 0 (PTX `cvt.rzi.sat`, Rust
/// `as`).
fn float_to_int(to: S, x: f32) -> u64 {
    match to {
        S::I32 => x as i32 as u32 as u64,
        S::U32 => x as u32 as u64,
        S::I64 => x as i64 as u64,
        S::U64 => x as u64,
        _ => (x != 0.0) as u64,
    }
}

/// IEEE 754-2019 minimumNumber / maximumNumber (PTX `min.f32`/`max.f32`, CUDA `fminf`):
/// a NaN operand loses; -0 orders below +0.
fn min_max_num(x: f32, y: f32, max: bool) -> f32 {
    if x.is_nan() {
        return y;
    }
    if y.is_nan() {
        return x;
    }
    if x == y {
        // Equal values differ only for signed zeros: min takes -0, max takes +0.
        let bits = if max {
            x.to_bits() & y.to_bits()
        } else {
            x.to_bits() | y.to_bits()
        };
        return f32::from_bits(bits);
    }
    if (x < y) != max {
        x
    } else {
        y
    }
}

/// A math intrinsic on operands of type `ty`.
pub(super) fn math(f: MathFn, ty: S, args: [u64; 3]) -> u64 {
    if !ty.is_float() {
        return int_math(f, ty, args);
    }
    if f == MathFn::Abs {
        return args[0] & !sign_bit(ty);
    }
    let [x, y, z] = args.map(|a| to_f32(ty, a));
    let r = match f {
        MathFn::Exp => x.exp(),
        MathFn::Exp2 => x.exp2(),
        // Model: 2^x correctly rounded (computed in f64). PTX documents ex2.approx.f32 as an
        // approximation with a bounded relative error; integer x gives exact powers of 2.
        MathFn::Ex2Approx => (x as f64).exp2() as f32,
        MathFn::Ln => x.ln(),
        MathFn::Sqrt => x.sqrt(),
        MathFn::Rsqrt => 1.0 / x.sqrt(),
        MathFn::Tanh => x.tanh(),
        MathFn::Floor => x.floor(),
        MathFn::Fma if ty == S::F32 => x.mul_add(y, z),
        MathFn::Fma => convert::fma_round_odd(x, y, z),
        MathFn::Min => min_max_num(x, y, false),
        MathFn::Max | MathFn::Abs => min_max_num(x, y, true),
    };
    from_f32(ty, r)
}

/// `lop3.b32` (PTX ISA, "Logic and Shift Instructions: lop3"): bit i of the result is
/// bit `4·a_i + 2·b_i + c_i` of `lut`.
pub(super) fn lop3(a: u32, b: u32, c: u32, lut: u8) -> u32 {
    (0..8)
        .filter(|k| lut >> k & 1 == 1)
        .map(|k| {
            let pick = |x: u32, bit: u32| if k >> bit & 1 == 1 { x } else { !x };
            pick(a, 2) & pick(b, 1) & pick(c, 0)
        })
        .fold(0, |acc, m| acc | m)
}

/// `prmt.b32` default mode (PTX ISA, "Data Movement and Conversion Instructions: prmt"):
/// byte i of the result is byte `s & 7` of `b:a` (a in bytes 0..4), or that byte's sign
/// bit replicated to 8 bits when `s & 8`, where `s` is nibble i of `selector`.
pub(super) fn prmt(a: u32, b: u32, selector: u32) -> u32 {
    let both = (b as u64) << 32 | a as u64;
    (0..4).fold(0, |d, i| {
        let s = selector >> (4 * i) & 0xf;
        let byte = (both >> (8 * (s & 7))) as u32 & 0xff;
        let byte = match (s & 8 != 0, byte & 0x80 != 0) {
            (false, _) => byte,
            (true, true) => 0xff,
            (true, false) => 0,
        };
        d | byte << (8 * i)
    })
}

fn int_math(f: MathFn, ty: S, [a, b, _]: [u64; 3]) -> u64 {
    let signed = ty.is_signed_int();
    let less = if signed {
        sext(ty, a) < sext(ty, b)
    } else {
        a < b
    };
    match f {
        MathFn::Min => {
            if less {
                a
            } else {
                b
            }
        }
        MathFn::Max => {
            if less {
                b
            } else {
                a
            }
        }
        MathFn::Abs if signed => trunc(ty, sext(ty, a).wrapping_abs() as u64),
        _ => a,
    }
}
