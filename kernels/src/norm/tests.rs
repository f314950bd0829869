//! The references against hand-computed values, and every instance on the interpreter at
//! its default config (the library test covers the whole space).

use super::host::{launch_rmsnorm, layernorm_reference, rmsnorm_reference, Rows};
use crate::find;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::Device;

#[test]
fn rmsnorm_reference_matches_a_hand_computed_row() {
    // mean(x²) = (9 + 16) / 2 = 12.5, eps = 0: y = x / sqrt(12.5) · γ.
    let out = rmsnorm_reference::<f32>(&[3.0, -4.0], &[1.0, 0.5], 2, 0.0);
    let r = 1.0 / 12.5f64.sqrt();
    assert_eq!(out.rstd, vec![r as f32]);
    assert_eq!(out.y, vec![(3.0 * r) as f32, (-4.0 * r * 0.5) as f32]);
    assert!(out.mean.is_empty());
}

#[test]
fn rmsnorm_reference_rounds_the_normalized_value_before_the_weight() {
    // x = [3, 2], γ = 1.25, eps = 0: x₀·r = 3/sqrt(6.5) = 1.1767 rounds to the bf16 1.1796875,
    // times 1.25 = 1.474609375, rounded: 1.4765625 (Hugging Face's order). Rounding only
    // the product 1.25·x₀·r = 1.4709 would give 1.46875 instead.
    let out = rmsnorm_reference::<bf16>(&[3.0, 2.0], &[1.25, 1.25], 2, 0.0);
    assert_eq!(out.y[0], 1.4765625);
    let r = 1.0 / 6.5f64.sqrt();
    assert_eq!(bf16::from_f32((1.25 * 3.0 * r) as f32).to_f32(), 1.46875);
}

#[test]
fn layernorm_reference_matches_a_hand_computed_row() {
    // x = [1, 2, 3, 6]: μ = 3, σ² = (4 + 1 + 0 + 9) / 4 = 3.5.
    let out = layernorm_reference::<f32>(&[1.0, 2.0, 3.0, 6.0], (&[2.0; 4], &[0.25; 4]), 4, 0.0);
    let r = 1.0 / 3.5f64.sqrt();
    assert_eq!(out.mean, vec![3.0]);
    assert_eq!(out.rstd, vec![r as f32]);
    let want: Vec<f32> = [1.0, 2.0, 3.0, 6.0]
        .iter()
        .map(|v: &f64| ((v - 3.0) * r * 2.0 + 0.25) as f32)
        .collect();
    assert_eq!(out.y, want);
    // A single value normalizes to 0: y = β.
    let one = layernorm_reference::<f16>(&[5.0], (&[3.0], &[0.5]), 1, 1e-5);
    assert_eq!(one.y, vec![0.5]);
}

#[test]
fn every_instance_passes_its_problems_at_its_default_config() {
    let cpu = Device::cpu();
    for t in ["f32", "f16", "bf16"] {
        for kind in ["rmsnorm", "layernorm"] {
            let k = find(&format!("{kind}_{t}")).expect("registered");
            for problem in k.problems() {
                let report = k.check(&cpu, &k.default_config(), &problem).unwrap();
                assert!(report.passed(), "{} {report}", k.name());
            }
        }
    }
}

#[test]
fn a_wrong_statistic_would_be_caught() {
    // f32: the tolerance sees a 1e-4 relative error in one row's rstd; bf16 (whose
    // tolerance allows two ulps, 2^-6 relative to max(1, |y|)) an error of 0.05 in one
    // output.
    for (name, at_rstd, error) in [("rmsnorm_f32", true, 1e-4), ("layernorm_bf16", false, 0.05)] {
        let k = find(name).unwrap();
        let problem = k.problems().remove(3);
        let got = k
            .output(&Device::cpu(), &k.default_config(), &problem)
            .unwrap();
        let (rows, cols) = (problem.dims[0], problem.dims[1]);
        let mut wrong = got.clone();
        let at = if at_rstd { rows * cols } else { cols + 1 };
        wrong[at] += error * wrong[at].abs().max(1.0);
        let expected = k.expected(&problem);
        let tol = k.tolerance(&problem);
        assert!(
            crate::check::compare(&problem, &got, &expected, tol).passed(),
            "{name}"
        );
        assert!(
            !crate::check::compare(&problem, &wrong, &expected, tol).passed(),
            "{name}"
        );
    }
}

#[test]
fn padding_is_never_read_and_written_as_zero() {
    // 2 rows of 5 values, 8 apart: NaN in the padding of x and γ must not reach a sum, and
    // the padding of y must come back as 0.
    let cpu = Device::cpu();
    let nan = f16::from_f32(f32::NAN);
    let mut x = vec![nan; 16];
    for (i, v) in [1.0, -2.0, 3.0, 0.5, 4.0].iter().enumerate() {
        x[i] = f16::from_f32(*v);
        x[8 + i] = f16::from_f32(-v);
    }
    let mut weight = vec![nan; 8];
    weight[..5].fill(f16::from_f32(1.0));
    let (dx, dw) = (cpu.upload(&x).unwrap(), cpu.upload(&weight).unwrap());
    let (mut y, mut rstd) = (
        cpu.upload(&[nan; 16]).unwrap(),
        cpu.zeros::<f32>(2).unwrap(),
    );
    let k = find("rmsnorm_f16").unwrap();
    let shape = Rows {
        rows: 2,
        cols: 5,
        ld: 8,
    };
    launch_rmsnorm(
        &cpu,
        &k.default_config(),
        (&dx, &dw),
        (&mut y, &mut rstd),
        shape,
        1e-5,
    )
    .unwrap();
    let y: Vec<f32> = cpu
        .download(&y)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    let rstd = cpu.download(&rstd).unwrap();
    assert!(rstd.iter().all(|r| r.is_finite()), "{rstd:?}");
    for row in y.chunks(8) {
        assert!(
            row[..5].iter().all(|v| v.is_finite() && *v != 0.0),
            "{row:?}"
        );
        assert_eq!(&row[5..], &[0.0; 3], "padding");
    }
    assert_eq!(y[0], -y[8], "the second row is the first negated");
}
