//! Exact numeric conversions between the IR's scalar types, on bit patterns.
//!
//! These are the conversions the CPU interpreter uses for `Cast` and for arithmetic on the
//! narrow float types; they follow the PTX ISA `cvt` rules bit for bit:
//! - float → narrower float: round to nearest, ties to even (`cvt.rn`); the FP8 types
//!   saturate to their largest finite value (`cvt.rn.satfinite.{e4m3,e5m2}x2.f32`): a value
//!   (or infinity) beyond the finite range becomes ±max finite (E4M3: 448, E5M2: 57344);
//!   every NaN becomes `S.1111.111` (0x7f, or 0xff for a negative NaN) in both formats,
//!   whatever its payload: the byte PyTorch writes (`c10::Float8_e4m3fn`/`Float8_e5m2`), and
//!   the canonical NaN of `cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32` (the generated CUDA sets the
//!   sign explicitly, so no backend depends on how `cvt` treats a NaN's sign);
//! - narrow float → f32 is exact;
//! - integer → float: one rounding, to nearest even (`cvt.rn.f32.s32` etc.), also for the
//!   narrow targets (computed as round-to-odd to f32, then RNE to the target: exact because
//!   24 >= p + 2 for every narrow target precision p, Boldo & Melquiond, "When double
//!   rounding is odd", 2005);
//! - float → integer: truncation toward zero, saturating, NaN → 0 (`cvt.rzi.sat`, Rust `as`).

use half::{bf16, f16};

/// An FP8 encoding: exponent bits, mantissa bits, and whether all-ones exponent codes are
/// infinities/NaNs (E5M2, IEEE-like) or ordinary numbers except `S.1111.111` (E4M3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp8Format {
    pub exp_bits: u32,
    pub man_bits: u32,
    pub ieee_like: bool,
}

/// OCP FP8 E4M3 (`F8E4M3`): bias 7, max 448, no infinities, NaN = `S.1111.111`.
pub const E4M3: Fp8Format = Fp8Format {
    exp_bits: 4,
    man_bits: 3,
    ieee_like: false,
};
/// OCP FP8 E5M2 (`F8E5M2`): bias 15, max 57344, infinities and NaNs as in IEEE.
pub const E5M2: Fp8Format = Fp8Format {
    exp_bits: 5,
    man_bits: 2,
    ieee_like: true,
};

impl Fp8Format {
    fn bias(self) -> i32 {
        (1 << (self.exp_bits - 1)) - 1
    }

    /// The code of the largest finite magnitude (E4M3: 0x7e, E5M2: 0x7b).
    pub fn max_code(self) -> u8 {
        if self.ieee_like {
            0x7c - 1
        } else {
            0x7e
        }
    }

    /// The largest finite magnitude (448 or 57344).
    pub fn max_finite(self) -> f32 {
        self.decode(self.max_code())
    }

    fn is_nan_code(self, code: u8) -> bool {
        let mag = code & 0x7f;
        if self.ieee_like {
            mag > 0x7c
        } else {
            mag == 0x7f
        }
    }

    /// Exact decoding of an FP8 code to f32 (NaN payload and sign kept).
    pub fn decode(self, code: u8) -> f32 {
        let sign = ((code as u32) >> 7) << 31;
        let mag = (code & 0x7f) as u32;
        let man_mask = (1u32 << self.man_bits) - 1;
        let exp_field = mag >> self.man_bits;
        let man = mag & man_mask;
        if self.is_nan_code(code) {
            return f32::from_bits(sign | 0x7f80_0000 | (man << (23 - self.man_bits)));
        }
        if self.ieee_like && mag == 0x7c {
            return f32::from_bits(sign | 0x7f80_0000);
        }
        // Subnormals (exp_field 0) are man * 2^(1 - bias - man_bits); normals carry the
        // implicit leading one. Both products are exact in f32.
        let (significand, exp) = if exp_field == 0 {
            (man, 1 - self.bias() - self.man_bits as i32)
        } else {
            (
                man | (1 << self.man_bits),
                exp_field as i32 - self.bias() - self.man_bits as i32,
            )
        };
        let value = significand as f32 * pow2(exp);
        f32::from_bits(sign | value.to_bits())
    }

