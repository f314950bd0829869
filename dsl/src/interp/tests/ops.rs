//! Binary operators and casts on edge values, through whole kernels, against Rust's own
//! semantics (and f64 references for the narrow float types).

use crate::backend::{Arg, LaunchDims, RawBuffer, Storage};
use crate::convert::{E4M3, E5M2};
use crate::interp::build::launch;
use crate::interp::InterpError;
use crate::ir::BinOp;
use crate::test_ir::*;
use crate::typed::{Expr, Intrinsic};
use crate::types::{ScalarType as S, Type};
use half::{bf16, f16};

fn raw(ty: S, bits: &[u64]) -> RawBuffer {
    let size = ty.size_bytes();
    let bytes = bits
        .iter()
        .flat_map(|b| b.to_le_bytes()[..size].to_vec())
        .collect();
    RawBuffer {
        elem: Type::Scalar(ty),
        len: bits.len(),
        storage: Storage::Host(bytes),
    }
}

fn bits_of(b: &RawBuffer) -> Vec<u64> {
    let size = b.elem.size_bytes();
    let bytes = b.host_bytes().unwrap();
    bytes
        .chunks_exact(size)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..size].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// Runs `out[i] = f(x[i], y[i])` over all pairs, 64 threads per block.
fn elementwise(
    ty: S,
    out_ty: S,
    xs: &[u64],
    ys: &[u64],
    f: impl Fn(Expr, Expr) -> Expr,
) -> Result<Vec<u64>, InterpError> {
    let mut fb = FnBuilder::default();
    let (x, y) = (
        fb.slice_param("x", ty.into(), false),
        fb.slice_param("y", ty.into(), false),
    );
    let out = fb.slice_param("out", out_ty.into(), true);
    let i = fb.var_mut("i", Type::U32);
    let body = vec![
        let_(i, global_x()),
        if_(
            lt(i.e(), x.len()),
            vec![out.store(i.e(), f(x.at(i.e()), y.at(i.e())))],
            vec![],
        ),
    ];
    let k = kernel(fb.finish("elementwise", None, body), vec![]);
    let (bx, by) = (raw(ty, xs), raw(ty, ys));
    let mut bo = raw(out_ty, &vec![0; xs.len()]);
    let mut args = [Arg::Slice(&bx), Arg::Slice(&by), Arg::SliceMut(&mut bo)];
    launch(&k, LaunchDims::cover(xs.len() as u32, 64), &mut args)?;
    Ok(bits_of(&bo))
}

fn pairs(values: &[u64]) -> (Vec<u64>, Vec<u64>) {
    values
        .iter()
        .flat_map(|&a| values.iter().map(move |&b| (a, b)))
        .unzip()
}

const INT_OPS: [BinOp; 16] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Rem,
    BinOp::BitAnd,
    BinOp::BitOr,
    BinOp::BitXor,
    BinOp::Shl,
    BinOp::Shr,
    BinOp::Eq,
    BinOp::Ne,
    BinOp::Lt,
    BinOp::Le,
    BinOp::Gt,
    BinOp::Ge,
];

macro_rules! int_reference {
    ($t:ty, $op:expr, $a:expr, $b:expr) => {{
        let (a, b) = ($a as $t, $b as $t);
        let r: $t = match $op {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div => a.wrapping_div(b),
            BinOp::Rem => a.wrapping_rem(b),
            BinOp::BitAnd => a & b,
            BinOp::BitOr => a | b,
            BinOp::BitXor => a ^ b,
            BinOp::Shl => a.wrapping_shl(b as u32),
            BinOp::Shr => a.wrapping_shr(b as u32),
            BinOp::Eq => return (a == b) as u64,
            BinOp::Ne => return (a != b) as u64,
            BinOp::Lt => return (a < b) as u64,
            BinOp::Le => return (a <= b) as u64,
            BinOp::Gt => return (a > b) as u64,
            _ => return (a >= b) as u64,
        };
        r as u64 & (u64::MAX >> (64 - <$t>::BITS))
    }};
}

fn int_expected(ty: S, op: BinOp, a: u64, b: u64) -> u64 {
    match ty {
        S::I32 => int_reference!(i32, op, a as u32, b as u32),
        S::U32 => int_reference!(u32, op, a, b),
        S::I64 => int_reference!(i64, op, a, b),
        _ => int_reference!(u64, op, a, b),
    }
}

