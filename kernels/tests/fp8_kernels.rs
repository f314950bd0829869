//! Properties of the FP8 kernels that the torch fixture does not pin down: the zero-group
//! rule, delayed scaling's saturation and amax, NaN handling of the amax, shape errors, and
//! the f16/bf16 instances' equivalence with the f32 path on the widened input.

use warpforge_dsl::prelude::*;
use warpforge_kernels::fp8::reference::Quantized;
use warpforge_kernels::fp8::reference::{self, Granularity};
use warpforge_kernels::fp8::{host, Fp8Float, Fp8Type, E4M3_MAX};

#[test]
fn all_zero_groups_get_scale_one_and_dequantize_to_exact_zeros() {
    let device = Device::cpu();
    let mut x = vec![0.0f32; 2 * 40];
    x[40..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as f32 - 7.5);
    x[3] = -0.0;
    let config = Config::new().with("G", 32);
    let q = host::quantize_rows::<F8E4M3>(&device, &config, &x, 2, 40).unwrap();
    assert_eq!(&q.scales[..2], &[1.0, 1.0], "row 0 is all zeros");
    assert_eq!(q.codes[3], 0x80, "-0 keeps its sign");
    let y = host::dequantize::<F8E4M3>(&device, &config, &q, 2, 40, Granularity::Rows { g: 32 })
        .unwrap();
    assert!(y[..40].iter().all(|&v| v == 0.0));
    assert_eq!(y[3].to_bits(), (-0.0f32).to_bits());
    // Row 1, group 0 holds -7.5..=23.5: its largest magnitude maps to FMAX.
    assert_eq!(q.scales[2], 23.5 / E4M3_MAX);
    assert_eq!(q.codes[40 + 31], 0x7e);
    assert_eq!(y[40 + 31], 448.0 * q.scales[2]);
}

#[test]
fn delayed_scaling_saturates_and_reports_the_new_amax() {
    let device = Device::cpu();
    let x = [1.0f32, -3.0, 100.0, f32::NAN, 0.25];
    // A stale scale from amax 10: 100 / s = 4480 saturates to 448.
    let s = reference::scale_of(10.0, warpforge_dsl::convert::E4M3);
    let (codes, amax) = host::quantize_delayed::<F8E4M3>(&device, &Config::new(), &x, s).unwrap();
    assert_eq!(amax, 100.0, "NaN is ignored by the amax");
    assert_eq!(codes[2], 0x7e, "448, not NaN");
    assert_eq!(codes[3] & 0x7f, 0x7f, "NaN stays NaN");
    let amax_only = host::amax(&device, &Config::new(), &x).unwrap();
    assert_eq!(amax_only, 100.0);
}

#[test]
fn the_two_pass_and_delayed_paths_agree_when_the_scale_is_current() {
    let device = Device::cpu();
    let x: Vec<f32> = (0..999)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
        .collect();
    let current =
        host::quantize_tensor::<F8E5M2>(&device, &Config::new(), &Config::new(), &x).unwrap();
    let (codes, amax) =
        host::quantize_delayed::<F8E5M2>(&device, &Config::new(), &x, current.scales[0]).unwrap();
    assert_eq!(codes, current.codes);
    assert_eq!(amax, reference::amax(&x));
}

#[test]
fn a_wrong_shape_is_an_error_not_a_panic() {
    let device = Device::cpu();
    let err = host::quantize_rows::<F8E4M3>(&device, &Config::new(), &[1.0; 10], 3, 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fp8_quantize_rows_f32_e4m3") && err.contains("12"),
        "{err}"
    );
    let q = reference::quantize_tensor(&[1.0; 4], warpforge_dsl::convert::E4M3);
    let err = host::dequantize::<F8E4M3>(&device, &Config::new(), &q, 2, 4, Granularity::Tensor)
        .unwrap_err()
        .to_string();
    assert!(err.contains("codes"), "{err}");
}

/// A matrix whose rows span 2^-20 .. 2^13 (f16 subnormals, and beyond E4M3's range at s = 1),
/// with zeros, signs and a NaN: exactly representable in `T` by construction.
fn sixteen_bit_input<T: Fp8Float>(rows: usize, cols: usize) -> Vec<T> {
    (0..rows * cols)
        .map(|i| {
            let e = (i / cols % 34) as i32 - 20;
            let v = match i % 97 {
                5 => 0.0,
                50 => f32::NAN,
                k => (k as f32 - 48.0) / 16.0 * 2f32.powi(e),
            };
            T::from_f32(v)
        })
        .collect()
}

