//! T1 for flash attention: `flash_attn_fwd_{f16,bf16}` on the CPU interpreter against the f64
//! reference (explicit masks), with the tolerances derived in `attention::host::tolerance_o`
//! and `TOLERANCE_LSE`: the whole tunable space at head dim 64 on a short ragged causal
//! batch, sampled configs at other head dims and longer sequences, edge shapes (length 1,
//! odd, not tile multiples, empty sequences, causal k_len < q_len with fully masked rows),
//! GQA ratios 1, 3 and 8, and a mutation check that a wrong mask offset is caught.

use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::attention::{
    compare, default_config, flash_attn_fwd_f16, inputs, reference, run, AttnShape,
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
