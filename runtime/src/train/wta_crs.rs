//! WTA-CRS (Liu et al. 2023, seed-algorithms.md §8): an unbiased estimate of a linear
//! layer's weight gradient `∇W = Σᵢ gᵢ xᵢᵀ` over the batch's N token rows from k ≪ N of
//! them, so the forward saves k rows of the layer's input instead of N (`--wta-crs RATIO`,
//! off by default; the forward and `∇X = G·W` stay exact).
//!
//! Row i is drawn with probability `pᵢ ∝ ‖xᵢ‖` (the reference's rule when no gradient norms
//! are cached: ours are not, since the rows of consecutive packed batches are different
//! tokens). The "winners" C — the rows of largest pᵢ, as many as the adaptive rule below
//! picks — are kept exactly; the other `k − |C|` rows are drawn with replacement from the
//! residual distribution `pᵢ / (1 − P_C)` and weighted `(1 − P_C) / ((k − |C|)·pᵢ)`, which
//! makes the estimate unbiased. |C| is the `j < k` minimising `(1 − c_j) / (k − j)` over the
//! sorted cumulative probabilities `c_j`, when that minimum is at most `1/k`, else 0 (plain
//! CRS). At k = N every row but the smallest wins and the last draw has weight 1: exact.
//!
//! The plan is made on the host from the rows' norms; the kept rows are scaled by their
//! weights before they are saved (the backward gathers the same rows of G and runs the
//! weight-gradient GEMM over k rows).

/// The rows a layer's weight gradient is estimated from.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSample {
    /// Row indices into the batch (a row may repeat).
    pub rows: Vec<u32>,
    /// Each kept row's estimator weight (1 for winners).
    pub weights: Vec<f32>,
    /// How many of the rows (the first ones) are winners.
    pub winners: usize,
}

/// The number of rows kept for a batch of `n` rows at `ratio` (at least 1, at most `n`).
pub fn kept_rows(n: usize, ratio: f64) -> usize {
    ((n as f64 * ratio).ceil() as usize).clamp(1, n.max(1))
}

/// A small deterministic generator (SplitMix64), so a resumed run draws the same rows.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// WTA-CRS's plan for `k` rows from the per-row scores (`‖xᵢ‖`, or `‖xᵢ‖·‖gᵢ‖`).
pub fn plan(scores: &[f32], k: usize, rng: &mut SplitMix) -> RowSample {
    let n = scores.len();
    let k = k.clamp(1, n.max(1));
    // A small floor keeps all-zero rows drawable and the probabilities defined.
    let eps = 1e-8;
    let total: f64 = scores.iter().map(|&s| s as f64 + eps).sum();
    let p: Vec<f64> = scores.iter().map(|&s| (s as f64 + eps) / total).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let winners = winner_count(&order, &p, k);
    let mut rows: Vec<u32> = order[..winners].iter().map(|&i| i as u32).collect();
    let mut weights = vec![1.0f32; winners];
    let rest = &order[winners..];
    let p_c: f64 = order[..winners].iter().map(|&i| p[i]).sum();
    let residual: Vec<f64> = rest.iter().map(|&i| p[i]).collect();
    let draws = k - winners;
    let mass: f64 = residual.iter().sum();
    for _ in 0..draws {
        let i = rest[draw(&residual, mass, rng)];
        rows.push(i as u32);
        weights.push(((1.0 - p_c) / (draws as f64 * p[i])) as f32);
    }
    RowSample {
        rows,
        weights,
        winners,
    }
}

/// The adaptive |C| over rows sorted by falling probability.
fn winner_count(order: &[usize], p: &[f64], k: usize) -> usize {
    let mut best = (f64::INFINITY, 0);
    let mut cumulative = 0.0;
    for (j, &i) in order.iter().enumerate().take(k.saturating_sub(1)) {
        cumulative += p[i];
        let winners = j + 1;
        let value = (1.0 - cumulative).max(0.0) / (k - winners) as f64;
        // On ties the larger winner set: fewer random rows, less variance.
        if value <= best.0 {
            best = (value, winners);
        }
    }
    if best.0 <= 1.0 / k as f64 {
        best.1
    } else {
        0
    }
}

