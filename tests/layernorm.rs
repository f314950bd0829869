//! LayerNorm forward and backward on the CPU interpreter: every config of the backward
//! kernels (`layernorm_bwd_{T}`, `layernorm_dparams_{T}`) and of the forward
//! (`layernorm_{T}`) at their families' check problems against the f64 references;
//! `dx`, `dγ` and `dβ` of the f32 instances (after the forward kernel wrote `mean` and
//! `rstd`) against central finite differences of the f64 forward; the parameter gradients
//! bit-identical run to run; NVRTC compiles of the default configs.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::norm::backward::chunks;
use warpforge::kernels::norm::host::{launch_layernorm, Rows};
use warpforge::kernels::norm::layernorm_backward::{
    launch_layernorm_bwd, launch_layernorm_dparams, Partials,
};

const BACKWARD: [&str; 6] = [
    "layernorm_bwd_f32",
    "layernorm_bwd_f16",
    "layernorm_bwd_bf16",
    "layernorm_dparams_f32",
    "layernorm_dparams_f16",
    "layernorm_dparams_bf16",
];

const EPS: f32 = 1e-5;

/// Every config of every backward instance; prints each instance's largest absolute error
/// and the tolerance of that problem (the allowance is `tolerance · max(1, |want|)`).
#[test]
fn whole_space_of_the_backward_matches_the_reference() {
    let device = Device::cpu();
    let mut runs = 0;
    for name in BACKWARD {
        let k = kernel(name);
        let mut worst = (0.0f64, 0.0f64);
        for problem in k.problems() {
            for config in k.configs() {
                let report = k.check(&device, &config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report}",
                    problem.name
                );
                if report.max_abs_error > worst.0 {
                    worst = (report.max_abs_error, report.tolerance);
                }
                runs += 1;
            }
        }
        println!(
            "{name}: max |error| {:.2e} (tolerance {:.2e} · max(1, |want|))",
            worst.0, worst.1
        );
    }
    println!("{runs} (kernel, config, problem) runs within tolerance");
}

#[test]
fn whole_space_of_the_forward_matches_the_reference() {
    let runs = check_whole_space(&["layernorm_f32", "layernorm_f16", "layernorm_bf16"]);
    println!("{runs} (kernel, config, problem) runs within tolerance");
}

/// `L(x, γ, β) = Σ w ⊙ LayerNorm(x; γ, β)` in f64.
fn loss(x: &[f64], weight: &[f64], bias: &[f64], w: &[f64], cols: usize) -> f64 {
    let mut total = 0.0;
    for (row, wr) in x.chunks(cols).zip(w.chunks(cols)) {
        let mu = row.iter().sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / cols as f64;
        let r = 1.0 / (var + EPS as f64).sqrt();
        for (c, (&v, &wv)) in row.iter().zip(wr).enumerate() {
            total += wv * ((v - mu) * r * weight[c] + bias[c]);
        }
    }
    total
}

/// The f32 kernels' gradients for dy = w: (dx, dγ, dβ), the forward kernel writing `mean`
/// and `rstd` first.
fn kernel_gradients(
    (x, weight, bias): (&[f32], &[f32], &[f32]),
    dy: &[f32],
    (rows, cols): (usize, usize),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let device = Device::cpu();
    let shape = Rows::padded(rows, cols);
    assert_eq!(shape.ld as usize, cols, "the test uses cols % 4 == 0");
    let up = |v: &[f32]| device.upload(v).unwrap();
    let (xb, wb, bb, dyb) = (up(x), up(weight), up(bias), up(dy));
    let zeros = |n: usize| -> Buffer<f32> { device.zeros(n).unwrap() };
    let (mut y, mut mean, mut rstd) = (zeros(rows * cols), zeros(rows), zeros(rows));
    let fwd = kernel("layernorm_f32").default_config();
    let outs = (&mut y, &mut mean, &mut rstd);
    launch_layernorm(&device, &fwd, (&xb, &wb, &bb), outs, shape, EPS).unwrap();
    let mut dx = zeros(rows * cols);
    let config = kernel("layernorm_bwd_f32").default_config();
    let stats = (&mean, &rstd);
    launch_layernorm_bwd(&device, &config, (&xb, &wb, &dyb), stats, &mut dx, shape).unwrap();
    let config = kernel("layernorm_dparams_f32").default_config();
    let n = chunks(&config, rows as u32) as usize * cols;
    let (mut pw, mut pb) = (zeros(n), zeros(n));
    let (mut dweight, mut dbias) = (zeros(cols), zeros(cols));
    let partials = Partials {
        weight: &mut pw,
        bias: &mut pb,
    };
    let grads = (&mut dweight, &mut dbias);
    launch_layernorm_dparams(&device, &config, (&xb, &dyb), stats, partials, grads, shape).unwrap();
    let down = |b: &Buffer<f32>| device.download(b).unwrap();
    (down(&dx), down(&dweight), down(&dbias))
}

