//! The GEMMs of a linear layer's backward on the CPU interpreter: the weight gradient
//! `dW = dYᵀ·X` by `gemm_tc_tn_{T}_{O}` (A column-major, read with `ldmatrix.trans`) over
//! its whole tunable space at ragged shapes, with real-valued training data against the
//! f64 reference, accumulation over micro-batches (`C += Aᵀ·B`), the data gradient
//! `dX = dY·W` by the existing nn layout, and NVRTC compiles of the default configs.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Config, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::gemm_tc::{launch, launch_tn_accumulate, padded, reference, Layout};
use warpforge::prelude::{bf16, f16, Float};

const TN: [&str; 6] = [
    "gemm_tc_tn_f16_f32",
    "gemm_tc_tn_f16_f16",
    "gemm_tc_tn_f16_bf16",
    "gemm_tc_tn_bf16_f32",
    "gemm_tc_tn_bf16_f16",
    "gemm_tc_tn_bf16_bf16",
];

/// Every config of the bf16 → f32 instance (the training step's) on every check problem
/// (ragged m, n, k; small integers, so every summation order is exact); the default and
/// an even sample of 8 for the other instances.
#[test]
fn every_config_matches_the_reference_on_ragged_shapes() {
    let mut runs = check_whole_space(&["gemm_tc_tn_bf16_f32"]);
    let device = Device::cpu();
    for name in TN.into_iter().filter(|&n| n != "gemm_tc_tn_bf16_f32") {
        let k = kernel(name);
        for config in &k.sample_configs(8) {
            for problem in k.problems() {
                let report = k.check(&device, config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report}",
                    problem.name
                );
                runs += 1;
            }
        }
    }
    println!("{runs} (kernel, config, problem) runs exact");
}

/// `values` (f32) rounded to `T`, as `rows` rows of `ld` (zeros in the padding).
fn rows_of<T: Float>(values: &[f32], cols: usize, ld: usize) -> Vec<T> {
    let mut out = vec![T::from_f32(0.0); values.len() / cols * ld];
    for (dst, src) in out.chunks_mut(ld).zip(values.chunks(cols)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = T::from_f32(s);
        }
    }
    out
}

/// The largest |kernel − reference| relative to the largest |reference| of the output.
fn worst_relative(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |s, &w| s.max(w.abs() as f64))
        .max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |e, (&g, &w)| e.max((g as f64 - w as f64).abs()));
    err / scale
}

/// `dW = dYᵀ·X` of a linear layer (`tokens` rows of `dY` (`out` wide) and `X` (`inp`
/// wide)), bf16 operands, f32 out: the stored f32 gradient against the f64 sum of the same
/// bf16 values. f32 accumulation over k = tokens products: the error is a few f32 ulps of
/// the sum's magnitude, not of bf16.
#[test]
fn weight_gradient_of_a_linear_layer_matches_f64() {
    let (tokens, out, inp) = (77, 40, 53);
    let mut rng = Lcg::for_dims(&[tokens, out, inp], 3);
    let dy = rng.floats(tokens * out, 1.0);
    let x = rng.floats(tokens * inp, 2.0);
    let (lda, ldb) = (padded(out), padded(inp));
    let (a, b) = (
        rows_of::<bf16>(&dy, out, lda),
        rows_of::<bf16>(&x, inp, ldb),
    );
    let want = reference(&a, &b, Layout::Tn, (out, inp, tokens), (lda, ldb));
    let device = Device::cpu();
    let config = kernel("gemm_tc_tn_bf16_f32").default_config();
    let (da, db) = (device.upload(&a).unwrap(), device.upload(&b).unwrap());
    let mut dw: Buffer<f32> = device.zeros(out * inp).unwrap();
    let shape = (out as u32, inp as u32, tokens as u32);
    let lds = (lda as u32, ldb as u32, inp as u32);
    launch(&device, &config, Layout::Tn, &da, &db, &mut dw, shape, lds).unwrap();
    let got = device.download(&dw).unwrap();
    let worst = worst_relative(&got, &want);
    println!("dW = dYᵀ·X ({out}×{inp}, k = {tokens}): max error / max |dW| = {worst:.2e}");
    assert!(worst < 1e-6, "{worst}");
}

