//! RMSNorm backward (`rmsnorm_bwd_{T}`, `rmsnorm_dweight_{T}`, `column_sum`) on the CPU
//! interpreter: every config at the family's check problems, `dx` and `dγ` of the f32
//! instances (after the forward kernel wrote `rstd`) against central finite differences of
//! the f64 forward, the weight gradient bit-identical run to run, and NVRTC compiles of the
//! default configs.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve, Buffer, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::norm::backward::{chunks, launch_rmsnorm_bwd, launch_rmsnorm_dweight};
use warpforge::kernels::norm::host::{launch_rmsnorm, Rows};
use warpforge::kernels::{find, Kernel};

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

fn kernel(name: &str) -> Kernel {
    find(name).unwrap_or_else(|| panic!("{name} is not registered"))
}

#[test]
fn whole_space_of_every_instance_matches_the_reference() {
    let device = Device::cpu();
    let mut runs = 0;
    for name in NAMES {
        let k = kernel(name);
        for problem in k.problems() {
            for config in k.configs() {
                let report = k.check(&device, &config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report}",
                    problem.name
                );
                runs += 1;
            }
        }
    }
    println!("{runs} (instance, config, problem) runs within tolerance");
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

/// The default config of each instance compiles with NVRTC for sm_80 and sm_90 without
/// spilling (skipped, saying why, without NVRTC).
#[test]
fn default_configs_compile_with_nvrtc() {
    if let Err(e) = nvrtc::version() {
        assert!(
            std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_none(),
            "NVRTC required: {e}"
        );
        eprintln!("SKIPPED: NVRTC not found, compile test not run: {e}");
        return;
    }
    for name in NAMES {
        let k = kernel(name);
        let typed = resolve::specialize(k.def(), &k.default_config()).unwrap();
        let source = codegen::cuda_source(&typed);
        for arch in [Arch::SM80, Arch::SM90] {
            let c = nvrtc::compile_cached(&source, arch, &CompileOptions::default()).unwrap();
            let r = &c.resources;
            println!(
                "{name} {arch}: {} registers, {} B shared",
                r.registers, r.shared_bytes
            );
            assert_eq!(
                (r.spill_stores_bytes, r.spill_loads_bytes),
                (0, 0),
                "{name} spills"
            );
        }
    }
}
