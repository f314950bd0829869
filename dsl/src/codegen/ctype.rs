//! C spellings of IR types and literals, and the precedence-carrying C fragment [`C`].

use crate::types::{ScalarType, Type};

/// C operator precedence levels (higher binds tighter); a fragment printed at level `p` may
/// appear unparenthesized wherever a level `<= p` is required.
pub(crate) mod prec {
    pub const TOP: u8 = 0;
    /// A function argument or initializer (anything but the comma operator).
    pub const ARG: u8 = 2;
    pub const COND: u8 = 3;
    pub const LOR: u8 = 4;
    pub const LAND: u8 = 5;
    pub const BOR: u8 = 6;
    pub const BXOR: u8 = 7;
    pub const BAND: u8 = 8;
    pub const EQ: u8 = 9;
    pub const REL: u8 = 10;
    pub const SHIFT: u8 = 11;
    pub const ADD: u8 = 12;
    pub const MUL: u8 = 13;
    pub const UNARY: u8 = 15;
    pub const PRIMARY: u8 = 16;
}

/// A printed C expression with the precedence of its outermost operator.
#[derive(Clone, Debug)]
pub(crate) struct C {
    pub text: String,
    pub prec: u8,
}

impl C {
    pub fn new(text: impl Into<String>, prec: u8) -> C {
        C {
            text: text.into(),
            prec,
        }
    }

    pub fn primary(text: impl Into<String>) -> C {
        C::new(text, prec::PRIMARY)
    }

    /// `name(args...)`.
    pub fn call(name: &str, args: impl IntoIterator<Item = C>) -> C {
        let args: Vec<String> = args.into_iter().map(|a| a.at(prec::ARG)).collect();
        C::primary(format!("{name}({})", args.join(", ")))
    }

    /// The text, parenthesized when this fragment binds looser than `min`.
    pub fn at(&self, min: u8) -> String {
        if self.prec < min {
            format!("({})", self.text)
        } else {
            self.text.clone()
        }
    }

    /// A prefix operator (`-`, `!`, `~`, a C cast) applied to this fragment.
    pub fn prefix(self, op: &str) -> C {
        // `- -x` must not print as `--x`.
        let operand = if self.prec < prec::UNARY || self.text.starts_with(['-', '+']) {
            format!("({})", self.text)
        } else {
            self.text
        };
        C::new(format!("{op}{operand}"), prec::UNARY)
    }

    /// `(T)x`.
    pub fn cast_to(self, c_type: &str) -> C {
        self.prefix(&format!("({c_type})"))
    }

    /// `a op b` at level `p`. Beyond what precedence requires, operands of bitwise, shift,
    /// logical and comparison operators that are themselves a different binary operator get
    /// parentheses, so that no reader has to remember C's table.
    pub fn infix(a: C, op: &str, b: C, p: u8) -> C {
        let left = operand(&a, p, false);
        let right = operand(&b, p, true);
        C::new(format!("{left} {op} {right}"), p)
    }
}

fn operand(c: &C, parent: u8, right: bool) -> String {
    let is_binary = (prec::LOR..=prec::MUL).contains(&c.prec);
    let confusing = is_binary
        && c.prec != parent
        && matches!(
            parent,
            prec::LOR | prec::LAND | prec::BOR | prec::BXOR | prec::BAND | prec::SHIFT
        );
    let chained_comparison =
        matches!(parent, prec::EQ | prec::REL) && matches!(c.prec, prec::EQ | prec::REL);
    if c.prec < parent || (right && c.prec == parent) || confusing || chained_comparison {
        format!("({})", c.text)
    } else {
        c.text.clone()
    }
}

/// The C type of a scalar.
pub fn scalar_c_type(s: ScalarType) -> &'static str {
    match s {
        ScalarType::Bool => "bool",
        ScalarType::I32 => "int",
        ScalarType::U32 => "unsigned int",
        ScalarType::I64 => "long long",
        ScalarType::U64 => "unsigned long long",
        ScalarType::F32 => "float",
        ScalarType::F16 => "__half",
        ScalarType::BF16 => "__nv_bfloat16",
        ScalarType::F8E4M3 | ScalarType::F8E5M2 => "__nv_fp8_storage_t",
    }
}

/// The C type of a value type: a scalar's C type, or `wf_vec<T, N>` for a vector.
pub fn c_type_name(ty: Type) -> String {
    match ty {
        Type::Scalar(s) => scalar_c_type(s).to_string(),
        Type::Vector(s, n) => format!("wf_vec<{}, {n}>", scalar_c_type(s)),
    }
}

/// A short tag for helper names: `f32`, `f16x2`.
pub(crate) fn type_tag(ty: Type) -> String {
    let s = match ty.elem() {
        ScalarType::F8E4M3 => "e4m3".to_string(),
        ScalarType::F8E5M2 => "e5m2".to_string(),
        other => other.rust_name().to_string(),
    };
    match ty {
        Type::Scalar(_) => s,
        Type::Vector(_, n) => format!("{s}x{n}"),
    }
}