/// Every quantizer of `T` and `F` against the f32 instance on the widened input.
fn same_as_widened<T: Fp8Float, F: Fp8Type>(device: &Device) {
    let (rows, cols) = (130, 150);
    let x = sixteen_bit_input::<T>(rows, cols);
    let w: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let what = format!("{} -> {}", T::NAME, F::NAME);
    let c = Config::new();
    let g = Config::new().with("G", 32);
    let pairs: [(&str, Quantized, Quantized); 4] = [
        (
            "tensor",
            host::quantize_tensor::<F>(device, &c, &c, &x).unwrap(),
            host::quantize_tensor::<F>(device, &c, &c, &w).unwrap(),
        ),
        (
            "rows",
            host::quantize_rows::<F>(device, &g, &x, rows, cols).unwrap(),
            host::quantize_rows::<F>(device, &g, &w, rows, cols).unwrap(),
        ),
        (
            "rows_t",
            host::quantize_rows_t::<F>(device, &g, &x, rows, cols).unwrap(),
            host::quantize_rows_t::<F>(device, &g, &w, rows, cols).unwrap(),
        ),
        (
            "blocks",
            host::quantize_blocks::<F>(device, &c, &x, rows, cols).unwrap(),
            host::quantize_blocks::<F>(device, &c, &w, rows, cols).unwrap(),
        ),
    ];
    for (op, got, want) in pairs {
        assert_eq!(got.codes, want.codes, "{what} {op} codes");
        assert_eq!(got.scales, want.scales, "{what} {op} scales");
    }
    let s = reference::scale_of(reference::amax(&w) / 4.0, F::FORMAT);
    assert_eq!(
        host::quantize_delayed::<F>(device, &c, &x, s).unwrap(),
        host::quantize_delayed::<F>(device, &c, &w, s).unwrap(),
        "{what} delayed"
    );
    assert_eq!(
        host::amax(device, &c, &x).unwrap(),
        host::amax(device, &c, &w).unwrap(),
        "{what} amax"
    );
}

#[test]
fn sixteen_bit_inputs_quantize_like_their_f32_widening() {
    let device = Device::cpu();
    same_as_widened::<f16, F8E4M3>(&device);
    same_as_widened::<f16, F8E5M2>(&device);
    same_as_widened::<bf16, F8E4M3>(&device);
    same_as_widened::<bf16, F8E5M2>(&device);
}

/// Dequantizing to `T`: one f32 product, then one RNE rounding (`half`'s `from_f32`),
/// including products that overflow `T` (f16 beyond 65504) and fall into its subnormals.
fn dequantize_rounds_once<T: Fp8Float, F: Fp8Type>(device: &Device) {
    let (rows, cols) = (3usize, 260usize);
    let codes: Vec<u8> = (0..rows * cols).map(|i| (i * 37 % 251) as u8).collect();
    let codes: Vec<u8> = codes
        .into_iter()
        .map(|c| {
            if F::FORMAT.decode(c).is_nan() {
                c & 0xf0
            } else {
                c
            }
        })
        .collect();
    let scales: Vec<f32> = (0..rows * cols.div_ceil(32))
        .map(|k| 2f32.powi(k as i32 % 40 - 30) * 1.37)
        .collect();
    let q = Quantized { codes, scales };
    let g = Granularity::Rows { g: 32 };
    let got = host::dequantize_to::<F, T>(device, &Config::new(), &q, rows, cols, g).unwrap();
    let want = reference::dequantize(&q, rows, cols, g, F::FORMAT);
    for (i, (y, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            y.to_f32().to_bits(),
            T::from_f32(*w).to_f32().to_bits(),
            "{} -> {} [{i}]: f32 product {w:e}",
            F::NAME,
            T::NAME
        );
    }
}

#[test]
fn dequantizing_to_sixteen_bits_is_one_product_then_one_rounding() {
    let device = Device::cpu();
    dequantize_rounds_once::<f16, F8E4M3>(&device);
    dequantize_rounds_once::<f16, F8E5M2>(&device);
    dequantize_rounds_once::<bf16, F8E4M3>(&device);
    dequantize_rounds_once::<bf16, F8E5M2>(&device);
}