/// Two micro-batches accumulated into one f32 gradient (`launch_tn_accumulate` twice onto
/// a nonzero start) equal the start plus both products; integer inputs make every sum exact.
/// A 16-bit output accumulates too, rounding each sum once.
#[test]
fn accumulation_adds_micro_batches_into_c() {
    let (m, n, k) = (37, 70, 45);
    let device = Device::cpu();
    let (lda, ldb) = (Layout::Tn.lda(m, k), Layout::Tn.ldb(n, k));
    let shape = (m as u32, n as u32, k as u32);
    let lds = (lda as u32, ldb as u32, n as u32);
    let mut rng = Lcg::for_dims(&[m, n, k], 5);
    let mut batch = || {
        let a = rows_of::<f16>(&rng.integers(k * m, 4), m, lda);
        let b = rows_of::<f16>(&rng.integers(k * n, 4), n, ldb);
        (a, b)
    };
    let batches = [batch(), batch()];
    let start: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 - 6.0).collect();
    let mut want = start.clone();
    for (a, b) in &batches {
        let c = reference(a, b, Layout::Tn, (m, n, k), (lda, ldb));
        want.iter_mut().zip(c).for_each(|(w, c)| *w += c);
    }
    let config = kernel("gemm_tc_tn_f16_f32").default_config();
    let mut dc = device.upload(&start).unwrap();
    let mut half: Buffer<f16> = device
        .upload(&start.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>())
        .unwrap();
    for (a, b) in &batches {
        let (da, db) = (device.upload(a).unwrap(), device.upload(b).unwrap());
        launch_tn_accumulate(&device, &config, &da, &db, &mut dc, shape, lds).unwrap();
        let config = kernel("gemm_tc_tn_f16_f16").default_config();
        launch_tn_accumulate(&device, &config, &da, &db, &mut half, shape, lds).unwrap();
    }
    assert_eq!(device.download(&dc).unwrap(), want);
    // |values| ≤ 2·45·16 + 6 < 2048: every f16 sum of integers is exact too.
    let half: Vec<f32> = device
        .download(&half)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    assert_eq!(half, want);
}

/// `dX = dY·W`: `dY` is `[tokens, out]`, the weight `W` `[out, in]` row-major (as a
/// `Linear` stores it), so `dX = dY·W` is the nn layout with k = out. Against f64.
#[test]
fn data_gradient_is_the_nn_layout() {
    let (tokens, out, inp) = (45, 72, 30);
    let mut rng = Lcg::for_dims(&[tokens, out, inp], 7);
    let dy = rng.floats(tokens * out, 1.0);
    let w = rng.floats(out * inp, 0.5);
    let (lda, ldb) = (padded(out), padded(inp));
    let (a, b) = (
        rows_of::<bf16>(&dy, out, lda),
        rows_of::<bf16>(&w, inp, ldb),
    );
    let want = reference(&a, &b, Layout::Nn, (tokens, inp, out), (lda, ldb));
    let device = Device::cpu();
    let config: Config = kernel("gemm_tc_nn_bf16_f32").default_config();
    let (da, db) = (device.upload(&a).unwrap(), device.upload(&b).unwrap());
    let mut dx: Buffer<f32> = device.zeros(tokens * inp).unwrap();
    let shape = (tokens as u32, inp as u32, out as u32);
    let lds = (lda as u32, ldb as u32, inp as u32);
    launch(&device, &config, Layout::Nn, &da, &db, &mut dx, shape, lds).unwrap();
    let got = device.download(&dx).unwrap();
    let worst = worst_relative(&got, &want);
    println!("dX = dY·W ({tokens}×{inp}, k = {out}): max error / max |dX| = {worst:.2e}");
    assert!(worst < 1e-6, "{worst}");
}

/// A column-major A whose leading dimension breaks the 16-byte rows is refused before the
/// launch, naming `lda`.
#[test]
fn misaligned_lda_is_refused() {
    let device = Device::cpu();
    let (m, n, k) = (12, 16, 16);
    let da: Buffer<f16> = device.zeros(k * 16).unwrap();
    let db: Buffer<f16> = device.zeros(k * n).unwrap();
    let mut dc: Buffer<f32> = device.zeros(m * n).unwrap();
    let config = kernel("gemm_tc_tn_f16_f32").default_config();
    let shape = (m as u32, n as u32, k as u32);
    let err = launch(
        &device,
        &config,
        Layout::Tn,
        &da,
        &db,
        &mut dc,
        shape,
        (12, 16, 16),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lda"), "{err}");
}

/// The default configs compile with NVRTC without spilling.
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&TN);
}