#[test]
fn integer_binary_ops_match_rust_wrapping_semantics() {
    for ty in [S::I32, S::U32, S::I64, S::U64] {
        let mask = if ty.bits() == 32 {
            0xffff_ffff
        } else {
            u64::MAX
        };
        let values: Vec<u64> = [
            0i64,
            1,
            -1,
            7,
            -7,
            31,
            32,
            33,
            63,
            64,
            i32::MIN as i64,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ]
        .iter()
        .map(|&v| v as u64 & mask)
        .collect();
        for op in INT_OPS {
            let (mut xs, mut ys) = pairs(&values);
            if matches!(op, BinOp::Div | BinOp::Rem) {
                let keep: Vec<bool> = ys.iter().map(|&y| y != 0).collect();
                let mut k = keep.iter();
                xs.retain(|_| *k.next().unwrap());
                ys.retain(|&y| y != 0);
            }
            let out_ty = if op.is_comparison() { S::Bool } else { ty };
            let got = elementwise(ty, out_ty, &xs, &ys, |a, b| bin(op, a, b)).unwrap();
            for ((&a, &b), &g) in xs.iter().zip(&ys).zip(&got) {
                assert_eq!(
                    g,
                    int_expected(ty, op, a, b),
                    "{ty} {a:#x} {} {b:#x}",
                    op.symbol()
                );
            }
        }
    }
}

#[test]
fn shift_amount_of_another_type_is_taken_mod_width() {
    let got = elementwise(
        S::I32,
        S::I32,
        &[0x8000_0000, 1],
        &[33, 0xffff_ffff],
        |a, b| bin(BinOp::Shr, a, cast(b, S::U64)),
    )
    .unwrap();
    // -2^31 >> 1 (arithmetic) and 1 >> 31 (amount -1 mod 32).
    assert_eq!(got, vec![0xc000_0000, 0]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let err = elementwise(S::U32, S::U32, &[1, 2, 3], &[1, 0, 1], |a, b| {
        bin(BinOp::Div, a, b)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel elementwise: integer division by zero in thread (1,0,0) of block (0,0,0)"
    );
}

fn float_values() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        3.0,
        0.1,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        65504.0,
        448.0,
    ]
}

const FLOAT_OPS: [BinOp; 11] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Rem,
    BinOp::Eq,
    BinOp::Ne,
    BinOp::Lt,
    BinOp::Le,
    BinOp::Gt,
    BinOp::Ge,
];

fn f64_op(op: BinOp, a: f64, b: f64) -> Result<f64, bool> {
    Ok(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Rem => a % b,
        BinOp::Eq => return Err(a == b),
        BinOp::Ne => return Err(a != b),
        BinOp::Lt => return Err(a < b),
        BinOp::Le => return Err(a <= b),
        BinOp::Gt => return Err(a > b),
        _ => return Err(a >= b),
    })
}

/// f32 against Rust's f32; f16/bf16 against f64 arithmetic rounded once (exact for + - *,
/// and an innocuous double rounding for / and %).
#[test]
fn float_binary_ops_round_once() {
    type Codec = (S, fn(f32) -> u64, fn(u64) -> f64, fn(f64) -> u64);
    let codecs: [Codec; 3] = [
        (
            S::F32,
            |x| x.to_bits() as u64,
            |b| f32::from_bits(b as u32) as f64,
            |x| (x as f32).to_bits() as u64,
        ),
        (
            S::F16,
            |x| f16::from_f32(x).to_bits() as u64,
            |b| f16::from_bits(b as u16).to_f64(),
            |x| f16::from_f64(x).to_bits() as u64,
        ),
        (
            S::BF16,
            |x| bf16::from_f32(x).to_bits() as u64,
            |b| bf16::from_bits(b as u16).to_f64(),
            |x| bf16::from_f64(x).to_bits() as u64,
        ),
    ];
    for (ty, enc, dec, round) in codecs {
        let values: Vec<u64> = float_values().into_iter().map(enc).collect();
        for op in FLOAT_OPS {
            let (xs, ys) = pairs(&values);
            let out_ty = if op.is_comparison() { S::Bool } else { ty };
            let got = elementwise(ty, out_ty, &xs, &ys, |a, b| bin(op, a, b)).unwrap();
            for ((&a, &b), &g) in xs.iter().zip(&ys).zip(&got) {
                let want = match f64_op(op, dec(a), dec(b)) {
                    Ok(v) if v.is_nan() => {
                        assert!(dec(g).is_nan(), "{ty} {a:#x} {} {b:#x}", op.symbol());
                        continue;
                    }
                    Ok(v) => round(v),
                    Err(c) => c as u64,
                };
                assert_eq!(g, want, "{ty} {a:#x} {} {b:#x}", op.symbol());
            }
        }
    }
}

