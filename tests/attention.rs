//! T1 for flash attention: `flash_attn_fwd_{f16,bf16}` on the CPU interpreter against the f64
//! reference (explicit masks), with the tolerances derived in `attention::host::tolerance_o`
//! and `TOLERANCE_LSE`: the whole tunable space at head dim 64 on a short ragged causal
//! batch, sampled configs at other head dims and longer sequences, edge shapes (length 1,
//! odd, not tile multiples, empty sequences, causal k_len < q_len with fully masked rows),
//! GQA ratios 1, 3 and 8, and a mutation check that a wrong mask offset is caught.

use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::attention::{
    compare, default_config, flash_attn_fwd_f16, inputs, reference, reference_masked, run,
    AttnShape,
};
use warpforge::prelude::{bf16, f16, Float};

fn shape(
    heads: usize,
    kv_heads: usize,
    d: usize,
    causal: bool,
    q: &[usize],
    k: &[usize],
) -> AttnShape {
    AttnShape {
        heads,
        kv_heads,
        head_dim: d,
        causal,
        q_lens: q.to_vec(),
        k_lens: k.to_vec(),
    }
}

/// Runs `config` on `shape` and compares with the reference; returns (max O err, max LSE err).
fn check<T: Float + Element>(config: &Config, shape: &AttnShape) -> Result<(f64, f64), String> {
    let (q, k, v) = inputs::<T>(shape);
    let scale = shape.default_scale();
    let got = run(&Device::cpu(), config, shape, (&q, &k, &v), scale)
        .map_err(|e| format!("[{config}] {shape:?}: {e}"))?;
    let want = reference(shape, &q, &k, &v, scale);
    compare(shape, (&got.0, &got.1), &want).map_err(|e| format!("[{config}] {shape:?}: {e}"))
}

/// Every config of the space with `HEAD_DIM = d`.
fn configs_with_head_dim(d: i64) -> Vec<Config> {
    flash_attn_fwd_f16::def()
        .space
        .configs()
        .into_iter()
        .filter(|c| c.get("HEAD_DIM") == Some(d))
        .collect()
}

#[test]
fn default_config_on_a_ragged_causal_gqa_batch() {
    let s = shape(3, 1, 64, true, &[1, 19, 40], &[1, 33, 40]);
    let errs = check::<f16>(&default_config(64), &s).unwrap();
    println!(
        "f16 d64 default: max |O err| {:.2e}, max |LSE err| {:.2e}",
        errs.0, errs.1
    );
}

/// T1: the whole space at head dim 64, on a causal GQA (3:1) batch with lengths 1, 19/33
/// (prefix longer than the chunk) and 40 (not a multiple of any tile).
#[test]
fn whole_space_at_head_dim_64() {
    let s = shape(3, 1, 64, true, &[1, 19, 40], &[1, 33, 40]);
    let configs = configs_with_head_dim(64);
    assert!(configs.len() >= 10, "{} configs", configs.len());
    for config in &configs {
        check::<f16>(config, &s).unwrap();
    }
    println!("{} configs at d = 64 pass", configs.len());
}

/// The whole space at the other head dims too (each config once, at a short ragged
/// non-causal batch with an empty key sequence: O = 0, LSE = −∞), bf16.
#[test]
fn whole_space_at_other_head_dims() {
    for d in [80i64, 96, 128, 256] {
        let s = shape(2, 2, d as usize, false, &[3, 21, 1], &[17, 0, 45]);
        let all = configs_with_head_dim(d);
        assert!(all.contains(&default_config(d as usize)));
        for config in &all {
            check::<bf16>(config, &s).unwrap();
        }
        println!("d = {d}: {} configs pass", all.len());
    }
}

/// An even sample of configs at a longer causal GQA batch (several K tiles per block, the
/// pipeline wrapping its stages, a q tile that straddles the diagonal).
#[test]
fn sampled_configs_at_longer_sequences() {
    for d in [64i64, 128] {
        let s = shape(4, 2, d as usize, true, &[130, 33], &[200, 33]);
        let all = configs_with_head_dim(d);
        let sample: Vec<&Config> = all.iter().step_by(all.len().div_ceil(5)).collect();
        for config in &sample {
            check::<f16>(config, &s).unwrap();
        }
        println!("d = {d}: {} of {} configs pass", sample.len(), all.len());
    }
}

/// bf16, GQA ratios 1, 3 and 8, causal and not, at a length spanning several K tiles and
/// pipeline wrap-arounds (129 keys), with the default config of each head dim.
#[test]
fn gqa_ratios_bf16_and_f16_longer_sequences() {
    for (heads, kv_heads) in [(2, 2), (3, 1), (8, 1)] {
        for causal in [false, true] {
            for d in [64, 128] {
                let s = shape(heads, kv_heads, d, causal, &[70, 5], &[129, 5]);
                let e = check::<bf16>(&default_config(d), &s).unwrap();
                let f = check::<f16>(&default_config(d), &s).unwrap();
                println!(
                    "h{heads}/{kv_heads} d{d} causal={causal}: bf16 {:.2e} f16 {:.2e}",
                    e.0, f.0
                );
            }
        }
    }
}

