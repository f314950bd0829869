//! COAT's mixed-granularity activation quantization picks per-tensor scaling for linear
//! layers' inputs and 1×16 groups for non-linear layers'.

use float8::F8E4M3;
use warpforge_dsl::convert::E4M3;
use warpforge_dsl::Device;
use warpforge_kernels::fp8::coat::activation::{quantize_activation, ActivationKind};
use warpforge_kernels::fp8::reference::{self, Granularity};

/// Rows whose scales differ by 2^20 (more than E4M3's normal range), so per-group scaling is visibly finer.
fn activation(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let r = (i / cols) as i32;
            ((i % 7) as f32 - 3.0) * 0.37 * 2f32.powi(20 * (r % 2) - 10)
        })
        .collect()
}

fn max_rel_error(x: &[f32], y: &[f32]) -> f32 {
    x.iter()
        .zip(y)
        .filter(|(a, _)| **a != 0.0)
        .map(|(a, b)| ((b - a) / a).abs())
        .fold(0.0, f32::max)
}

#[test]
fn layer_inputs_get_one_scale_and_non_linear_inputs_1x16_groups() {
    let (rows, cols) = (6, 40);
    let x = activation(rows, cols);
    let d = Device::cpu();
    let lin =
        quantize_activation::<F8E4M3>(&d, ActivationKind::LayerInput, &x, rows, cols).unwrap();
    assert_eq!(lin.granularity, Granularity::Tensor);
    assert_eq!(lin.quantized, reference::quantize_tensor(&x, E4M3));
    let nl = quantize_activation::<F8E4M3>(&d, ActivationKind::NonLinear, &x, rows, cols).unwrap();
    assert_eq!(nl.granularity, Granularity::Rows { g: 16 });
    assert_eq!(nl.quantized.scales.len(), rows * 3);
    assert_eq!(
        nl.quantized,
        reference::quantize_rows(&x, rows, cols, 16, E4M3)
    );
    // Finer groups: the small rows keep their precision under 1×16 scaling only.
    let (e_lin, e_nl) = (
        max_rel_error(&x, &lin.dequantize::<F8E4M3>()),
        max_rel_error(&x, &nl.dequantize::<F8E4M3>()),
    );
    assert!(e_nl <= 0.0625, "1x16 groups: max relative error {e_nl}");
    assert!(e_lin > 2.0 * e_nl, "per-tensor {e_lin} vs 1x16 {e_nl}");
}

#[test]
fn a_wrong_length_is_an_error() {
    let d = Device::cpu();
    let err =
        quantize_activation::<F8E4M3>(&d, ActivationKind::NonLinear, &[1.0; 5], 2, 3).unwrap_err();
    assert!(err.to_string().contains("6 elements"), "{err}");
}
