//! T1 for the exact LSE merge (`attn_merge_{f32,f16,bf16}`) on the CPU interpreter: against
//! the f64 merge reference over its whole space, −∞ safety, associativity, and against full
//! attention — split-KV (2-way, with an empty split) and shared-prefix (Hydragen) trees,
//! 2-level and 3-level, where every part is an output of `flash_attn_fwd`.

use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::attention::{
    attn_merge_f32, compare_within, default_config, inputs, merge_reference, merge_run, reference,
    run, tolerance_o, AttnOutput, AttnShape, MergeShape,
};
use warpforge::prelude::{bf16, f16, Float};

/// A small deterministic generator (xorshift64*), uniform in [lo, hi).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next() as f32
    }
}

/// Stacks parts (O, LSE) for the merge kernel.
fn stack<T: Copy>(parts: &[(Vec<T>, Vec<f32>)]) -> (Vec<T>, Vec<f32>) {
    let o = parts.iter().flat_map(|p| p.0.iter().copied()).collect();
    let lse = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    (o, lse)
}

fn to_f64<T: Float>(part: &(Vec<T>, Vec<f32>)) -> AttnOutput {
    AttnOutput {
        o: part.0.iter().map(|x| x.to_f32() as f64).collect(),
        lse: part.1.iter().map(|&x| x as f64).collect(),
    }
}

/// Random parts: O in [−1, 1] (as T), LSE in [−5, 5] with about one in five −∞ (and every
/// part −∞ for row 0, head 0, whose O holds NaN that must never be read).
fn random_parts<T: Float>(s: MergeShape, seed: u64) -> Vec<(Vec<T>, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    (0..s.parts)
        .map(|_| {
            let mut o: Vec<T> = (0..s.rows * s.heads * s.head_dim)
                .map(|_| T::from_f32(rng.range(-1.0, 1.0)))
                .collect();
            let mut lse: Vec<f32> = (0..s.rows * s.heads)
                .map(|_| {
                    if rng.next() < 0.2 {
                        f32::NEG_INFINITY
                    } else {
                        rng.range(-5.0, 5.0)
                    }
                })
                .collect();
            lse[0] = f32::NEG_INFINITY;
            o[..s.head_dim]
                .iter_mut()
                .for_each(|x| *x = T::from_f32(f32::NAN));
            (o, lse)
        })
        .collect()
}

/// Checks a merge result against the f64 reference: O within `tol` absolute (|O| ≤ 1),
/// LSE within 1e-5, −∞ exactly.
fn check_merge<T: Float>(
    got: &(Vec<T>, Vec<f32>),
    want: &AttnOutput,
    tol: f64,
) -> Result<(), String> {
    for (i, (g, &w)) in got.0.iter().zip(&want.o).enumerate() {
        let g = g.to_f32() as f64;
        if (g - w).is_nan() || (g - w).abs() > tol {
            return Err(format!("O[{i}] = {g}, want {w}"));
        }
    }
    for (i, (&g, &w)) in got.1.iter().zip(&want.lse).enumerate() {
        let ok = if w == f64::NEG_INFINITY {
            g as f64 == w
        } else {
            (g as f64 - w).abs() <= 1e-5
        };
        if !ok {
            return Err(format!("LSE[{i}] = {g}, want {w}"));
        }
    }
    Ok(())
}

fn merge_space_case<T: Float + Element>(tol: f64) {
    let device = Device::cpu();
    for (parts, rows, heads, d) in [(1, 3, 2, 64), (2, 5, 3, 128), (7, 4, 2, 80), (40, 2, 1, 64)] {
        let s = MergeShape {
            parts,
            rows,
            heads,
            head_dim: d,
        };
        let ps = random_parts::<T>(s, (parts * 100 + rows) as u64);
        let (o, lse) = stack(&ps);
        let want = merge_reference(&ps.iter().map(to_f64).collect::<Vec<_>>(), rows, heads, d);
        for config in attn_merge_f32::def().space.configs() {
            let got = merge_run::<T>(&device, &config, s, &o, &lse).unwrap();
            check_merge(&got, &want, tol).unwrap_or_else(|e| panic!("[{config}] {s:?}: {e}"));
            assert!(
                got.0[..d].iter().all(|x| x.to_f32() == 0.0),
                "all-−∞ row must be 0"
            );
        }
    }
}

/// Whole space (WARPS) × every element type, N = 1, 2, 7 and 40 parts (more than a warp's
/// lanes). Tolerance: the weights are f32 exps (a few ulps), the sum f32, O rounded once to
/// T: 2^-20 for f32, one rounding (2^-11, 2^-8) plus that for f16/bf16.
#[test]
fn merge_matches_the_reference_over_its_space() {
    merge_space_case::<f32>(2f64.powi(-20));
    merge_space_case::<f16>(2f64.powi(-11) + 2f64.powi(-20));
    merge_space_case::<bf16>(2f64.powi(-8) + 2f64.powi(-20));
}

