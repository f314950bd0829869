//! The packed arithmetic against a brute-force reference: exact values as scaled integers,
//! rounded by searching the sorted list of every representable value.

use super::*;

/// Exact values are integers times 2^-SCALE.
const F16_SCALE: u32 = 48;
const BF16_SCALE: u32 = 80;

/// Every finite non-negative value of the format as (scaled integer, bits), ascending;
/// for bf16 only those the scale represents exactly and below 2^46.
fn grid(half: ScalarType, scale: u32) -> Vec<(i128, u16)> {
    let f = format(half);
    let last = if half == ScalarType::BF16 {
        0x7f7f
    } else {
        0x7bff
    };
    (0..=last)
        .filter_map(|bits: u16| {
            let scaled = f.value(bits) * 2f64.powi(scale as i32);
            (scaled.fract() == 0.0 && scaled < 2f64.powi(126)).then_some((scaled as i128, bits))
        })
        .collect()
}

fn scaled(half: ScalarType, bits: u16, scale: u32) -> i128 {
    let v = format(half).value(bits) * 2f64.powi(scale as i32);
    assert_eq!(v.fract(), 0.0, "{bits:#x} is not a multiple of 2^-{scale}");
    v as i128
}

/// Round-to-nearest-even of the exact nonzero `v` over `grid`; `overflow` is the
/// magnitude from which the result is infinite.
fn reference(v: i128, grid: &[(i128, u16)], overflow: i128) -> u16 {
    let sign = if v < 0 { 0x8000 } else { 0 };
    let m = v.abs();
    if m >= overflow {
        return sign
            | if overflow == F16_OVERFLOW {
                0x7c00
            } else {
                0x7f80
            };
    }
    let i = grid.partition_point(|&(g, _)| g <= m);
    let (lo, lo_bits) = grid[i - 1];
    let bits = match grid.get(i) {
        None => lo_bits,
        Some(&(hi, hi_bits)) => match (m - lo).cmp(&(hi - m)) {
            std::cmp::Ordering::Less => lo_bits,
            std::cmp::Ordering::Greater => hi_bits,
            std::cmp::Ordering::Equal if lo_bits % 2 == 0 => lo_bits,
            std::cmp::Ordering::Equal => hi_bits,
        },
    };
    sign | bits
}

/// 65520 · 2^48: the f16 overflow threshold (max 65504 plus half an ulp of 32).
const F16_OVERFLOW: i128 = 65520 << F16_SCALE;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random finite f16 patterns, biased to subnormals, tiny and huge values.
fn f16_pattern(rng: &mut Rng) -> u16 {
    let r = rng.next();
    let bits = match r % 4 {
        0 => (r >> 8) as u16 & 0x03ff,          // subnormal
        1 => 0x3800 | (r >> 8) as u16 & 0x0fff, // around 1
        _ => (r >> 8) as u16 % 0x7c00,
    };
    bits | ((r >> 40) as u16 & 1) << 15
}

/// Random bf16 patterns with exponents in [-20, 20] (exact at scale 2^-80).
fn bf16_pattern(rng: &mut Rng) -> u16 {
    let r = rng.next();
    let exp = 127 - 20 + (r % 41) as u16;
    exp << 7 | (r >> 8) as u16 & 0x7f | ((r >> 40) as u16 & 1) << 15
}

fn check(op: Half2Op, half: ScalarType, a: u16, b: u16, c: u16, want: u16) {
    let got = lane(op, half, a, b, c);
    assert_eq!(
        got, want,
        "{op:?} {half:?} a={a:#06x} b={b:#06x} c={c:#06x}: got {got:#06x}, want {want:#06x}"
    );
}

fn exact(op: Half2Op, half: ScalarType, a: u16, b: u16, c: u16, scale: u32) -> i128 {
    let v = |x| scaled(half, x, scale);
    // Inputs are multiples of 2^-(scale / 2), so their product is exact at 2^-scale.
    let product = |x, y| scaled(half, x, scale / 2) * scaled(half, y, scale / 2);
    match op {
        Half2Op::Add => v(a) + v(b),
        Half2Op::Sub => v(a) - v(b),
        Half2Op::Mul => product(a, b),
        _ => product(a, b) + v(c),
    }
}

/// Every op, many random operands: f16 over its whole finite range.
#[test]
fn f16_arithmetic_is_correctly_rounded() {
    let grid = grid(ScalarType::F16, F16_SCALE);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for op in [Half2Op::Add, Half2Op::Sub, Half2Op::Mul, Half2Op::Fma] {
        for _ in 0..60_000 {
            let (a, b, c) = (
                f16_pattern(&mut rng),
                f16_pattern(&mut rng),
                f16_pattern(&mut rng),
            );
            let v = exact(op, ScalarType::F16, a, b, c, F16_SCALE);
            if v != 0 {
                check(
                    op,
                    ScalarType::F16,
                    a,
                    b,
                    c,
                    reference(v, &grid, F16_OVERFLOW),
                );
            }
        }
    }
}

#[test]
fn bf16_arithmetic_is_correctly_rounded() {
    let grid = grid(ScalarType::BF16, BF16_SCALE);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for op in [Half2Op::Add, Half2Op::Sub, Half2Op::Mul, Half2Op::Fma] {
        for _ in 0..60_000 {
            let (a, b, c) = (
                bf16_pattern(&mut rng),
                bf16_pattern(&mut rng),
                bf16_pattern(&mut rng),
            );
            let v = exact(op, ScalarType::BF16, a, b, c, BF16_SCALE);
            if v != 0 {
                check(
                    op,
                    ScalarType::BF16,
                    a,
                    b,
                    c,
                    reference(v, &grid, i128::MAX),
                );
            }
        }
    }
}