    /// Rounds an f32 to this format: nearest, ties to even, saturating to ±max finite.
    pub fn encode(self, x: f32) -> u8 {
        let bits = x.to_bits();
        let sign = ((bits >> 31) << 7) as u8;
        if x.is_nan() {
            // One NaN code for every payload (E5M2 has six; E4M3 only this one).
            return sign | 0x7f;
        }
        let a = x.abs();
        if a > self.max_finite() {
            return sign | self.max_code();
        }
        if a < pow2(-126) {
            // Zero or an f32 subnormal: far below half the smallest FP8 subnormal.
            return sign;
        }
        let e = ((a.to_bits() >> 23) as i32) - 127;
        let emin = 1 - self.bias();
        // The quantum (ulp) of the target at this magnitude; subnormals share emin's.
        let quantum_exp = e.max(emin) - self.man_bits as i32;
        // `a / quantum` is exact (a power-of-two scaling well inside f32's range), so
        // rounding it to an integer rounds `a` to the target's grid.
        let q = (a * pow2(-quantum_exp)).round_ties_even() as u32;
        // code = (effective exponent field - 1) * 2^m + q: q's carry into 2^(m+1) moves to the
        // next binade by itself, and subnormals (field 0 → effective 1) give code = q.
        let exp_field = (e + self.bias()).max(1) as u32;
        let code = ((exp_field - 1) << self.man_bits) + q;
        sign | (code.min(self.max_code() as u32) as u8)
    }
}

/// 2^e for e in f32's normal exponent range.
fn pow2(e: i32) -> f32 {
    debug_assert!((-126..=127).contains(&e));
    f32::from_bits(((e + 127) as u32) << 23)
}

/// f32 → f16 bits, round to nearest even (`cvt.rn.f16.f32`).
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// f32 → bf16 bits, round to nearest even (`cvt.rn.bf16.f32`).
pub fn f32_to_bf16(x: f32) -> u16 {
    bf16::from_f32(x).to_bits()
}

pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

pub fn bf16_to_f32(bits: u16) -> f32 {
    bf16::from_bits(bits).to_f32()
}

/// f64 → f32 rounded to odd: truncate, and set the last bit when inexact. Rounding the
/// result to a format of precision p <= 22 with RNE is then the correct single rounding.
pub fn f64_to_f32_round_odd(x: f64) -> f32 {
    let r = x as f32;
    if !r.is_finite() || r as f64 == x || r.to_bits() & 1 == 1 {
        return r;
    }
    // `r` is the even neighbour; the odd one lies on x's side of r.
    let toward_zero = (r as f64).abs() > x.abs();
    f32::from_bits(if toward_zero {
        r.to_bits() - 1
    } else {
        r.to_bits() + 1
    })
}

/// `a * b + c` for operands with at most 24-bit significands, rounded to odd in f64 (and
/// then f32), so that one more RNE rounding to f16/bf16/FP8 equals a single rounding of the
/// exact result (the fused multiply-add of the narrow types).
pub fn fma_round_odd(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64; // exact: 24 + 24 <= 53 bits
    let c = c as f64;
    let s = p + c;
    if !s.is_finite() {
        return s as f32;
    }
    // TwoSum (Knuth): the exact rounding error of p + c.
    let bv = s - p;
    let err = (p - (s - bv)) + (c - bv);
    let s = if err != 0.0 && s.to_bits() & 1 == 0 {
        let away = (err > 0.0) == (s > 0.0);
        f64::from_bits(if away {
            s.to_bits() + 1
        } else {
            s.to_bits() - 1
        })
    } else {
        s
    };
    f64_to_f32_round_odd(s)
}