/// Associativity: merging 3 parts as ((a, b), c), (a, (b, c)) and 3-way agrees within f32
/// rounding, and the order of the parts does not matter.
#[test]
fn merge_is_associative_and_commutative() {
    let device = Device::cpu();
    let cfg = Config::parse("WARPS=4").unwrap();
    let one = MergeShape {
        parts: 1,
        rows: 6,
        heads: 2,
        head_dim: 64,
    };
    let ps = random_parts::<f32>(MergeShape { parts: 3, ..one }, 5);
    let merge = |parts: &[&(Vec<f32>, Vec<f32>)]| {
        let owned: Vec<_> = parts.iter().map(|p| (*p).clone()).collect();
        let (o, lse) = stack(&owned);
        merge_run::<f32>(
            &device,
            &cfg,
            MergeShape {
                parts: parts.len(),
                ..one
            },
            &o,
            &lse,
        )
        .unwrap()
    };
    let (a, b, c) = (&ps[0], &ps[1], &ps[2]);
    let left = merge(&[&merge(&[a, b]), c]);
    let right = merge(&[a, &merge(&[b, c])]);
    let flat = merge(&[a, b, c]);
    let swapped = merge(&[c, a, b]);
    for other in [&right, &flat, &swapped] {
        for (x, y) in left.0.iter().zip(&other.0) {
            assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
        }
        for (x, y) in left.1.iter().zip(&other.1) {
            assert!(x == y || (x - y).abs() <= 1e-6, "{x} vs {y}");
        }
    }
}

/// Q/K/V rows of a packed tensor: rows `at..at + n` of each sequence listed.
fn rows<T: Copy>(x: &[T], width: usize, ranges: &[(usize, usize)]) -> Vec<T> {
    ranges
        .iter()
        .flat_map(|&(at, n)| x[at * width..(at + n) * width].iter().copied())
        .collect()
}

/// Split-KV: keys of each sequence split at a point (0 for one sequence: an empty split,
/// LSE −∞ everywhere) run as two forward launches, merged 2-way, equal full attention.
/// Tolerance: each part within 3u of exact, rounded to T (u), and the merge rounds once
/// more (u): 5u.
#[test]
fn split_kv_merge_equals_full_attention() {
    let device = Device::cpu();
    let full = AttnShape {
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        causal: false,
        q_lens: vec![3, 1, 20],
        k_lens: vec![50, 9, 33],
    };
    let (q, k, v) = inputs::<f16>(&full);
    let scale = full.default_scale();
    let want = reference(&full, &q, &k, &v, scale);
    let split = [20usize, 0, 32];
    let (w, cu) = (full.kv_heads * full.head_dim, full.cu_seqlens_k());
    let first: Vec<(usize, usize)> = (0..3).map(|b| (cu[b] as usize, split[b])).collect();
    let second: Vec<(usize, usize)> = (0..3)
        .map(|b| (cu[b] as usize + split[b], full.k_lens[b] - split[b]))
        .collect();
    let mut parts = Vec::new();
    for ranges in [&first, &second] {
        let shape = AttnShape {
            k_lens: ranges.iter().map(|r| r.1).collect(),
            ..full.clone()
        };
        let kv = (rows(&k, w, ranges), rows(&v, w, ranges));
        parts.push(
            run(
                &device,
                &default_config(64),
                &shape,
                (&q, &kv.0, &kv.1),
                scale,
            )
            .unwrap(),
        );
    }
    assert!(parts[0].1[full.total_q() - 1] > f32::NEG_INFINITY);
    let (o, lse) = stack(&parts);
    let ms = MergeShape {
        parts: 2,
        rows: full.total_q(),
        heads: full.heads,
        head_dim: full.head_dim,
    };
    let got = merge_run::<f16>(&device, &Config::parse("WARPS=4").unwrap(), ms, &o, &lse).unwrap();
    let tol = tolerance_o(f16::SCALAR) / 3.0 * 5.0;
    compare_within(&full, (&got.0, &got.1), &want, tol).unwrap();
}