/// A scalar constant from its bit pattern (see `typed::ExprKind::Lit`), printed exactly.
pub(crate) fn scalar_literal(s: ScalarType, bits: u64) -> C {
    match s {
        ScalarType::Bool => C::primary(if bits & 1 != 0 { "true" } else { "false" }),
        ScalarType::I32 => signed_literal(bits as u32 as i32 as i64, "", i32::MIN as i64),
        ScalarType::I64 => signed_literal(bits as i64, "ll", i64::MIN),
        ScalarType::U32 => C::primary(unsigned_digits(bits & 0xffff_ffff) + "u"),
        ScalarType::U64 => C::primary(unsigned_digits(bits) + "ull"),
        ScalarType::F32 => f32_literal(f32::from_bits(bits as u32)),
        ScalarType::F16 => C::primary(format!(
            "__ushort_as_half((unsigned short)0x{:04x})",
            bits & 0xffff
        )),
        ScalarType::BF16 => C::primary(format!(
            "__ushort_as_bfloat16((unsigned short)0x{:04x})",
            bits & 0xffff
        )),
        ScalarType::F8E4M3 | ScalarType::F8E5M2 => C::new(
            format!("(__nv_fp8_storage_t)0x{:02x}", bits & 0xff),
            prec::UNARY,
        ),
    }
}

fn signed_literal(v: i64, suffix: &str, min: i64) -> C {
    if v == min {
        // `-2147483648` is `-(2147483648)`, whose literal does not fit `int`.
        C::primary(format!("({}{suffix} - 1{suffix})", min + 1))
    } else if v < 0 {
        C::new(format!("{v}{suffix}"), prec::UNARY)
    } else {
        C::primary(format!("{v}{suffix}"))
    }
}

/// Decimal, except masks and powers of two from 2^16 up, which read better in hex.
fn unsigned_digits(v: u64) -> String {
    let mask_like = v.is_power_of_two() || v.checked_add(1).is_none_or(u64::is_power_of_two);
    if v >= 1 << 16 && mask_like {
        format!("0x{v:x}")
    } else {
        v.to_string()
    }
}

fn f32_literal(f: f32) -> C {
    if !f.is_finite() {
        return C::primary(format!("__int_as_float(0x{:08x})", f.to_bits()));
    }
    // Rust's `Debug` prints the shortest decimal that reads back as the same f32, always
    // with a `.` or an exponent, so it is a valid C float literal once suffixed.
    let text = format!("{f:?}f");
    debug_assert_eq!(
        text.trim_end_matches('f').parse::<f32>().map(f32::to_bits),
        Ok(f.to_bits())
    );
    if f.is_sign_negative() {
        C::new(text, prec::UNARY)
    } else {
        C::primary(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: ScalarType, bits: u64) -> String {
        scalar_literal(s, bits).text
    }

    #[test]
    fn integer_literals() {
        assert_eq!(lit(ScalarType::I32, 5), "5");
        assert_eq!(lit(ScalarType::I32, 0xffff_fffb), "-5");
        assert_eq!(lit(ScalarType::I32, 0x8000_0000), "(-2147483647 - 1)");
        assert_eq!(
            lit(ScalarType::I64, 1 << 63),
            "(-9223372036854775807ll - 1ll)"
        );
        assert_eq!(lit(ScalarType::U32, 5), "5u");
        assert_eq!(lit(ScalarType::U32, 0xffff_ffff), "0xffffffffu");
        assert_eq!(lit(ScalarType::U32, 100_000), "100000u");
        assert_eq!(lit(ScalarType::U64, 7), "7ull");
        assert_eq!(lit(ScalarType::U64, u64::MAX), "0xffffffffffffffffull");
        assert_eq!(lit(ScalarType::Bool, 1), "true");
    }

    #[test]
    fn float_literals() {
        assert_eq!(lit(ScalarType::F32, 1.0f32.to_bits() as u64), "1.0f");
        assert_eq!(lit(ScalarType::F32, 0.1f32.to_bits() as u64), "0.1f");
        assert_eq!(lit(ScalarType::F32, (-2.5f32).to_bits() as u64), "-2.5f");
        assert_eq!(lit(ScalarType::F32, 1e20f32.to_bits() as u64), "1e20f");
        assert_eq!(
            lit(ScalarType::F32, f32::INFINITY.to_bits() as u64),
            "__int_as_float(0x7f800000)"
        );
        assert_eq!(
            lit(ScalarType::F16, 0x3c00),
            "__ushort_as_half((unsigned short)0x3c00)"
        );
        assert_eq!(lit(ScalarType::F8E4M3, 0x38), "(__nv_fp8_storage_t)0x38");
    }

    #[test]
    fn parenthesization() {
        let a = C::primary("a");
        let b = C::primary("b");
        let sum = C::infix(a.clone(), "+", b.clone(), prec::ADD);
        let diff = C::infix(sum.clone(), "-", sum.clone(), prec::ADD);
        assert_eq!(diff.text, "a + b - (a + b)");
        let prod = C::infix(sum.clone(), "*", b.clone(), prec::MUL);
        assert_eq!(prod.text, "(a + b) * b");
        let mask = C::infix(sum, "&", b.clone(), prec::BAND);
        assert_eq!(mask.text, "(a + b) & b");
        let neg = C::primary("-1").prefix("-");
        assert_eq!(neg.text, "-(-1)");
    }
}
