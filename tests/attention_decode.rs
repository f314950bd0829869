//! T1 for decode attention (`flash_attn_decode_{f16,bf16}` + its split combine) on the CPU
//! interpreter: the family's check problems, the whole tunable space at head dim 64 and a
//! sample at 128, paged K/V bit-identical to contiguous, split counts 1..N agreeing with
//! each other, the reference and the forward kernel, empty sequences (O = 0, LSE = −∞), and
//! Hydragen decode (one batched forward over the shared prefix + decode over the suffixes +
//! merge) equal to plain attention over each full sequence. Tolerances: the forward's
//! `tolerance_o` (3 roundings to T, derived in `attention::host`), `TOLERANCE_LSE`.

use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::attention::{
    compare, compare_within, decode_default_config, decode_problems, decode_run, default_config,
    flash_attn_decode_f16, inputs, merge_run, paginate, reference, run, tolerance_o, AttnBuffers,
    AttnShape, MergeShape,
};
use warpforge::kernels::find;
use warpforge::prelude::{bf16, f16, Float};

fn shape(heads: usize, kv_heads: usize, d: usize, q: &[usize], k: &[usize]) -> AttnShape {
    AttnShape {
        heads,
        kv_heads,
        head_dim: d,
        causal: true,
        q_lens: q.to_vec(),
        k_lens: k.to_vec(),
    }
}

/// Runs decode with `splits` on `shape`, K/V contiguous (`page_size` 0) or paged.
fn decode<T: Float + Element>(
    config: &Config,
    shape: &AttnShape,
    page_size: usize,
    splits: usize,
) -> (Vec<T>, Vec<f32>) {
    let device = Device::cpu();
    let (q, k, v) = inputs::<T>(shape);
    let mut bufs = if page_size == 0 {
        AttnBuffers::upload(&device, shape, &q, &k, &v).unwrap()
    } else {
        let (kc, vc, table, per_seq) = paginate(shape, (&k, &v), page_size, 3);
        AttnBuffers::upload_paged(&device, shape, &q, (&kc, &vc), &table, page_size, per_seq)
            .unwrap()
    };
    decode_run(
        &device,
        config,
        shape,
        &mut bufs,
        splits,
        shape.default_scale(),
    )
    .unwrap_or_else(|e| panic!("[{config}] {shape:?} splits {splits}: {e}"))
}

/// Decode against the f64 reference; returns (max O err, max LSE err).
fn check<T: Float + Element>(
    config: &Config,
    shape: &AttnShape,
    page_size: usize,
    splits: usize,
) -> (f64, f64) {
    let got = decode::<T>(config, shape, page_size, splits);
    let (q, k, v) = inputs::<T>(shape);
    let want = reference(shape, &q, &k, &v, shape.default_scale());
    compare(shape, (&got.0, &got.1), &want)
        .unwrap_or_else(|e| panic!("[{config}] page {page_size} splits {splits}: {e}"))
}

fn configs_with_head_dim(d: i64) -> Vec<Config> {
    flash_attn_decode_f16::def()
        .space
        .configs()
        .into_iter()
        .filter(|c| c.get("HEAD_DIM") == Some(d))
        .collect()
}

/// The library entries (`warpforge check`'s path): every check problem, f16 and bf16, with
/// the default config.
#[test]
fn family_problems_pass() {
    for name in ["flash_attn_decode_f16", "flash_attn_decode_bf16"] {
        let kernel = find(name).expect("registered");
        for problem in decode_problems() {
            let report = kernel
                .check(&Device::cpu(), &kernel.default_config(), &problem)
                .unwrap();
            assert!(report.passed(), "{name} {}: {report:?}", problem.name);
        }
    }
}

/// T1: every config at head dim 64 (GQA 3:1, causal, paged with an odd page size, lengths
/// 1, odd, several tiles, 2 queries per sequence) with 2 splits, and with 1 split.
#[test]
fn whole_space_at_head_dim_64() {
    let s = shape(3, 1, 64, &[1, 2, 1], &[1, 75, 40]);
    let configs = configs_with_head_dim(64);
    assert!(configs.len() >= 12, "{} configs", configs.len());
    for config in &configs {
        check::<f16>(config, &s, 7, 2);
        check::<bf16>(config, &s, 0, 1);
    }
    println!("{} configs at d = 64 pass", configs.len());
}