/// Hydragen over a 3-level prefix tree: a prefix shared by all three sequences, a
/// sub-prefix shared by sequences 0 and 1 (sequence 2 has its own), and each sequence's own
/// suffix, causal. Level 1 is one batched launch of every query against the shared prefix
/// (one varlen "sequence", no mask); level 2 a varlen launch of the two query groups against
/// their sub-prefixes; level 3 the suffixes, causal. The 3-way merge — and the 2-level
/// grouping ((prefix, sub-prefix), suffix) — equal plain causal attention over each full
/// sequence (bottom-right: the suffix rows are the last rows of prefix ++ sub ++ suffix).
#[test]
fn shared_prefix_tree_merge_equals_full_attention() {
    let device = Device::cpu();
    let (heads, kv_heads, d) = (3usize, 1usize, 64usize);
    let (prefix, subs, suffix) = (37usize, [12usize, 12, 5], [4usize, 9, 1]);
    let mut rng = Rng::new(11);
    let mut gen = |n: usize| -> Vec<f16> {
        (0..n * kv_heads * d)
            .map(|_| f16::from_f32(rng.range(-1.0, 1.0)))
            .collect()
    };
    let (pk, pv) = (gen(prefix), gen(prefix));
    let (s01k, s01v, s2k, s2v) = (gen(subs[0]), gen(subs[0]), gen(subs[2]), gen(subs[2]));
    let (sfx_k, sfx_v) = (gen(suffix.iter().sum()), gen(suffix.iter().sum()));
    let q_shape = AttnShape {
        heads,
        kv_heads,
        head_dim: d,
        causal: true,
        q_lens: suffix.to_vec(),
        k_lens: suffix.to_vec(),
    };
    let (q, _, _) = inputs::<f16>(&q_shape);
    let scale = q_shape.default_scale();
    let total_q: usize = suffix.iter().sum();
    let cfg = default_config(d);
    // Level 1: all queries × the shared prefix.
    let l1 = AttnShape {
        causal: false,
        q_lens: vec![total_q],
        k_lens: vec![prefix],
        ..q_shape.clone()
    };
    let p1 = run(&device, &cfg, &l1, (&q, &pk, &pv), scale).unwrap();
    // Level 2: queries of sequences 0+1 × their sub-prefix, sequence 2 × its own.
    let l2 = AttnShape {
        causal: false,
        q_lens: vec![suffix[0] + suffix[1], suffix[2]],
        k_lens: vec![subs[0], subs[2]],
        ..q_shape.clone()
    };
    let (k2, v2) = (
        [s01k.clone(), s2k.clone()].concat(),
        [s01v.clone(), s2v.clone()].concat(),
    );
    let p2 = run(&device, &cfg, &l2, (&q, &k2, &v2), scale).unwrap();
    // Level 3: each suffix, causal.
    let p3 = run(&device, &cfg, &q_shape, (&q, &sfx_k, &sfx_v), scale).unwrap();
    // Reference: each sequence's full keys prefix ++ sub ++ suffix, causal bottom-right.
    let (w, cu) = (kv_heads * d, q_shape.cu_seqlens_k());
    let mut full_k = Vec::new();
    let mut full_v = Vec::new();
    for b in 0..3 {
        let (sk, sv) = if b < 2 { (&s01k, &s01v) } else { (&s2k, &s2v) };
        let own = (cu[b] as usize, suffix[b]);
        full_k.extend([pk.clone(), sk.clone(), rows(&sfx_k, w, &[own])].concat());
        full_v.extend([pv.clone(), sv.clone(), rows(&sfx_v, w, &[own])].concat());
    }
    let full = AttnShape {
        k_lens: (0..3).map(|b| prefix + subs[b] + suffix[b]).collect(),
        ..q_shape.clone()
    };
    let want = reference(&full, &q, &full_k, &full_v, scale);
    let ms = MergeShape {
        parts: 3,
        rows: total_q,
        heads,
        head_dim: d,
    };
    let mcfg = Config::parse("WARPS=2").unwrap();
    let (o, lse) = stack(&[p1.clone(), p2.clone(), p3.clone()]);
    let flat = merge_run::<f16>(&device, &mcfg, ms, &o, &lse).unwrap();
    let tol = tolerance_o(f16::SCALAR) / 3.0 * 5.0;
    compare_within(&full, (&flat.0, &flat.1), &want, tol).unwrap();
    // Two levels: (prefix, sub-prefix) first, rounded to f16, then with the suffix: one
    // more rounding.
    let (o, lse) = stack(&[p1, p2]);
    let upper = merge_run::<f16>(&device, &mcfg, MergeShape { parts: 2, ..ms }, &o, &lse).unwrap();
    let (o, lse) = stack(&[upper, p3]);
    let nested = merge_run::<f16>(&device, &mcfg, MergeShape { parts: 2, ..ms }, &o, &lse).unwrap();
    compare_within(&full, (&nested.0, &nested.1), &want, tol / 5.0 * 6.0).unwrap();
}

/// The merge test can fail: dropping one part (the sub-prefix) breaks the equality.
#[test]
fn a_missing_part_is_caught() {
    let device = Device::cpu();
    let s = AttnShape {
        heads: 2,
        kv_heads: 2,
        head_dim: 64,
        causal: false,
        q_lens: vec![5],
        k_lens: vec![30],
    };
    let (q, k, v) = inputs::<f16>(&s);
    let scale = s.default_scale();
    let want = reference(&s, &q, &k, &v, scale);
    let half = AttnShape {
        k_lens: vec![15],
        ..s.clone()
    };
    let w = s.kv_heads * s.head_dim;
    let a = run(
        &device,
        &default_config(64),
        &half,
        (&q, &k[..15 * w], &v[..15 * w]),
        scale,
    )
    .unwrap();
    let ms = MergeShape {
        parts: 1,
        rows: 5,
        heads: 2,
        head_dim: 64,
    };
    let got =
        merge_run::<f16>(&device, &Config::parse("WARPS=2").unwrap(), ms, &a.0, &a.1).unwrap();
    assert!(compare_within(&s, (&got.0, &got.1), &want, 5.0 * tolerance_o(f16::SCALAR)).is_err());
}
