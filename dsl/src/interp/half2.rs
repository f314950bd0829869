//! Packed 16-bit-pair arithmetic (`add_f16x2`, `fma_bf16x2`, ...), correctly rounded.
//!
//! PTX ISA 9.7.4 ("Half Precision Floating-Point Instructions": `add`, `sub`, `mul`, `fma`,
//! `min`, `max` on `.f16x2`/`.bf16x2`): each 16-bit lane is computed as if to infinite
//! precision and rounded once to nearest even (`.rn`, the default); subnormal inputs and
//! results are kept (no `.ftz`); a NaN result is the canonical NaN `0x7fff`; `min`/`max`
//! return the number when one operand is NaN, canonical NaN when both are, and order
//! `-0.0` below `+0.0`.
//!
//! Exactness: a product of two 16-bit floats is exact in f64 (at most 22 significant bits,
//! exponents far inside f64's range); a sum `p + c` is split by TwoSum into its f64 rounding
//! `s` and the exact error `e`, so `s + e` is the true result. Rounding `s` to the 16-bit
//! format is then exact except when `s` lies exactly halfway between two neighbours, where
//! the sign of `e` says on which side the true value lies.

use half::{bf16, f16};

use crate::typed::Half2Op;
use crate::types::ScalarType;

/// The canonical NaN that PTX's half-precision instructions produce.
pub(crate) const CANONICAL_NAN: u16 = 0x7fff;

/// A 16-bit float format: significand bits after the point and the least normal exponent.
#[derive(Clone, Copy)]
struct Format {
    man_bits: i32,
    min_exp: i32,
    bf16: bool,
}

const F16: Format = Format {
    man_bits: 10,
    min_exp: -14,
    bf16: false,
};
const BF16: Format = Format {
    man_bits: 7,
    min_exp: -126,
    bf16: true,
};

fn format(half: ScalarType) -> Format {
    if half == ScalarType::BF16 {
        BF16
    } else {
        F16
    }
}

impl Format {
    fn value(self, bits: u16) -> f64 {
        if self.bf16 {
            bf16::from_bits(bits).to_f64()
        } else {
            f16::from_bits(bits).to_f64()
        }
    }

    /// The bits of `x`, which must be representable in the format (or infinite).
    fn bits_of_exact(self, x: f64) -> u16 {
        if self.bf16 {
            bf16::from_f64(x).to_bits()
        } else {
            f16::from_f64(x).to_bits()
        }
    }

    /// `s + e` rounded to nearest even, where `s` is finite and `|e|` is at most half an
    /// f64 ulp of `s` (a TwoSum pair; `e = 0` for an exact `s`).
    fn round(self, s: f64, e: f64) -> u16 {
        if s.is_nan() {
            return CANONICAL_NAN;
        }
        if s.is_infinite() || s == 0.0 {
            return self.bits_of_exact(s);
        }
        let mag = s.abs();
        // The spacing of the format's values around `mag`: 2^(exponent - man_bits), with
        // the exponent held at the subnormal one below the normal range.
        let exp = ((mag.to_bits() >> 52) as i32 - 1023).max(self.min_exp);
        let quantum = pow2(exp - self.man_bits);
        let scaled = mag / quantum; // exact: a power-of-two scaling
        let floor = scaled.floor();
        let frac = scaled - floor;
        // The error term, seen from the magnitude: positive means the true |value| is larger.
        let toward = if s > 0.0 { e } else { -e };
        let up =
            frac > 0.5 || (frac == 0.5 && (toward > 0.0 || (toward == 0.0 && floor % 2.0 == 1.0)));
        let rounded = (floor + up as u8 as f64) * quantum;
        self.bits_of_exact(rounded.copysign(s))
    }
}

/// 2^n for the exponents 16-bit formats need (well inside f64's normal range).
fn pow2(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// Knuth's TwoSum: `s = fl(a + b)` and `e` with `s + e = a + b` exactly (finite operands).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if !s.is_finite() {
        return (s, 0.0);
    }
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// One lane: `op` on the 16-bit patterns `a`, `b`, `c` (`c` used by `Fma` only).
pub(crate) fn lane(op: Half2Op, half: ScalarType, a: u16, b: u16, c: u16) -> u16 {
    let f = format(half);
    let (x, y, z) = (f.value(a), f.value(b), f.value(c));
    match op {
        Half2Op::Add => sum(f, x, y),
        Half2Op::Sub => sum(f, x, -y),
        Half2Op::Mul => f.round(x * y, 0.0),
        Half2Op::Fma => sum(f, x * y, z),
        Half2Op::Max => pick(a, b, x, y, |p, q| p > q || (p == q && q.is_sign_negative())),
        Half2Op::Min => pick(a, b, x, y, |p, q| p < q || (p == q && p.is_sign_negative())),
    }
}

/// `x + y` (both exact f64 values: inputs or a product) rounded once.
fn sum(f: Format, x: f64, y: f64) -> u16 {
    let (s, e) = two_sum(x, y);
    f.round(s, e)
}

/// maxNum/minNum: `a` when `first(x, y)`, else `b`; a NaN operand loses.
fn pick(a: u16, b: u16, x: f64, y: f64, first: impl Fn(f64, f64) -> bool) -> u16 {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => CANONICAL_NAN,
        (true, false) => b,
        (false, true) => a,
        (false, false) if first(x, y) => a,
        _ => b,
    }
}

/// Both lanes of a packed register: low 16 bits and high 16 bits independently.
pub(crate) fn packed(op: Half2Op, half: ScalarType, a: u32, b: u32, c: u32) -> u32 {
    let lo = lane(op, half, a as u16, b as u16, c as u16);
    let hi = lane(
        op,
        half,
        (a >> 16) as u16,
        (b >> 16) as u16,
        (c >> 16) as u16,
    );
    lo as u32 | (hi as u32) << 16
}

/// `x` rounded once to the 16-bit format (nearest even; NaN → canonical NaN): the f16
/// accumulator rounding of `mma_m16n8k16_f16_f16`.
pub(crate) fn round_f64(half: ScalarType, x: f64) -> u16 {
    format(half).round(x, 0.0)
}

#[cfg(test)]
#[path = "half2_tests.rs"]
mod tests;