/// An index drawn with probability `w[i] / mass`.
fn draw(w: &[f64], mass: f64, rng: &mut SplitMix) -> usize {
    let mut target = rng.next_f64() * mass;
    for (i, &wi) in w.iter().enumerate() {
        if target < wi {
            return i;
        }
        target -= wi;
    }
    w.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Σ_t w_t g_{r_t} x_{r_t}ᵀ` for `g` (`n×m`) and `x` (`n×d`), row-major `m×d`.
    fn estimate(s: &RowSample, g: &[f64], x: &[f64], (m, d): (usize, usize)) -> Vec<f64> {
        let mut out = vec![0.0; m * d];
        for (&r, &w) in s.rows.iter().zip(&s.weights) {
            let r = r as usize;
            for a in 0..m {
                for b in 0..d {
                    out[a * d + b] += w as f64 * g[r * m + a] * x[r * d + b];
                }
            }
        }
        out
    }

    /// Skewed rows: a few large, many small (the regime WTA-CRS is for).
    fn data(n: usize, (m, d): (usize, usize)) -> (Vec<f64>, Vec<f64>, Vec<f32>) {
        let mut rng = SplitMix(11);
        let scale = |i: usize| {
            if i.is_multiple_of(7) {
                30.0
            } else {
                0.5 + (i % 3) as f64
            }
        };
        let g = (0..n * m).map(|_| rng.next_f64() - 0.5).collect();
        let x: Vec<f64> = (0..n * d)
            .map(|j| (rng.next_f64() - 0.5) * scale(j / d))
            .collect();
        let norms = (0..n)
            .map(|i| {
                x[i * d..(i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt() as f32
            })
            .collect();
        (g, x, norms)
    }

    fn exact(g: &[f64], x: &[f64], n: usize, dims: (usize, usize)) -> Vec<f64> {
        let all = RowSample {
            rows: (0..n as u32).collect(),
            weights: vec![1.0; n],
            winners: n,
        };
        estimate(&all, g, x, dims)
    }

    /// The mean of 10⁴ estimates is within 4 standard errors of the exact gradient in every
    /// entry, and WTA-CRS's variance is below plain CRS's on skewed rows.
    #[test]
    fn wta_crs_is_unbiased_and_beats_crs() {
        let (n, dims) = (40, (3, 4));
        let (g, x, norms) = data(n, dims);
        let want = exact(&g, &x, n, dims);
        let trials = 10_000;
        let k = 10;
        let mut rng = SplitMix(5);
        let (mut sum, mut sum_sq) = (vec![0.0; want.len()], vec![0.0; want.len()]);
        let mut winners = 0;
        for _ in 0..trials {
            let s = plan(&norms, k, &mut rng);
            assert_eq!(s.rows.len(), k);
            winners = s.winners;
            for (j, v) in estimate(&s, &g, &x, dims).into_iter().enumerate() {
                sum[j] += v;
                sum_sq[j] += v * v;
            }
        }
        assert!(winners > 0, "skewed rows should give winners");
        let mut wta_var = 0.0;
        for j in 0..want.len() {
            let mean = sum[j] / trials as f64;
            let var = sum_sq[j] / trials as f64 - mean * mean;
            wta_var += var;
            let se = (var / trials as f64).sqrt();
            assert!(
                (mean - want[j]).abs() <= 4.0 * se + 1e-9,
                "entry {j}: mean {mean} vs exact {}, standard error {se}",
                want[j]
            );
        }
        // Plain CRS: k draws with replacement from p, weight 1 / (k·p).
        let total: f64 = norms.iter().map(|&s| s as f64 + 1e-8).sum();
        let p: Vec<f64> = norms.iter().map(|&s| (s as f64 + 1e-8) / total).collect();
        let mut crs_var = 0.0;
        let (mut sum, mut sum_sq) = (vec![0.0; want.len()], vec![0.0; want.len()]);
        for _ in 0..trials {
            let rows: Vec<u32> = (0..k).map(|_| draw(&p, 1.0, &mut rng) as u32).collect();
            let weights = rows
                .iter()
                .map(|&r| (1.0 / (k as f64 * p[r as usize])) as f32)
                .collect();
            let s = RowSample {
                rows,
                weights,
                winners: 0,
            };
            for (j, v) in estimate(&s, &g, &x, dims).into_iter().enumerate() {
                sum[j] += v;
                sum_sq[j] += v * v;
            }
        }
        for j in 0..want.len() {
            let mean = sum[j] / trials as f64;
            crs_var += sum_sq[j] / trials as f64 - mean * mean;
        }
        assert!(
            wta_var < crs_var,
            "WTA-CRS variance {wta_var} vs CRS {crs_var}"
        );
    }

    /// At k = N the estimate is the exact gradient.
    #[test]
    fn all_rows_kept_is_exact() {
        let (n, dims) = (16, (2, 3));
        let (g, x, norms) = data(n, dims);
        let s = plan(&norms, n, &mut SplitMix(3));
        assert_eq!(s.winners, n - 1);
        let got = estimate(&s, &g, &x, dims);
        for (a, b) in got.iter().zip(exact(&g, &x, n, dims)) {
            assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn kept_rows_are_clamped() {
        assert_eq!(kept_rows(100, 0.25), 25);
        assert_eq!(kept_rows(10, 0.01), 1);
        assert_eq!(kept_rows(10, 2.0), 10);
    }
}
