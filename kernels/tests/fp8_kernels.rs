//! Properties of the FP8 kernels that the torch fixture does not pin down: the zero-group
//! rule, delayed scaling's saturation and amax, NaN handling of the amax, and shape errors.

use warpforge_dsl::prelude::*;
use warpforge_kernels::fp8::reference::{self, Granularity};
use warpforge_kernels::fp8::{host, E4M3_MAX};

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
        err.contains("fp8_quantize_rows_e4m3") && err.contains("12"),
        "{err}"
    );
    let q = reference::quantize_tensor(&[1.0; 4], warpforge_dsl::convert::E4M3);
    let err = host::dequantize::<F8E4M3>(&device, &Config::new(), &q, 2, 4, Granularity::Tensor)
        .unwrap_err()
        .to_string();
    assert!(err.contains("codes"), "{err}");
}
