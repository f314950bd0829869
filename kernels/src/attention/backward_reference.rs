//! The host reference of the attention backward: naive attention in f64 (with the sliding
//! window the kernels take) and its exact gradients, checked against central finite
//! differences.

use super::reference::{AttnOutput, AttnShape};
use warpforge_dsl::prelude::Float;

/// dQ `[total_q, heads, d]`, dK and dV `[total_k, kv_heads, d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnGrads {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

/// Whether row `i` of sequence `b` sees key `j`: [`AttnShape::visible`], and with a causal
/// sliding window `w` only the last `w` keys up to the diagonal (`i + offset − j < w`).
pub fn visible_windowed(
    shape: &AttnShape,
    window: Option<u32>,
    b: usize,
    i: usize,
    j: usize,
) -> bool {
    let offset = shape.k_lens[b] as i64 - shape.q_lens[b] as i64;
    let in_window = match (shape.causal, window) {
        (true, Some(w)) => i as i64 + offset - (j as i64) < w as i64,
        _ => true,
    };
    shape.visible(b, i, j) && in_window
}

/// The visible keys of one (sequence, head, row) with their softmax probabilities.
fn probabilities(
    shape: &AttnShape,
    window: Option<u32>,
    (b, h, i): (usize, usize, usize),
    (q, k): (&[f64], &[f64]),
    scale: f64,
) -> (Vec<(usize, f64)>, f64) {
    let (h_n, kv_n, d) = (shape.heads, shape.kv_heads, shape.head_dim);
    let (q0, k0) = (
        shape.cu_seqlens_q()[b] as usize,
        shape.cu_seqlens_k()[b] as usize,
    );
    let kvh = h / (h_n / kv_n);
    let qrow = &q[((q0 + i) * h_n + h) * d..][..d];
    let scores: Vec<(usize, f64)> = (0..shape.k_lens[b])
        .filter(|&j| visible_windowed(shape, window, b, i, j))
        .map(|j| {
            let krow = &k[((k0 + j) * kv_n + kvh) * d..][..d];
            (
                j,
                scale * qrow.iter().zip(krow).map(|(a, c)| a * c).sum::<f64>(),
            )
        })
        .collect();
    let max = scores.iter().fold(f64::NEG_INFINITY, |m, s| m.max(s.1));
    let sum: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
    let lse = if scores.is_empty() {
        f64::NEG_INFINITY
    } else {
        max + sum.ln()
    };
    (
        scores
            .into_iter()
            .map(|(j, s)| (j, (s - lse).exp()))
            .collect(),
        lse,
    )
}

/// Every (sequence, head, row) of the shape.
fn rows(shape: &AttnShape) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..shape.sequences()).flat_map(move |b| {
        (0..shape.heads).flat_map(move |h| (0..shape.q_lens[b]).map(move |i| (b, h, i)))
    })
}

/// Attention forward in f64 on f64 inputs (layouts as the kernels'): O and LSE, O = 0 and
/// LSE = −∞ for a row that sees no key.
pub fn forward_f64(
    shape: &AttnShape,
    window: Option<u32>,
    (q, k, v): (&[f64], &[f64], &[f64]),
    scale: f64,
) -> AttnOutput {
    let (h_n, kv_n, d, total_q) = (shape.heads, shape.kv_heads, shape.head_dim, shape.total_q());
    let mut out = AttnOutput {
        o: vec![0.0; total_q * h_n * d],
        lse: vec![f64::NEG_INFINITY; h_n * total_q],
    };
    let (cu_q, cu_k) = (shape.cu_seqlens_q(), shape.cu_seqlens_k());
    for (b, h, i) in rows(shape) {
        let (p, lse) = probabilities(shape, window, (b, h, i), (q, k), scale);
        let row = cu_q[b] as usize + i;
        out.lse[h * total_q + row] = lse;
        let orow = &mut out.o[(row * h_n + h) * d..][..d];
        for (j, pj) in p {
            let vrow = &v[((cu_k[b] as usize + j) * kv_n + h / (h_n / kv_n)) * d..][..d];
            orow.iter_mut().zip(vrow).for_each(|(o, x)| *o += pj * x);
        }
    }
    out
}

/// The exact gradients of `Σ dO∘O` (O = [`forward_f64`]) with respect to Q, K and V: per row
/// P recomputed, dP = dO·Vᵀ, D = Σ P∘dP, dS = P∘(dP − D), dQ = scale·dS·K, dK += scale·dSᵀ·Q,
/// dV += Pᵀ·dO (GQA: a KV head sums over its query heads).
pub fn backward_f64(
    shape: &AttnShape,
    window: Option<u32>,
    (q, k, v): (&[f64], &[f64], &[f64]),
    d_o: &[f64],
    scale: f64,
) -> AttnGrads {
    let (h_n, kv_n, d) = (shape.heads, shape.kv_heads, shape.head_dim);
    let mut g = AttnGrads {
        dq: vec![0.0; q.len()],
        dk: vec![0.0; k.len()],
        dv: vec![0.0; v.len()],
    };
    let (cu_q, cu_k) = (shape.cu_seqlens_q(), shape.cu_seqlens_k());
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for (b, h, i) in rows(shape) {
        let (p, _) = probabilities(shape, window, (b, h, i), (q, k), scale);
        let qi = ((cu_q[b] as usize + i) * h_n + h) * d;
        let kv_row = |j: usize| ((cu_k[b] as usize + j) * kv_n + h / (h_n / kv_n)) * d;
        let dp: Vec<f64> = p
            .iter()
            .map(|&(j, _)| dot(&d_o[qi..][..d], &v[kv_row(j)..][..d]))
            .collect();
        let dd: f64 = p.iter().zip(&dp).map(|(&(_, pj), dpj)| pj * dpj).sum();
        for (&(j, pj), dpj) in p.iter().zip(&dp) {
            let ds = pj * (dpj - dd);
            let kj = kv_row(j);
            for c in 0..d {
                g.dq[qi + c] += scale * ds * k[kj + c];
                g.dk[kj + c] += scale * ds * q[qi + c];
                g.dv[kj + c] += pj * d_o[qi + c];
            }
        }
    }
    g
}

