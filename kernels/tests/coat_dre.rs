//! COAT dynamic range expansion: the kernels against the host reference (bit for bit on the
//! interpreter), the edge cases, and the round-trip error against plain per-group scaling on
//! optimizer-state-like distributions.

use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::fp8::coat::{host, reference};

fn cpu() -> Device {
    Device::cpu()
}

/// Groups exercising every edge case, then a partial last group.
fn edge_input() -> Vec<f32> {
    let mut x = vec![0.0f32; 128]; // all-zero group
    x.extend(std::iter::repeat_n(0.25f32, 128)); // max == min
    let mut one = vec![0.0f32; 128]; // a single non-zero
    one[77] = -3.5e-6;
    x.extend(one);
    // zeros inside, both signs, 3 decades
    x.extend((0..128).map(|i| {
        if i % 5 == 0 {
            0.0
        } else {
            (if i % 2 == 0 { 1.0 } else { -1.0 }) * 10f32.powf(-(i % 30) as f32 / 10.0)
        }
    }));
    x.extend((0..37).map(|i| 1e-3 * (i as f32 + 1.0))); // partial last group
    x
}

#[test]
fn quantize_matches_the_reference_bit_for_bit() {
    let x = edge_input();
    let got = host::dre_quantize(&cpu(), &Config::default(), &x).unwrap();
    let want = reference::quantize(&x);
    assert_eq!(got, want);
    // Edge-case parameters.
    assert_eq!(&want.meta[0..3], &[0.0, 1.0, 1.0], "all-zero group");
    assert_eq!(want.meta[4], 1.0, "max == min gives k = 1");
    assert_eq!(want.meta[7], 1.0, "a single non-zero gives k = 1");
    assert!(
        want.meta[10] > 1.5,
        "3 decades still expand: k = {}",
        want.meta[10]
    );
}

#[test]
fn dequantize_matches_the_reference_and_keeps_zeros() {
    let x = edge_input();
    let q = reference::quantize(&x);
    let got = host::dre_dequantize(&cpu(), &Config::default(), &q).unwrap();
    let want = reference::dequantize(&q);
    assert_eq!(got, want);
    for (i, (&y, &v)) in want.iter().zip(&x).enumerate() {
        if v == 0.0 {
            assert_eq!(y, 0.0, "zero at {i} came back as {y}");
        } else {
            // COAT's target range reaches E4M3's subnormals (steps of 2^-9 at 2^-7.8):
            // up to ~22% error there before the 1/k root shrinks it.
            let k = q.meta[i / 128 * 3 + 1];
            let rel = ((y - v) / v).abs();
            assert!(
                rel < 0.25 / k,
                "element {i}: {v} came back as {y} (rel {rel}, k {k})"
            );
        }
    }
    // max == min and a single non-zero round-trip exactly (their value is the scale).
    assert!(want[128..256]
        .iter()
        .all(|&y| (y - 0.25).abs() <= 0.25 * 1e-6));
    assert!((want[256 + 77] + 3.5e-6).abs() <= 3.5e-6 * 1e-6);
}

#[test]
fn every_block_size_gives_the_same_codes() {
    let x = edge_input();
    let want = reference::quantize(&x);
    for block in [64, 128, 256] {
        let c = Config::default().with("BLOCK", block);
        assert_eq!(
            host::dre_quantize(&cpu(), &c, &x).unwrap(),
            want,
            "BLOCK={block}"
        );
    }
}

#[test]
fn single_element_and_empty_tail() {
    for x in [vec![-0.5f32], vec![0.0], vec![1e-30, 0.0, 2e-30]] {
        let q = host::dre_quantize(&cpu(), &Config::default(), &x).unwrap();
        assert_eq!(q, reference::quantize(&x));
        let y = host::dre_dequantize(&cpu(), &Config::default(), &q).unwrap();
        for (a, b) in y.iter().zip(&x) {
            assert!((a - b).abs() <= b.abs() * 0.25, "{x:?} -> {y:?}");
        }
    }
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn mean_rel_error(x: &[f32], y: &[f32]) -> f64 {
    let nz: Vec<_> = x.iter().zip(y).filter(|(a, _)| **a != 0.0).collect();
    nz.iter()
        .map(|(a, b)| ((**b - **a) / **a).abs() as f64)
        .sum::<f64>()
        / nz.len() as f64
}

/// Adam's first moment: roughly normal, small magnitudes, a per-group scale.
fn first_moment(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let scale = 10f32.powf(-3.0 - (i / 128 % 4) as f32 * 0.5);
            normal(rng) * scale
        })
        .collect()
}

/// Adam's second moment: an EMA of squared gradients: log-normal, many decades.
fn second_moment(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let g = normal(rng) * 1e-3 * (1.5 * normal(rng)).exp();
            g * g * rng.random_range(0.5f32..1.5)
        })
        .collect()
}

/// (DRE mean relative error, per-group mean relative error).
fn errors(x: &[f32]) -> (f64, f64) {
    let dre = reference::dequantize(&reference::quantize(x));
    let plain = reference::per_group_round_trip(x);
    (mean_rel_error(x, &dre), mean_rel_error(x, &plain))
}

#[test]
fn dre_beats_per_group_scaling_on_optimizer_states() {
    let mut rng = StdRng::seed_from_u64(6);
    let n = 128 * 64;
    let (d1, p1) = errors(&first_moment(n, &mut rng));
    let (d2, p2) = errors(&second_moment(n, &mut rng));
    eprintln!(
        "first moment:  DRE {d1:.4e}, per-group {p1:.4e}, ratio per-group/DRE {:.2}",
        p1 / d1
    );
    eprintln!(
        "second moment: DRE {d2:.4e}, per-group {p2:.4e}, ratio per-group/DRE {:.2}",
        p2 / d2
    );
    assert!(d1 < p1, "first moment: DRE {d1} vs per-group {p1}");
    assert!(p2 > 2.0 * d2, "second moment: DRE {d2} vs per-group {p2}");
    // The kernel agrees with the reference on these too.
    let x = second_moment(1000, &mut rng);
    let got = host::dre_quantize(&cpu(), &Config::default(), &x).unwrap();
    assert_eq!(got, reference::quantize(&x));
}