/// Every config at head dim 128 (GQA 8:1 with 2 tokens: one full 16-row tile), every head
/// dim's default config, and a sample of configs at longer ragged contexts (hundreds of
/// keys per split: the pipeline wraps its ring many times).
#[test]
fn whole_space_at_head_dim_128_and_sampled_at_longer_contexts() {
    let s = shape(8, 1, 128, &[2, 1], &[150, 33]);
    let all = configs_with_head_dim(128);
    for config in &all {
        check::<bf16>(config, &s, 16, 3);
    }
    for d in [80, 96, 256] {
        let s = shape(4, 2, d, &[1, 1], &[45, 3]);
        check::<f16>(&decode_default_config(d), &s, 16, 2);
    }
    let long = shape(32, 8, 128, &[1, 1, 1], &[1500, 777, 64]);
    let sample: Vec<&Config> = all.iter().step_by(all.len().div_ceil(4)).collect();
    for config in &sample {
        check::<bf16>(config, &long, 16, 5);
    }
    println!(
        "{} configs at d = 128, {} of them at 1500 keys, pass",
        all.len(),
        sample.len()
    );
}

/// Paged and contiguous K/V give the same bits (the same values in the same order), for
/// page sizes 1, 7, 16 and 64 and split counts 1 and 3.
#[test]
fn paged_equals_contiguous_bit_for_bit() {
    let s = shape(4, 2, 64, &[1, 3], &[90, 37]);
    let config = decode_default_config(64);
    for splits in [1, 3] {
        let flat = decode::<f16>(&config, &s, 0, splits);
        for page in [1, 7, 16, 64] {
            let paged = decode::<f16>(&config, &s, page, splits);
            let bits = |x: &(Vec<f16>, Vec<f32>)| {
                let o: Vec<u16> = x.0.iter().map(|v| v.to_bits()).collect();
                let l: Vec<u32> = x.1.iter().map(|v| v.to_bits()).collect();
                (o, l)
            };
            assert_eq!(bits(&flat), bits(&paged), "page {page}, splits {splits}");
        }
    }
}

/// Split counts 1..=9 on a 300-key sequence (10 tiles of 32: the last splits get one tile
/// or none) and a short one (most splits empty): each within tolerance of the reference,
/// of each other, and of the forward kernel on the same problem.
#[test]
fn split_counts_agree_with_each_other_and_the_forward() {
    let s = shape(8, 2, 64, &[1, 2], &[300, 5]);
    let config = decode_default_config(64);
    let (q, k, v) = inputs::<bf16>(&s);
    let scale = s.default_scale();
    let fwd = run(&Device::cpu(), &default_config(64), &s, (&q, &k, &v), scale).unwrap();
    let tol = tolerance_o(bf16::SCALAR);
    let one = decode::<bf16>(&config, &s, 16, 1);
    for splits in 1..=9 {
        check::<bf16>(&config, &s, 16, splits);
        let got = decode::<bf16>(&config, &s, 16, splits);
        for (other, what) in [(&fwd, "forward"), (&one, "1 split")] {
            for (a, b) in got.0.iter().zip(&other.0) {
                let (a, b) = (a.to_f32() as f64, b.to_f32() as f64);
                assert!(
                    (a - b).abs() <= 2.0 * tol * b.abs().max(1.0),
                    "{splits} splits vs {what}: {a} {b}"
                );
            }
            for (a, b) in got.1.iter().zip(&other.1) {
                assert!(
                    (a - b).abs() <= 2e-4,
                    "{splits} splits vs {what}: LSE {a} {b}"
                );
            }
        }
    }
}

/// An empty key sequence gives O = 0 and LSE = −∞ with 1 split and with 4 (every partial
/// −∞: the combine must not produce NaN), beside non-empty sequences.
#[test]
fn empty_sequences_give_zero_and_minus_infinity() {
    let s = shape(3, 1, 64, &[1, 2, 1], &[0, 50, 0]);
    for splits in [1, 4] {
        let (o, lse) = decode::<f16>(&decode_default_config(64), &s, 16, splits);
        check::<f16>(&decode_default_config(64), &s, 16, splits);
        let (d, total_q) = (64, s.total_q());
        // Rows 0 (sequence 0) and 3 (sequence 2), every head.
        for row in [0, 3] {
            for h in 0..3 {
                assert_eq!(lse[h * total_q + row], f32::NEG_INFINITY);
                let at = (row * 3 + h) * d;
                assert!(o[at..at + d].iter().all(|x| x.to_f32() == 0.0));
            }
        }
        assert!(lse.iter().all(|x| !x.is_nan()) && o.iter().all(|x| !x.is_nan()));
    }
}

