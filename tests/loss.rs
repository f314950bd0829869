//! The fused softmax cross-entropy (`cross_entropy_{f32,f16,bf16}`) on the CPU interpreter:
//! every config of every instance at the family's check problems, a hand-computed row, the
//! mean loss's gradient scale and its errors, the gradient against central finite
//! differences of the f64 loss, a 32000-word vocabulary, and NVRTC compiles of the defaults.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Config, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::loss::host::{
    cross_entropy_reference, launch_cross_entropy, mean_grad_scale, Logits, LossFloat, TargetError,
    IGNORE_INDEX,
};
use warpforge::prelude::{bf16, f16};

const NAMES: [&str; 3] = [
    "cross_entropy_f32",
    "cross_entropy_f16",
    "cross_entropy_bf16",
];

/// Runs the default config on dense logits (`cols` a multiple of 4): (loss, dlogits).
fn run<T: LossFloat>(
    x: &[f32],
    targets: &[i32],
    cols: usize,
    grad_scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let device = Device::cpu();
    let rows = targets.len();
    let logits: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let logits = device.upload(&logits).unwrap();
    let targets_buf = device.upload(targets).unwrap();
    let mut loss: Buffer<f32> = device.zeros(rows).unwrap();
    let mut dlogits: Buffer<T> = device.zeros(rows * cols).unwrap();
    let config = kernel(T::CROSS_ENTROPY().name.as_str()).default_config();
    let shape = Logits {
        rows: rows as u32,
        cols: cols as u32,
        ld: cols as u32,
    };
    launch_cross_entropy(
        &device,
        &config,
        (&logits, &targets_buf),
        (&mut loss, &mut dlogits),
        shape,
        (IGNORE_INDEX, grad_scale),
    )
    .unwrap();
    let d = device.download(&dlogits).unwrap();
    (
        device.download(&loss).unwrap(),
        d.into_iter().map(|v| v.to_f32()).collect(),
    )
}

#[test]
fn whole_space_of_every_instance_matches_the_reference() {
    let runs = check_whole_space(&NAMES);
    println!("{runs} (kernel, config, problem) runs within tolerance");
}

/// Logits (0, ln 3, −∞-ish padding excluded by cols = 2 in a 4-wide row) with target 0:
/// softmax (1/4, 3/4), loss ln 4, gradient (−3/4, 3/4); an ignored row is all zeros.
#[test]
fn hand_computed_row_and_an_ignored_row() {
    let device = Device::cpu();
    let x = [0.0f32, 3f32.ln(), f32::NAN, f32::NAN, 5.0, 1.0, 2.0, 3.0];
    let logits = device.upload(&x).unwrap();
    let targets = device.upload(&[0i32, IGNORE_INDEX]).unwrap();
    let mut loss: Buffer<f32> = device.zeros(2).unwrap();
    let mut dlogits: Buffer<f32> = device.upload(&[f32::NAN; 8]).unwrap();
    for block in [128, 1024] {
        let config = Config::new().with("BLOCK", block);
        let shape = Logits {
            rows: 2,
            cols: 2,
            ld: 4,
        };
        launch_cross_entropy(
            &device,
            &config,
            (&logits, &targets),
            (&mut loss, &mut dlogits),
            shape,
            (IGNORE_INDEX, 1.0),
        )
        .unwrap();
        let l = device.download(&loss).unwrap();
        let d = device.download(&dlogits).unwrap();
        assert!((l[0] - 4f32.ln()).abs() < 1e-6, "{l:?}");
        assert_eq!(l[1], 0.0);
        assert!(
            (d[0] + 0.75).abs() < 1e-6 && (d[1] - 0.75).abs() < 1e-6,
            "{d:?}"
        );
        assert_eq!(
            &d[2..],
            &[0.0; 6],
            "padding lanes and the ignored row are zero"
        );
    }
}