/// Rows with an offset (so the mean matters) and a spread of scales.
fn data(rows: usize, cols: usize, salt: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Lcg::for_dims(&[rows, cols], salt);
    let x = (0..rows * cols)
        .map(|i| rng.float(2.0) * (1 + i / cols % 3) as f32 + (i / cols % 5) as f32 - 2.0)
        .collect();
    let weight = (0..cols).map(|_| 1.0 + rng.float(0.5)).collect();
    let bias = rng.floats(cols, 0.5);
    let dy = rng.floats(rows * cols, 1.0);
    (x, weight, bias, dy)
}

#[test]
fn gradients_match_central_differences() {
    let (rows, cols) = (70, 12);
    let (x, weight, bias, dy) = data(rows, cols, 1);
    let (dx, dweight, dbias) = kernel_gradients((&x, &weight, &bias), &dy, (rows, cols));
    let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (x64, w64, b64, dy64) = (wide(&x), wide(&weight), wide(&bias), wide(&dy));
    let h = 1e-6;
    let central = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    let mut worst = [0.0f64; 3];
    let mut check = |which: usize, name: &str, i: usize, got: f32, fd: f64| {
        let err = (got as f64 - fd).abs() / fd.abs().max(1.0);
        worst[which] = worst[which].max(err);
        assert!(err < 2e-5, "{name}[{i}]: kernel {got} vs {fd}");
    };
    for i in 0..rows * cols {
        let fd = central(&|d| {
            let mut p = x64.clone();
            p[i] += d;
            loss(&p, &w64, &b64, &dy64, cols)
        });
        check(0, "dx", i, dx[i], fd);
    }
    for c in 0..cols {
        let fd = central(&|d| {
            let mut p = w64.clone();
            p[c] += d;
            loss(&x64, &p, &b64, &dy64, cols)
        });
        check(1, "dγ", c, dweight[c], fd);
        let fd = central(&|d| {
            let mut p = b64.clone();
            p[c] += d;
            loss(&x64, &w64, &p, &dy64, cols)
        });
        check(2, "dβ", c, dbias[c], fd);
    }
    println!(
        "max relative |kernel − central difference|: dx {:.2e}, dγ {:.2e}, dβ {:.2e}",
        worst[0], worst[1], worst[2]
    );
}

/// No atomics: the parameter gradients (and dx) are the same bits every run.
#[test]
fn parameter_gradients_are_bit_reproducible() {
    let (rows, cols) = (257, 40);
    let (x, weight, bias, dy) = data(rows, cols, 2);
    let first = kernel_gradients((&x, &weight, &bias), &dy, (rows, cols));
    let second = kernel_gradients((&x, &weight, &bias), &dy, (rows, cols));
    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&first.0), bits(&second.0));
    assert_eq!(bits(&first.1), bits(&second.1));
    assert_eq!(bits(&first.2), bits(&second.2));
}

/// The default configs compile with NVRTC without spilling.
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&BACKWARD);
    compile_defaults(&["layernorm_f32", "layernorm_f16", "layernorm_bf16"]);
}
