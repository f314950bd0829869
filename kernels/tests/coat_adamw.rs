//! The FP8 AdamW step: the kernel against the host reference (bit for bit on the
//! interpreter), and the FP8 trajectory against f32 AdamW on a small least-squares problem.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::cell::RefCell;
use warpforge_dsl::{Config, Device};
use warpforge_kernels::fp8::coat::host::Fp8AdamW;
use warpforge_kernels::fp8::coat::reference::{self, AdamW, DreTensor};

/// min_w ½‖A w − b‖² / rows, A: [rows, n].
struct LeastSquares {
    a: Vec<f32>,
    b: Vec<f32>,
    rows: usize,
    n: usize,
}

impl LeastSquares {
    fn new(rows: usize, n: usize, seed: u64) -> LeastSquares {
        let mut rng = StdRng::seed_from_u64(seed);
        let a: Vec<f32> = (0..rows * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let truth: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b = (0..rows)
            .map(|r| (0..n).map(|j| a[r * n + j] * truth[j]).sum::<f32>())
            .collect();
        LeastSquares { a, b, rows, n }
    }

    fn residual(&self, w: &[f32]) -> Vec<f64> {
        (0..self.rows)
            .map(|r| {
                let row = &self.a[r * self.n..(r + 1) * self.n];
                row.iter()
                    .zip(w)
                    .map(|(a, w)| (*a * *w) as f64)
                    .sum::<f64>()
                    - self.b[r] as f64
            })
            .collect()
    }

    fn loss(&self, w: &[f32]) -> f64 {
        let r = self.residual(w);
        0.5 * r.iter().map(|e| e * e).sum::<f64>() / self.rows as f64
    }

    fn grad(&self, w: &[f32]) -> Vec<f32> {
        let r = self.residual(w);
        (0..self.n)
            .map(|j| {
                let s: f64 = (0..self.rows)
                    .map(|i| self.a[i * self.n + j] as f64 * r[i])
                    .sum();
                (s / self.rows as f64) as f32
            })
            .collect()
    }
}

fn hyper() -> AdamW {
    AdamW {
        lr: 1e-2,
        ..AdamW::default()
    }
}

#[test]
fn kernel_matches_the_reference_step_for_step() {
    // 300 parameters: two full groups and a partial one (44 elements).
    let p = LeastSquares::new(64, 300, 1);
    let device = Device::cpu();
    let w0 = vec![0.0f32; p.n];
    let mut opt = Fp8AdamW::new(&device, hyper(), &w0).unwrap();
    let (mut w, mut m, mut v) = (w0.clone(), DreTensor::zeros(p.n), DreTensor::zeros(p.n));
    for t in 1..=5 {
        let g = p.grad(&w);
        opt.step(&device, &Config::default(), &g).unwrap();
        hyper().step_fp8(&mut w, &g, &mut m, &mut v, t);
        assert_eq!(opt.weights(&device).unwrap(), w, "weights after step {t}");
        assert_eq!(
            opt.moments(&device).unwrap(),
            (m.clone(), v.clone()),
            "step {t}"
        );
    }
}

/// How far a trajectory with FP8 moments strays from f32 AdamW over 200 steps:
/// (max over steps of max |Δw| / max |w|, of |Δloss| / loss, final losses f32 and FP8).
fn tracking(p: &LeastSquares, fp8_step: impl Fn(&mut [f32], &[f32], u32)) -> [f64; 4] {
    let h = hyper();
    let (mut w32, mut m32, mut v32) = (vec![0.0f32; p.n], vec![0.0; p.n], vec![0.0; p.n]);
    let mut w8 = w32.clone();
    let (mut max_w, mut max_loss) = (0.0f64, 0.0f64);
    for t in 1..=200 {
        let (g32, g8) = (p.grad(&w32), p.grad(&w8));
        h.step_f32(&mut w32, &g32, &mut m32, &mut v32, t);
        fp8_step(&mut w8, &g8, t);
        let wmax = w32.iter().map(|x| (*x as f64).abs()).fold(0.0, f64::max);
        let dw = w32
            .iter()
            .zip(&w8)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .fold(0.0, f64::max);
        max_w = max_w.max(dw / wmax);
        let (l32, l8) = (p.loss(&w32), p.loss(&w8));
        max_loss = max_loss.max((l8 - l32).abs() / l32);
    }
    [max_w, max_loss, p.loss(&w32), p.loss(&w8)]
}

#[test]
fn fp8_adamw_tracks_f32_adamw() {
    // Over-determined (640 equations, 320 unknowns) so both runs head for one minimum.
    let p = LeastSquares::new(640, 320, 2);
    let h = hyper();
    let (m, v) = (
        RefCell::new(DreTensor::zeros(p.n)),
        RefCell::new(DreTensor::zeros(p.n)),
    );
    let dre = tracking(&p, |w, g, t| {
        h.step_fp8(w, g, &mut m.borrow_mut(), &mut v.borrow_mut(), t)
    });
    // The same with plain per-group (1x128, amax/448) E4M3 moments, for comparison.
    let (m, v) = (RefCell::new(vec![0.0; p.n]), RefCell::new(vec![0.0; p.n]));
    let plain = tracking(&p, |w, g, t| {
        let (mut m, mut v) = (m.borrow_mut(), v.borrow_mut());
        h.step_f32(w, g, &mut m, &mut v, t);
        *m = reference::per_group_round_trip(&m);
        *v = reference::per_group_round_trip(&v);
    });
    let l0 = p.loss(&vec![0.0; p.n]);
    for (name, r) in [("DRE", dre), ("per-group", plain)] {
        eprintln!(
            "{name:>9} moments, 200 steps: loss {l0:.3e} -> f32 {:.3e}, fp8 {:.3e}; max over \
             steps: max|dw|/max|w| {:.3e}, |dloss|/loss {:.3e}",
            r[2], r[3], r[0], r[1]
        );
    }
    assert!(
        dre[2] < 0.01 * l0,
        "f32 AdamW did not converge: {l0} -> {}",
        dre[2]
    );
    assert!(
        dre[3] < 0.01 * l0,
        "FP8 AdamW did not converge: {l0} -> {}",
        dre[3]
    );
    assert!(dre[0] < 0.15, "weights drift: {}", dre[0]);
    assert!(dre[1] < 0.5, "loss drift: {}", dre[1]);
    assert!(
        dre[0] < plain[0],
        "DRE should track better than plain per-group moments"
    );
}
