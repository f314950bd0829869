//! Constant folding of integer and bool expressions after specialization, so that
//! `BLOCK * 4` becomes `1024` in the CUDA C and array lengths are known.
//!
//! Folding follows the IR's semantics exactly (wrapping arithmetic, shift amounts modulo
//! the width); division by zero is left unfolded for the interpreter to report.

use crate::ir::{BinOp, UnOp};
use crate::typed::{Expr, ExprKind};
use crate::types::{ScalarType, Type};

/// The value of a constant integer/bool expression, sign-extended for signed types.
pub fn const_value(e: &Expr) -> Option<i128> {
    match (&e.kind, e.ty) {
        (ExprKind::Lit(bits), Type::Scalar(s)) if s.is_int() || s == ScalarType::Bool => {
            Some(from_bits(*bits, s))
        }
        _ => None,
    }
}

/// Bits of `value` in type `s` (wrapping, masked to the width).
pub fn to_bits(value: i128, s: ScalarType) -> u64 {
    match s.bits() {
        1 => (value != 0) as u64,
        32 => value as u32 as u64,
        _ => value as u64,
    }
}

pub fn from_bits(bits: u64, s: ScalarType) -> i128 {
    match s {
        ScalarType::I32 => bits as u32 as i32 as i128,
        ScalarType::I64 => bits as i64 as i128,
        _ => bits as i128,
    }
}

/// Folds `a op b` when both are constants; `ty` is the result type.
pub fn binary(op: BinOp, a: &Expr, b: &Expr, ty: Type) -> Option<Expr> {
    let s = a.ty.scalar()?;
    if !(s.is_int() || s == ScalarType::Bool) {
        return None;
    }
    let (x, y) = (const_value(a)?, const_value(b)?);
    let width = s.bits();
    let wrap = |v: i128| from_bits(to_bits(v, s), s);
    let value = match op {
        BinOp::Add => wrap(x + y),
        BinOp::Sub => wrap(x - y),
        BinOp::Mul => wrap(x.wrapping_mul(y)),
        BinOp::Div if y != 0 => wrap(x / y),
        BinOp::Rem if y != 0 => wrap(x % y),
        BinOp::Div | BinOp::Rem => return None,
        BinOp::BitAnd => wrap(x & y),
        BinOp::BitOr => wrap(x | y),
        BinOp::BitXor => wrap(x ^ y),
        BinOp::Shl => wrap(x << (y.rem_euclid(width as i128))),
        BinOp::Shr => {
            let amount = y.rem_euclid(width as i128);
            // x is sign-extended for signed types and zero-extended for unsigned ones,
            // so i128's arithmetic shift is right for both.
            wrap(x >> amount)
        }
        BinOp::Eq => (x == y) as i128,
        BinOp::Ne => (x != y) as i128,
        BinOp::Lt => (x < y) as i128,
        BinOp::Le => (x <= y) as i128,
        BinOp::Gt => (x > y) as i128,
        BinOp::Ge => (x >= y) as i128,
        BinOp::And => (x != 0 && y != 0) as i128,
        BinOp::Or => (x != 0 || y != 0) as i128,
    };
    let out = ty.scalar()?;
    Some(Expr::lit(ty, to_bits(value, out)))
}

pub fn unary(op: UnOp, a: &Expr) -> Option<Expr> {
    let s = a.ty.scalar()?;
    let x = const_value(a)?;
    let value = match (op, s) {
        (UnOp::Not, ScalarType::Bool) => (x == 0) as i128,
        (UnOp::Not, _) => !x,
        (UnOp::Neg, _) => -x,
    };
    Some(Expr::lit(a.ty, to_bits(value, s)))
}

/// Folds an integer-to-integer (or bool) cast of a constant.
pub fn cast(a: &Expr, to: Type) -> Option<Expr> {
    let target = to.scalar()?;
    if !(target.is_int() || target == ScalarType::Bool) {
        return None;
    }
    let x = const_value(a)?;
    if target == ScalarType::Bool {
        return None; // `as bool` is not Rust
    }
    Some(Expr::lit(to, to_bits(x, target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: ScalarType, v: i128) -> Expr {
        Expr::lit(Type::Scalar(s), to_bits(v, s))
    }

    #[test]
    fn folds_with_wrapping_and_masked_shifts() {
        let u = ScalarType::U32;
        let i = ScalarType::I32;
        let r = binary(BinOp::Sub, &lit(u, 0), &lit(u, 1), Type::U32).unwrap();
        assert_eq!(const_value(&r), Some(u32::MAX as i128));
        let r = binary(BinOp::Shl, &lit(u, 1), &lit(u, 33), Type::U32).unwrap();
        assert_eq!(const_value(&r), Some(2));
        let r = binary(BinOp::Shr, &lit(i, -8), &lit(i, 1), Type::I32).unwrap();
        assert_eq!(const_value(&r), Some(-4));
        let r = binary(BinOp::Mul, &lit(i, i32::MAX as i128), &lit(i, 2), Type::I32).unwrap();
        assert_eq!(const_value(&r), Some(-2));
        assert!(binary(BinOp::Div, &lit(u, 1), &lit(u, 0), Type::U32).is_none());
        let r = binary(BinOp::Lt, &lit(i, -1), &lit(i, 0), Type::BOOL).unwrap();
        assert_eq!(const_value(&r), Some(1));
        let r = cast(&lit(i, -1), Type::U32).unwrap();
        assert_eq!(const_value(&r), Some(u32::MAX as i128));
        let r = unary(UnOp::Not, &lit(u, 0)).unwrap();
        assert_eq!(const_value(&r), Some(u32::MAX as i128));
    }
}