/// [`backward_f64`] on inputs in T (f16/bf16 widened exactly).
pub fn backward_reference<T: Float>(
    shape: &AttnShape,
    window: Option<u32>,
    (q, k, v): (&[T], &[T], &[T]),
    d_o: &[T],
    scale: f32,
) -> AttnGrads {
    let f = |x: &[T]| x.iter().map(|v| v.to_f32() as f64).collect::<Vec<f64>>();
    backward_f64(shape, window, (&f(q), &f(k), &f(v)), &f(d_o), scale as f64)
}

/// [`forward_f64`] on inputs in T.
pub fn forward_reference<T: Float>(
    shape: &AttnShape,
    window: Option<u32>,
    (q, k, v): (&[T], &[T], &[T]),
    scale: f32,
) -> AttnOutput {
    let f = |x: &[T]| x.iter().map(|v| v.to_f32() as f64).collect::<Vec<f64>>();
    forward_f64(shape, window, (&f(q), &f(k), &f(v)), scale as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn tiny(heads: usize, kv_heads: usize, causal: bool, q: &[usize], k: &[usize]) -> AttnShape {
        AttnShape {
            heads,
            kv_heads,
            head_dim: 3,
            causal,
            q_lens: q.to_vec(),
            k_lens: k.to_vec(),
        }
    }

    /// The loss Σ dO∘O as a function of Q, K, V.
    fn loss(s: &AttnShape, w: Option<u32>, qkv: (&[f64], &[f64], &[f64]), d_o: &[f64]) -> f64 {
        let o = forward_f64(s, w, qkv, 0.7).o;
        o.iter().zip(d_o).map(|(a, b)| a * b).sum()
    }

    /// Central finite differences (h = 1e-5) of every input element against the analytic
    /// gradients, on varlen (lengths 1, 2, 4; a prefix longer than the chunk; k_len < q_len
    /// with a fully masked row), causal and not, windowed, GQA 2:1 and MHA.
    #[test]
    fn gradients_match_central_finite_differences() {
        let cases = [
            (tiny(2, 1, true, &[1, 4, 2], &[1, 4, 3]), None),
            (tiny(2, 2, false, &[3, 1], &[2, 4]), None),
            (tiny(4, 2, true, &[3, 2], &[5, 1]), None),
            (tiny(2, 1, true, &[5], &[5]), Some(2)),
        ];
        let mut rng = StdRng::seed_from_u64(3);
        let mut worst = 0f64;
        for (s, w) in &cases {
            let n_q = s.total_q() * s.heads * 3;
            let n_k = s.total_k() * s.kv_heads * 3;
            let mut gen = |n| {
                (0..n)
                    .map(|_| rng.random_range(-1.5..1.5))
                    .collect::<Vec<f64>>()
            };
            let (mut q, mut k, mut v, d_o) = (gen(n_q), gen(n_k), gen(n_k), gen(n_q));
            let g = backward_f64(s, *w, (&q, &k, &v), &d_o, 0.7);
            let h = 1e-5;
            for which in 0..3 {
                let n = [n_q, n_k, n_k][which];
                for e in 0..n {
                    let at = |q: &mut Vec<f64>, k: &mut Vec<f64>, v: &mut Vec<f64>, dx: f64| {
                        [q, k, v][which][e] += dx;
                    };
                    at(&mut q, &mut k, &mut v, h);
                    let up = loss(s, *w, (&q, &k, &v), &d_o);
                    at(&mut q, &mut k, &mut v, -2.0 * h);
                    let down = loss(s, *w, (&q, &k, &v), &d_o);
                    at(&mut q, &mut k, &mut v, h);
                    let fd = (up - down) / (2.0 * h);
                    let analytic = [&g.dq, &g.dk, &g.dv][which][e];
                    let err = (fd - analytic).abs();
                    worst = worst.max(err);
                    assert!(
                        err < 1e-7 * analytic.abs().max(1.0),
                        "{s:?} window {w:?}: d{}[{e}] = {analytic}, finite difference {fd}",
                        ["q", "k", "v"][which]
                    );
                }
            }
        }
        println!("max |finite difference − analytic| = {worst:.2e}");
    }

    /// The f64 forward here agrees with the forward's reference (no window), and a window
    /// of w keeps exactly w keys per row once the row has that many.
    #[test]
    fn forward_matches_the_forward_reference() {
        use half::f16;
        let s = AttnShape::square(2, 1, 64, true, &[5, 9]);
        let (q, k, v) = super::super::host::inputs::<f16>(&s);
        let a = forward_reference(&s, None, (&q, &k, &v), 0.125);
        let b = super::super::reference::reference(&s, &q, &k, &v, 0.125);
        for (x, y) in a.o.iter().zip(&b.o).chain(a.lse.iter().zip(&b.lse)) {
            assert!((x - y).abs() < 1e-12 || x == y, "{x} vs {y}");
        }
        let seen = (0..9)
            .filter(|&j| visible_windowed(&s, Some(3), 1, 6, j))
            .count();
        assert_eq!(seen, 3);
    }
}