#[test]
fn float_min_max_follow_minnum_and_fma_rounds_once() {
    let xs = [f32::NAN, 1.0, -0.0, 2.0].map(|v| v.to_bits() as u64);
    let ys = [3.0, f32::NAN, 0.0, -5.0].map(|v| v.to_bits() as u64);
    let min = elementwise(S::F32, S::F32, &xs, &ys, |a, b| {
        intr(Intrinsic::Min, vec![a, b], Type::F32)
    })
    .unwrap();
    let max = elementwise(S::F32, S::F32, &xs, &ys, |a, b| {
        intr(Intrinsic::Max, vec![a, b], Type::F32)
    })
    .unwrap();
    let f = |v: &[u64]| {
        v.iter()
            .map(|&b| f32::from_bits(b as u32))
            .collect::<Vec<_>>()
    };
    assert_eq!(f(&min), vec![3.0, 1.0, -0.0, -5.0]);
    assert!(f(&min)[2].is_sign_negative());
    assert_eq!(f(&max), vec![3.0, 1.0, 0.0, 2.0]);
    assert!(f(&max)[2].is_sign_positive());
    // fma(x, y, -x*y rounded) recovers the rounding error of x*y: only with one rounding.
    let x = 1.0f32 + f32::EPSILON;
    let got = elementwise(
        S::F32,
        S::F32,
        &[x.to_bits() as u64],
        &[x.to_bits() as u64],
        |a, b| {
            let p = bin(BinOp::Mul, a.clone(), b.clone());
            intr(
                Intrinsic::Fma,
                vec![a, b, un(crate::ir::UnOp::Neg, p)],
                Type::F32,
            )
        },
    )
    .unwrap();
    assert_eq!(f32::from_bits(got[0] as u32), f32::EPSILON * f32::EPSILON);
}

/// The reference conversion of a value given as f64 (exactly representable) to `to`.
fn cast_reference(from: S, to: S, bits: u64, value: f64) -> u64 {
    if !from.is_float() && !to.is_float() {
        let v: i128 = if from.is_signed_int() {
            crate::interp::scalar::sext(from, bits) as i128
        } else {
            bits as i128
        };
        return match to {
            S::Bool => (v != 0) as u64,
            S::I32 | S::U32 => v as u32 as u64,
            _ => v as u64,
        };
    }
    match to {
        S::Bool => (value != 0.0) as u64,
        S::I32 => value as f32 as i32 as u32 as u64,
        S::U32 => value as f32 as u32 as u64,
        S::I64 => value as f32 as i64 as u64,
        S::U64 => value as f32 as u64,
        S::F32 => (value as f32).to_bits() as u64,
        S::F16 => f16::from_f64(value).to_bits() as u64,
        S::BF16 => bf16::from_f64(value).to_bits() as u64,
        S::F8E4M3 => E4M3.encode(value as f32) as u64,
        S::F8E5M2 => E5M2.encode(value as f32) as u64,
    }
}

fn edge_values(ty: S) -> Vec<(u64, f64)> {
    let ints: [i64; 10] = [
        0,
        1,
        -1,
        7,
        -300,
        2049,
        65519,
        65520,
        1 << 24 | 1,
        i32::MIN as i64,
    ];
    let floats = float_values();
    let mask = |b: u64| b & (u64::MAX >> (64 - ty.bits()));
    match ty {
        S::Bool => vec![(0, 0.0), (1, 1.0)],
        S::I32 | S::I64 => ints.iter().map(|&v| (mask(v as u64), v as f64)).collect(),
        S::U32 | S::U64 => ints
            .iter()
            .filter(|&&v| v >= 0)
            .map(|&v| (v as u64, v as f64))
            .chain([(mask(u64::MAX), 0.0)])
            .collect(),
        _ => floats
            .into_iter()
            .chain([2.5, -0.75, 300.5])
            .map(|x| {
                let bits = crate::interp::scalar::from_f32(ty, x);
                (bits, crate::interp::scalar::to_f32(ty, bits) as f64)
            })
            .collect(),
    }
}

#[test]
fn casts_between_every_pair_of_types() {
    for from in S::ALL {
        for to in S::ALL {
            let values = edge_values(from);
            let xs: Vec<u64> = values.iter().map(|v| v.0).collect();
            let got = elementwise(from, to, &xs, &xs, |a, _| cast(a, to)).unwrap();
            for (&(bits, value), &g) in values.iter().zip(&got) {
                // The max-magnitude unsigned value is only checked by int → int casts.
                if from.is_int()
                    && !from.is_signed_int()
                    && bits == u64::MAX >> (64 - from.bits())
                    && to.is_float()
                {
                    let want = crate::interp::scalar::from_f32(to, (bits as f64) as f32);
                    assert!(to != S::F32 || g == want, "{from} {bits:#x} as {to}");
                    continue;
                }
                let want = cast_reference(from, to, bits, value);
                let is_nan =
                    |t: S, b: u64| t.is_float() && crate::interp::scalar::to_f32(t, b).is_nan();
                if is_nan(to, want) {
                    assert!(is_nan(to, g), "{from} {bits:#x} as {to}: {g:#x}");
                } else {
                    assert_eq!(g, want, "{from} {bits:#x} ({value}) as {to}");
                }
            }
        }
    }
}