/// The comparison can fail: a result for a shorter key range (one key dropped) is caught.
#[test]
fn a_dropped_key_is_caught() {
    let s = shape(2, 1, 64, &[1], &[41]);
    let short = shape(2, 1, 64, &[1], &[40]);
    let (q, k, v) = inputs::<f16>(&s);
    let want = reference(&s, &q, &k, &v, s.default_scale());
    let device = Device::cpu();
    let w = s.kv_heads * s.head_dim;
    let mut bufs = AttnBuffers::upload(&device, &short, &q, &k[..40 * w], &v[..40 * w]).unwrap();
    let got = decode_run(
        &device,
        &decode_default_config(64),
        &short,
        &mut bufs,
        2,
        s.default_scale(),
    )
    .unwrap();
    assert!(compare(&s, (&got.0, &got.1), &want).is_err());
}

/// Hydragen decode: `batch` sequences share a `prefix`-key prefix; each has its own suffix
/// (ragged, one holding only the new tokens' keys) in a paged cache and `q_len` new tokens
/// (the last keys of its suffix). Prefix attention is ONE
/// non-causal forward call (all sequences' queries as one varlen sequence against the
/// prefix: a matrix-matrix product, the prefix read once), suffix attention is the decode
/// kernel (causal bottom-right, split), and `attn_merge` combines them. Equal to plain
/// causal attention over each full sequence (prefix ++ suffix). Tolerance: each part 3u of
/// exact and rounded to T once more by the merge's parts (u), the merge rounds once (u): 5u.
#[test]
fn hydragen_decode_equals_full_attention() {
    let device = Device::cpu();
    let (heads, kv_heads, d) = (4usize, 1usize, 64usize);
    let (prefix, suffix, q_len) = (45usize, [7usize, 2, 33, 16], 2usize);
    let batch = suffix.len();
    let total_q = batch * q_len;
    // Suffix attention shape (also the queries' layout): q_len tokens per sequence.
    let sfx = AttnShape {
        heads,
        kv_heads,
        head_dim: d,
        causal: true,
        q_lens: vec![q_len; batch],
        k_lens: suffix.to_vec(),
    };
    let (q, sk, sv) = inputs::<f16>(&sfx);
    let pre = AttnShape {
        causal: false,
        q_lens: vec![total_q],
        k_lens: vec![prefix],
        ..sfx.clone()
    };
    let (_, pk, pv) = inputs::<f16>(&pre);
    let scale = sfx.default_scale();
    let p1 = run(&device, &default_config(d), &pre, (&q, &pk, &pv), scale).unwrap();
    let (kc, vc, table, per_seq) = paginate(&sfx, (&sk, &sv), 16, 9);
    let mut bufs =
        AttnBuffers::upload_paged(&device, &sfx, &q, (&kc, &vc), &table, 16, per_seq).unwrap();
    let p2 = decode_run(
        &device,
        &decode_default_config(d),
        &sfx,
        &mut bufs,
        2,
        scale,
    )
    .unwrap();
    let ms = MergeShape {
        parts: 2,
        rows: total_q,
        heads,
        head_dim: d,
    };
    let o = [p1.0.clone(), p2.0.clone()].concat();
    let lse = [p1.1.clone(), p2.1.clone()].concat();
    let got = merge_run::<f16>(&device, &Config::parse("WARPS=4").unwrap(), ms, &o, &lse).unwrap();
    // Reference: each sequence's keys are prefix ++ its suffix.
    let (w, cu) = (kv_heads * d, sfx.cu_seqlens_k());
    let (mut fk, mut fv) = (Vec::new(), Vec::new());
    for (b, &n) in suffix.iter().enumerate() {
        let own = cu[b] as usize * w..(cu[b] as usize + n) * w;
        fk.extend([&pk[..], &sk[own.clone()]].concat());
        fv.extend([&pv[..], &sv[own]].concat());
    }
    let full = AttnShape {
        k_lens: suffix.iter().map(|n| prefix + n).collect(),
        ..sfx.clone()
    };
    let want = reference(&full, &q, &fk, &fv, scale);
    let tol = tolerance_o(f16::SCALAR) / 3.0 * 5.0;
    compare_within(&full, (&got.0, &got.1), &want, tol).unwrap();
}