#[test]
fn mean_grad_scale_counts_the_targets_and_refuses_bad_ones() {
    assert_eq!(
        mean_grad_scale(&[1, IGNORE_INDEX, 3, 0], 4, IGNORE_INDEX, 1.5),
        Ok(0.5)
    );
    let err = mean_grad_scale(&[1, 4], 4, IGNORE_INDEX, 1.0).unwrap_err();
    assert_eq!(
        err,
        TargetError::OutOfRange {
            row: 1,
            target: 4,
            vocab: 4,
            ignore_index: IGNORE_INDEX
        }
    );
    assert!(err.to_string().contains("outside the vocabulary"));
    assert_eq!(
        mean_grad_scale(&[IGNORE_INDEX; 3], 4, IGNORE_INDEX, 1.0),
        Err(TargetError::AllIgnored(IGNORE_INDEX))
    );
}

/// The mean loss `L(x) = Σ_r loss_r / N` in f64.
fn mean_loss(x: &[f32], targets: &[i32], cols: usize, n: f64) -> f64 {
    let r = cross_entropy_reference(x, targets, cols, (IGNORE_INDEX, 1.0));
    r.loss.iter().sum::<f64>() / n
}

/// The kernel's f32 gradient of the mean loss against central differences of the f64 loss
/// (h = 2^-10 on logits that are exact in f32 either side), and its loss against the f64
/// reference.
#[test]
fn gradient_matches_central_differences() {
    let (rows, cols) = (5, 36);
    let mut rng = Lcg::for_dims(&[rows, cols], 3);
    let x = rng.floats(rows * cols, 4.0);
    let targets = vec![3, IGNORE_INDEX, 35, 0, 17];
    let scale = mean_grad_scale(&targets, cols, IGNORE_INDEX, 1.0).unwrap();
    let (loss, grad) = run::<f32>(&x, &targets, cols, scale);
    let reference = cross_entropy_reference(&x, &targets, cols, (IGNORE_INDEX, 1.0));
    for (got, want) in loss.iter().zip(&reference.loss) {
        assert!(
            (*got as f64 - want).abs() < 4e-6 * want.max(1.0),
            "{got} vs {want}"
        );
    }
    let h = 1.0 / 1024.0;
    let mut worst = 0.0f64;
    for i in 0..rows * cols {
        let mut plus = x.clone();
        let mut minus = x.clone();
        plus[i] += h;
        minus[i] -= h;
        let fd = (mean_loss(&plus, &targets, cols, 4.0) - mean_loss(&minus, &targets, cols, 4.0))
            / (2.0 * h as f64);
        let err = (grad[i] as f64 - fd).abs();
        worst = worst.max(err);
        assert!(
            err < 1e-6,
            "logit {i}: kernel {} vs central difference {fd}",
            grad[i]
        );
    }
    println!("max |kernel − central difference| = {worst:.2e}");
}

/// A Llama-2-sized vocabulary on the default config: the gradient element-wise within one
/// ulp of `T` (plus the f32 softmax error) of the f64 reference, the loss within 1e-5.
#[test]
fn vocabulary_of_32000_matches_element_wise() {
    fn check<T: LossFloat>() {
        let (rows, cols) = (2, 32000);
        let mut rng = Lcg::for_dims(&[rows, cols], 5);
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| T::from_f32(rng.float(10.0)).to_f32())
            .collect();
        let targets = [31999, 7];
        let scale = mean_grad_scale(&targets, cols, IGNORE_INDEX, 1.0).unwrap();
        let (loss, grad) = run::<T>(&x, &targets, cols, scale);
        let r = cross_entropy_reference(&x, &targets, cols, (IGNORE_INDEX, scale as f64));
        for (got, want) in loss.iter().zip(&r.loss) {
            assert!(
                (*got as f64 - want).abs() < 1e-5 * want.max(1.0),
                "{got} vs {want}"
            );
        }
        for (i, (&got, &want)) in grad.iter().zip(&r.dlogits).enumerate() {
            // Against the reference rounded to T (values below T's subnormals flush alike).
            let rounded = T::from_f32(want as f32).to_f32() as f64;
            let bound = want.abs() * (T::ULP + 1e-4);
            assert!(
                (got as f64 - rounded).abs() <= bound,
                "{} logit {i}: {got} vs {want}",
                T::CROSS_ENTROPY().name
            );
        }
    }
    check::<f32>();
    check::<bf16>();
    check::<f16>();
}

/// The default configs compile with NVRTC without spilling (see [`compile_defaults`]).
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&NAMES);
}