/// FMA whose product lies exactly halfway between two f16 values, nudged either way by a
/// tiny addend: only an exact method gets all three right.
#[test]
fn fma_breaks_product_ties_by_the_addend() {
    let grid = grid(ScalarType::F16, F16_SCALE);
    let mut rng = Rng(7);
    let mut ties = 0;
    for _ in 0..200_000 {
        let (a, b) = (f16_pattern(&mut rng), f16_pattern(&mut rng));
        let p = exact(Half2Op::Mul, ScalarType::F16, a, b, 0, F16_SCALE);
        if p == 0 || p.abs() >= F16_OVERFLOW {
            continue;
        }
        let i = grid.partition_point(|&(g, _)| g <= p.abs());
        let Some(&(hi, _)) = grid.get(i) else {
            continue;
        };
        if 2 * p.abs() != grid[i - 1].0 + hi {
            continue;
        }
        ties += 1;
        for c in [0x0001u16, 0x8001, 0x0000] {
            let v = exact(Half2Op::Fma, ScalarType::F16, a, b, c, F16_SCALE);
            check(
                Half2Op::Fma,
                ScalarType::F16,
                a,
                b,
                c,
                reference(v, &grid, F16_OVERFLOW),
            );
        }
    }
    assert!(ties > 100, "only {ties} ties generated");
    // 1 + 2^-11 is a tie: even (1.0); (1 + 2^-10)^2 = 1 + 2^-9 + 2^-20 rounds down, and
    // plus 3 * 2^-11 it rounds up.
    check(Half2Op::Add, ScalarType::F16, 0x3c00, 0x1000, 0, 0x3c00);
    check(
        Half2Op::Fma,
        ScalarType::F16,
        0x3c00,
        0x3c00,
        0x1000,
        0x3c00,
    );
    check(
        Half2Op::Fma,
        ScalarType::F16,
        0x3c01,
        0x3c01,
        0x0000,
        0x3c02,
    );
    check(
        Half2Op::Fma,
        ScalarType::F16,
        0x3c01,
        0x3c01,
        0x1600,
        0x3c04,
    );
}

#[test]
fn special_values() {
    use Half2Op::*;
    let (h, b) = (ScalarType::F16, ScalarType::BF16);
    // inf - inf and NaN inputs give the canonical NaN; inf survives finite operands.
    check(Sub, h, 0x7c00, 0x7c00, 0, CANONICAL_NAN);
    check(Add, h, 0x7e01, 0x3c00, 0, CANONICAL_NAN);
    check(Fma, h, 0x7c00, 0x0000, 0x3c00, CANONICAL_NAN);
    check(Add, h, 0x7c00, 0x3c00, 0, 0x7c00);
    check(Mul, b, 0xff80, 0x3f80, 0, 0xff80);
    // Overflow: 65504 + 16 is a tie rounding to even, which is infinity.
    check(Add, h, 0x7bff, 0x4c00, 0, 0x7c00);
    check(Mul, b, 0x7f00, 0x7f00, 0, 0x7f80);
    // Signed zeros: -0 + -0 = -0, x - x = +0, -0 * 1 = -0, (-0)(1) + (-0) = -0.
    check(Add, h, 0x8000, 0x8000, 0, 0x8000);
    check(Sub, h, 0x3c00, 0x3c00, 0, 0x0000);
    check(Mul, b, 0x8000, 0x3f80, 0, 0x8000);
    check(Fma, h, 0x8000, 0x3c00, 0x8000, 0x8000);
    // Underflow keeps the sign: 2^-24 * -0.25 is -0.
    check(Mul, h, 0x0001, 0xb400, 0, 0x8000);
    // Subnormal results are kept: 2^-14 * 0.5 = 2^-15.
    check(Mul, h, 0x0400, 0x3800, 0, 0x0200);
    // min/max: a NaN loses; two NaNs give the canonical NaN; -0 < +0.
    check(Max, h, 0x7e00, 0x3c00, 0, 0x3c00);
    check(Min, b, 0x3f80, 0xffc1, 0, 0x3f80);
    check(Min, h, 0x7e00, 0xfe00, 0, CANONICAL_NAN);
    check(Min, h, 0x0000, 0x8000, 0, 0x8000);
    check(Max, h, 0x8000, 0x0000, 0, 0x0000);
    check(Max, b, 0xc000, 0xbf80, 0, 0xbf80);
}

#[test]
fn lanes_are_independent() {
    let one_two = 0x4000_3c00; // (lo 1.0, hi 2.0)
    let three_half = 0x3800_4200; // (lo 3.0, hi 0.5)
    let r = packed(Half2Op::Add, ScalarType::F16, one_two, three_half, 0);
    assert_eq!(r, 0x4100_4400); // (4.0, 2.5)
    let r = packed(Half2Op::Fma, ScalarType::F16, one_two, three_half, one_two);
    assert_eq!(r, 0x4200_4400); // (1*3 + 1, 2*0.5 + 2) = (4.0, 3.0)
}

#[test]
fn accumulator_rounding_is_to_nearest_even() {
    assert_eq!(round_f64(ScalarType::F16, 1.0 + 2f64.powi(-11)), 0x3c00);
    assert_eq!(
        round_f64(ScalarType::F16, 1.0 + 3.0 * 2f64.powi(-11)),
        0x3c02
    );
    assert_eq!(round_f64(ScalarType::F16, 1e6), 0x7c00);
    assert_eq!(round_f64(ScalarType::F16, f64::NAN), CANONICAL_NAN);
}