/// Causal with k_len < q_len: the first q_len − k_len rows see nothing (O = 0, LSE = −∞);
/// also a whole query tile with no visible key (the block must skip every K tile).
#[test]
fn fully_masked_rows_give_zero_and_minus_infinity() {
    let s = shape(2, 1, 64, true, &[40, 150, 7], &[3, 10, 0]);
    for config in [
        default_config(64),
        Config::parse("HEAD_DIM=64,BLOCK_M=32,BLOCK_N=32,WARPS=2,STAGES=2").unwrap(),
    ] {
        check::<f16>(&config, &s).unwrap();
        let (q, k, v) = inputs::<f16>(&s);
        let (o, lse) = run(&Device::cpu(), &config, &s, (&q, &k, &v), s.default_scale()).unwrap();
        // Row 0 of sequence 0 sees key j <= 0 + 3 - 40 < 0.
        assert_eq!(lse[0], f32::NEG_INFINITY);
        assert!(o[..64].iter().all(|x| x.to_f32() == 0.0));
    }
}

/// The comparison can fail: the kernel's output against a reference whose causal mask is
/// off by one (row i sees keys j ≤ i + offset − 1) must mismatch, as must a reference with
/// the mask aligned top-left instead of bottom-right.
#[test]
fn a_wrong_mask_offset_is_caught() {
    let s = shape(2, 2, 64, true, &[20, 9], &[20, 30]);
    let (q, k, v) = inputs::<f16>(&s);
    let scale = s.default_scale();
    let got = run(&Device::cpu(), &default_config(64), &s, (&q, &k, &v), scale).unwrap();
    let right = reference(&s, &q, &k, &v, scale);
    assert!(compare(&s, (&got.0, &got.1), &right).is_ok());
    let off = |b: usize| s.k_lens[b] as i64 - s.q_lens[b] as i64;
    let off_by_one = reference_masked(&s, &q, &k, &v, scale, |b, i, j| {
        (j as i64) < i as i64 + off(b)
    });
    let err = compare(&s, (&got.0, &got.1), &off_by_one).unwrap_err();
    println!("off by one: {err}");
    let top_left = reference_masked(&s, &q, &k, &v, scale, |_, i, j| j <= i);
    let err = compare(&s, (&got.0, &got.1), &top_left).unwrap_err();
    println!("top-left: {err}");
}

/// Paged K/V (page sizes 1, 16 and 48: smaller than, equal to a fraction of, and not a
/// multiple of the key tile) gives bit for bit the output of contiguous K/V — the same
/// values through the same arithmetic — on a causal chunked-prefill shape (q_len < k_len).
#[test]
fn paged_kv_matches_contiguous_exactly() {
    use warpforge::kernels::attention::{launch, paginate, AttnBuffers};
    let s = shape(4, 2, 64, true, &[7, 30, 1], &[50, 30, 77]);
    let (q, k, v) = inputs::<f16>(&s);
    let device = Device::cpu();
    let scale = s.default_scale();
    for config in [
        default_config(64),
        Config::parse("HEAD_DIM=64,BLOCK_M=32,BLOCK_N=32,WARPS=2,STAGES=3").unwrap(),
    ] {
        let contiguous = run(&device, &config, &s, (&q, &k, &v), scale).unwrap();
        compare(
            &s,
            (&contiguous.0, &contiguous.1),
            &reference(&s, &q, &k, &v, scale),
        )
        .unwrap();
        for page_size in [1, 16, 48] {
            let (kc, vc, table, per_seq) = paginate(&s, (&k, &v), page_size, 7);
            let mut bufs =
                AttnBuffers::upload_paged(&device, &s, &q, (&kc, &vc), &table, page_size, per_seq)
                    .unwrap();
            launch(&device, &config, &s, &mut bufs, scale).unwrap();
            let o = device.download(&bufs.o).unwrap();
            let lse = device.download(&bufs.lse).unwrap();
            assert!(
                o == contiguous.0,
                "[{config}] page size {page_size}: O differs from contiguous"
            );
            assert!(
                lse == contiguous.1,
                "[{config}] page size {page_size}: LSE differs"
            );
        }
    }
}

/// A block table pointing past the cache is refused with a message, not run.
#[test]
fn a_bad_block_table_is_an_error() {
    use warpforge::kernels::attention::{paginate, AttnBuffers};
    let s = shape(2, 2, 64, false, &[3], &[20]);
    let (q, k, v) = inputs::<f16>(&s);
    let (kc, vc, mut table, per_seq) = paginate(&s, (&k, &v), 16, 1);
    table[1] = 1_000;
    let err = AttnBuffers::upload_paged(&Device::cpu(), &s, &q, (&kc, &vc), &table, 16, per_seq)
        .err()
        .expect("an error");
    assert!(err.to_string().contains("past the cache"), "{err}");
}

/// The library-style entry points the lead wires (`problems`, `output`, `expected`,
/// `tolerance_o`) pass through `check::compare` for both element types (LSE −∞ included:
/// equal infinities match).
#[test]
fn library_style_problems_pass_check_compare() {
    use warpforge::kernels::attention::{expected, output, problems, tolerance_o, AttnShape};
    use warpforge::kernels::check::compare;
    let device = Device::cpu();
    for p in problems() {
        let config = default_config(AttnShape::from_problem(&p).unwrap().head_dim);
        let f = compare(
            &p,
            &output::<f16>(&device, &config, &p).unwrap(),
            &expected::<f16>(&p).unwrap(),
            tolerance_o(f16::SCALAR),
        );
        let b = compare(
            &p,
            &output::<bf16>(&device, &config, &p).unwrap(),
            &expected::<bf16>(&p).unwrap(),
            tolerance_o(bf16::SCALAR),
        );
        assert!(f.passed() && b.passed(), "{f}\n{b}");
    }
}
