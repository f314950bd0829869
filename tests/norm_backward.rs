//! RMSNorm backward (`rmsnorm_bwd_{T}`, `rmsnorm_dweight_{T}`, `column_sum`) on the CPU
//! interpreter: every config at the family's check problems, `dx` and `dγ` of the f32
//! instances (after the forward kernel wrote `rstd`) against central finite differences of
//! the f64 forward, the weight gradient bit-identical run to run, and NVRTC compiles of the
//! default configs.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::norm::backward::{chunks, launch_rmsnorm_bwd, launch_rmsnorm_dweight};
use warpforge::kernels::norm::host::{launch_rmsnorm, Rows};

const NAMES: [&str; 7] = [
    "rmsnorm_bwd_f32",
    "rmsnorm_bwd_f16",
    "rmsnorm_bwd_bf16",
    "rmsnorm_dweight_f32",
    "rmsnorm_dweight_f16",
    "rmsnorm_dweight_bf16",
    "column_sum",
];

const EPS: f32 = 1e-5;

#[test]
fn whole_space_of_every_instance_matches_the_reference() {
    let runs = check_whole_space(&NAMES);
    println!("{runs} (kernel, config, problem) runs within tolerance");
}

/// `L(x, γ) = Σ w ⊙ RMSNorm(x; γ)` in f64 (the f32 instance's roundings are f32 ones, far
/// below the finite-difference error).
fn loss(x: &[f64], weight: &[f64], w: &[f64], cols: usize) -> f64 {
    let mut total = 0.0;
    for (row, wr) in x.chunks(cols).zip(w.chunks(cols)) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
        let r = 1.0 / (ms + EPS as f64).sqrt();
        total += row
            .iter()
            .zip(weight)
            .zip(wr)
            .map(|((&v, &g), &wv)| wv * g * v * r)
            .sum::<f64>();
    }
    total
}

/// The gradients the kernels compute for dy = w: (dx, dγ), the forward kernel writing
/// `rstd` first.
fn kernel_gradients(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    (rows, cols): (usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let device = Device::cpu();
    let shape = Rows::padded(rows, cols);
    assert_eq!(shape.ld as usize, cols, "the test uses cols % 4 == 0");
    let xb = device.upload(x).unwrap();
    let wb = device.upload(weight).unwrap();
    let dyb = device.upload(dy).unwrap();
    let mut y: Buffer<f32> = device.zeros(rows * cols).unwrap();
    let mut rstd: Buffer<f32> = device.zeros(rows).unwrap();
    let fwd = kernel("rmsnorm_f32").default_config();
    launch_rmsnorm(&device, &fwd, (&xb, &wb), (&mut y, &mut rstd), shape, EPS).unwrap();
    let mut dx: Buffer<f32> = device.zeros(rows * cols).unwrap();
    let config = kernel("rmsnorm_bwd_f32").default_config();
    launch_rmsnorm_bwd(&device, &config, (&xb, &wb, &dyb, &rstd), &mut dx, shape).unwrap();
    let config = kernel("rmsnorm_dweight_f32").default_config();
    let mut partial: Buffer<f32> = device
        .zeros(chunks(&config, rows as u32) as usize * cols)
        .unwrap();
    let mut dweight: Buffer<f32> = device.zeros(cols).unwrap();
    launch_rmsnorm_dweight(
        &device,
        &config,
        (&xb, &dyb, &rstd),
        (&mut partial, &mut dweight),
        shape,
    )
    .unwrap();
    (
        device.download(&dx).unwrap(),
        device.download(&dweight).unwrap(),
    )
}

#[test]
fn gradients_match_central_differences() {
    let (rows, cols) = (70, 12);
    let mut rng = Lcg::for_dims(&[rows, cols], 1);
    let x = rng.floats(rows * cols, 2.0);
    let weight: Vec<f32> = (0..cols).map(|_| 1.0 + rng.float(0.5)).collect();
    let dy = rng.floats(rows * cols, 1.0);
    let (dx, dweight) = kernel_gradients(&x, &weight, &dy, (rows, cols));
    let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (x64, w64, dy64) = (wide(&x), wide(&weight), wide(&dy));
    let h = 1e-6;
    let central = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    let mut worst = 0.0f64;
    for i in 0..rows * cols {
        let fd = central(&|d| {
            let mut p = x64.clone();
            p[i] += d;
            loss(&p, &w64, &dy64, cols)
        });
        let err = (dx[i] as f64 - fd).abs();
        worst = worst.max(err / fd.abs().max(1.0));
        assert!(
            err < 2e-5 * fd.abs().max(1.0),
            "dx[{i}]: kernel {} vs {fd}",
            dx[i]
        );
    }
    for c in 0..cols {
        let fd = central(&|d| {
            let mut p = w64.clone();
            p[c] += d;
            loss(&x64, &p, &dy64, cols)
        });
        let err = (dweight[c] as f64 - fd).abs();
        worst = worst.max(err / fd.abs().max(1.0));
        assert!(
            err < 2e-5 * fd.abs().max(1.0),
            "dγ[{c}]: kernel {} vs {fd}",
            dweight[c]
        );
    }
    println!("max relative |kernel − central difference| = {worst:.2e}");
}

/// No atomics: the weight gradient is the same bits every run.
#[test]
fn weight_gradient_is_bit_reproducible() {
    let (rows, cols) = (257, 40);
    let mut rng = Lcg::for_dims(&[rows, cols], 2);
    let x = rng.floats(rows * cols, 2.0);
    let weight = rng.floats(cols, 1.0);
    let dy = rng.floats(rows * cols, 1.0);
    let first = kernel_gradients(&x, &weight, &dy, (rows, cols));
    let second = kernel_gradients(&x, &weight, &dy, (rows, cols));
    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&first.1), bits(&second.1));
    assert_eq!(bits(&first.0), bits(&second.0));
}

/// The default configs compile with NVRTC without spilling (see [`compile_defaults`]).
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&NAMES);
}