/// An integer (sign, magnitude) → f32 rounded to odd (exact when it fits in 24 bits).
pub fn int_to_f32_round_odd(negative: bool, magnitude: u64) -> f32 {
    let width = 64 - magnitude.leading_zeros();
    let value = if width <= 24 {
        magnitude as f32
    } else {
        let shift = width - 24;
        let kept = magnitude >> shift;
        let sticky = (magnitude & ((1u64 << shift) - 1) != 0) as u64;
        // `kept | sticky` has 24 bits, so the f32 conversion and the scaling are exact.
        (kept | sticky) as f32 * pow2(shift as i32)
    };
    if negative {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slow reference: the nearest representable FP8 value by search over all codes, ties to
    /// the even code, with satfinite for values beyond the range.
    fn reference(fmt: Fp8Format, x: f32) -> u8 {
        let sign = if x.is_sign_negative() { 0x80 } else { 0 };
        if x.abs() > fmt.max_finite() {
            return sign | fmt.max_code();
        }
        let mut best: Option<(f64, u8)> = None;
        for code in 0u8..=0x7f {
            let v = fmt.decode(code);
            if !v.is_finite() {
                continue;
            }
            let d = (v as f64 - x.abs() as f64).abs();
            let better = match best {
                None => true,
                Some((bd, bc)) => d < bd || (d == bd && code & 1 == 0 && bc & 1 == 1),
            };
            if better {
                best = Some((d, code));
            }
        }
        sign | best.unwrap().1
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn every_code_round_trips() {
        for fmt in [E4M3, E5M2] {
            for code in 0..=255u8 {
                let back = fmt.encode(fmt.decode(code));
                if fmt.is_nan_code(code) {
                    // Every NaN comes back as the one NaN code, sign kept.
                    assert_eq!(back, (code & 0x80) | 0x7f, "{fmt:?} {code:#x} -> {back:#x}");
                } else if fmt.ieee_like && code & 0x7f == 0x7c {
                    // ±Inf saturates to ±max finite (satfinite).
                    assert_eq!(back, (code & 0x80) | fmt.max_code());
                } else {
                    assert_eq!(back, code, "{fmt:?} code {code:#x}");
                }
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(E4M3.max_finite(), 448.0);
        assert_eq!(E5M2.max_finite(), 57344.0);
        assert_eq!(E4M3.decode(0x01), 2f32.powi(-9));
        assert_eq!(E5M2.decode(0x01), 2f32.powi(-16));
        assert_eq!(E4M3.decode(0x38), 1.0);
        assert_eq!(E5M2.decode(0x3c), 1.0);
        assert!(E5M2.decode(0x7c).is_infinite());
        assert_eq!(E4M3.encode(f32::INFINITY), 0x7e);
        assert_eq!(E4M3.encode(f32::NEG_INFINITY), 0xfe);
        assert_eq!(E5M2.encode(f32::INFINITY), 0x7b);
        assert_eq!(E4M3.encode(1e9), 0x7e);
        assert_eq!(E4M3.encode(f32::NAN), 0x7f);
        assert_eq!(E4M3.encode(-f32::NAN), 0xff);
        assert_eq!(E5M2.encode(f32::NAN), 0x7f);
        assert_eq!(E5M2.encode(-f32::NAN), 0xff);
        assert_eq!(E4M3.encode(-0.0), 0x80);
    }

    /// PyTorch's `float8_e4m3fn`/`float8_e5m2` casts write 0x7f (0xff when negative) for
    /// every NaN; the E5M2 encoder used to keep the payload's top mantissa bit and gave 0x7e
    /// for the NaNs whose f32 mantissa starts with 0 (signalling NaNs, e.g. 0x7f800001).
    #[test]
    fn every_nan_payload_encodes_as_the_one_nan_code() {
        let mut payloads = vec![0x7f80_0001u32, 0x7fbf_ffff, 0x7fc0_0000, 0x7fff_ffff];
        // Every combination of the mantissa's top three bits, with and without low bits.
        for top in 0..8u32 {
            for low in [0u32, 1, 0x000f_ffff] {
                let mantissa = (top << 20) | low;
                if mantissa != 0 {
                    payloads.push(0x7f80_0000 | mantissa);
                }
            }
        }
        for fmt in [E4M3, E5M2] {
            for &bits in &payloads {
                let nan = f32::from_bits(bits);
                assert!(nan.is_nan());
                assert_eq!(fmt.encode(nan), 0x7f, "{fmt:?} {bits:#010x}");
                assert_eq!(fmt.encode(-nan), 0xff, "{fmt:?} -{bits:#010x}");
            }
        }
    }

    #[test]
    fn ties_round_to_even() {
        // 1 + 1/16 lies halfway between 1 (0x38, even) and 1.125 (0x39): even wins.
        assert_eq!(E4M3.encode(1.0625), 0x38);
        // 1.125 + 1/16 is between 0x39 (odd) and 1.25 (0x3a): rounds up to even.
        assert_eq!(E4M3.encode(1.1875), 0x3a);
        // 464 is halfway between 448 and the NaN code's slot: stays 448.
        assert_eq!(E4M3.encode(464.0), 0x7e);
        // Half the smallest subnormal rounds to zero; a bit more rounds up.
        assert_eq!(E4M3.encode(2f32.powi(-10)), 0x00);
        assert_eq!(E4M3.encode(2f32.powi(-10) * 1.0001), 0x01);
        // 1.5 * min subnormal: tie between codes 1 and 2 → 2.
        assert_eq!(E4M3.encode(1.5 * 2f32.powi(-9)), 0x02);
        assert_eq!(E5M2.encode(1.125), 0x3c);
        assert_eq!(E5M2.encode(1.375), 0x3e);
    }

    #[test]
    fn matches_exhaustive_reference() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut samples: Vec<f32> = Vec::new();
        // Midpoints and their neighbours for every pair of adjacent codes.
        for fmt in [E4M3, E5M2] {
            for code in 0..fmt.max_code() {
                let (lo, hi) = (fmt.decode(code), fmt.decode(code + 1));
                let mid = (lo + hi) / 2.0;
                samples.extend([mid, f32::from_bits(mid.to_bits() + 1), lo, hi]);
                if mid > 0.0 {
                    samples.push(f32::from_bits(mid.to_bits() - 1));
                }
            }
        }
        samples.extend([
            0.0, 1e-45, 1e-38, 447.9, 448.1, 57343.0, 57345.0, 61440.0, 1e30,
        ]);
        for _ in 0..200_000 {
            let r = xorshift(&mut state);
            // Random magnitudes around the FP8 ranges, and fully random bit patterns.
            let x = if r & 1 == 0 {
                let e = ((r >> 8) % 48) as i32 - 24;
                let m = (r >> 32) as u32 & 0x7f_ffff;
                f32::from_bits((((e + 127) as u32) << 23) | m)
            } else {
                f32::from_bits((r >> 32) as u32)
            };
            samples.push(if r & 2 == 0 { x } else { -x });
        }
        for fmt in [E4M3, E5M2] {
            for &x in samples.iter().filter(|x| !x.is_nan()) {
                for x in [x, -x] {
                    assert_eq!(fmt.encode(x), reference(fmt, x), "{fmt:?} x = {x:e}");
                }
            }
        }
    }

    #[test]
    fn half_types_round_ties_to_even() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10 in f16: even (1.0) wins.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds up to inf
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    fn integers_round_once() {
        // 2^24 + 1 is a tie in f32 → even (2^24); as f32 via round-to-odd it stays odd-marked.
        assert_eq!(int_to_f32_round_odd(false, (1 << 24) + 1), 16777218.0);
        assert_eq!(int_to_f32_round_odd(false, 1 << 30), 1073741824.0);
        // bf16 of 2^24 + 2^16 + 1: a direct RNE rounds up (above the midpoint); a naive
        // double rounding through f32 would see an exact tie and round down to even.
        let x = (1u64 << 24) + (1 << 16) + 1;
        let r = f32_to_bf16(int_to_f32_round_odd(false, x));
        assert_eq!(bf16_to_f32(r), (1u64 << 24) as f32 + (1 << 17) as f32);
        assert_eq!(int_to_f32_round_odd(true, 5), -5.0);
    }

    #[test]
    fn narrow_fma_is_single_rounding() {
        // f16: 1 * (1 + 2^-11) + 2^-30: exact is just above the f16 midpoint → rounds up.
        let r = f32_to_f16(fma_round_odd(1.0, 1.0 + 2f32.powi(-11), 2f32.powi(-30)));
        assert_eq!(r, 0x3c01);
        let r = f32_to_f16(fma_round_odd(1.0, 1.0 + 2f32.powi(-11), -2f32.powi(-30)));
        assert_eq!(r, 0x3c00);
        assert_eq!(fma_round_odd(2.0, 3.0, 1.0), 7.0);
    }
}
