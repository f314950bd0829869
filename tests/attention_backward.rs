//! The flash-attention backward (`flash_attn_bwd_{dot,dkdv,dq}_{f16,bf16}`) on the CPU
//! interpreter against the f64 reference backward (`attention::backward_reference`, itself
//! checked against central finite differences in the kernels crate): ragged varlen batches
//! (lengths 1 and not tile multiples), causal and not, a sliding window, GQA 2:1 and 4:1,
//! head dims 32, 64, 96 and 128, f16 and bf16; two runs bit-identical; bad operands refused.

use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::attention::{
    backward_launch_with, backward_reference, backward_run, bwd_def_of, bwd_default_configs,
    tolerance_grad, AttnBwdBuffers, AttnGrads, AttnShape, BwdConfigs, BwdInputs, BwdKernel,
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

/// Allowed error of each gradient, relative to the largest reference magnitude of that
/// tensor (max(1, ·)): [`tolerance_grad`], 4 roundings to T (P and dS rounded before their
/// MMAs, O before D, the result once). Measured: at most 1.2 roundings (see the printed
/// errors).
fn tolerance<T: Element>() -> f64 {
    tolerance_grad(T::SCALAR)
}

/// Max |err| / max(1, max |want|) of one gradient tensor, and the first element past `tol`.
fn worst<T: Float>(name: &str, got: &[T], want: &[f64], tol: f64) -> Result<f64, String> {
    assert_eq!(got.len(), want.len(), "{name}: sizes");
    let norm = want.iter().fold(1f64, |m, w| m.max(w.abs()));
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g.to_f32() as f64 - w).abs() / norm;
        if err.is_nan() || err > tol {
            return Err(format!(
                "{name}[{i}] = {}, want {w} (|max| {norm:.3})",
                g.to_f32()
            ));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

/// Runs the backward with `configs`, compares with the reference; returns the worst
/// relative errors of dQ, dK, dV.
fn check<T: Float + Element>(
    configs: &BwdConfigs,
    s: &AttnShape,
    window: Option<u32>,
) -> Result<[f64; 3], String> {
    let scale = s.default_scale();
    let x = BwdInputs::<T>::new(s, window, scale);
    let (dq, dk, dv) = backward_run(&Device::cpu(), configs, s, &x, scale, window)
        .map_err(|e| format!("{s:?}: {e}"))?;
    let want: AttnGrads = backward_reference(s, window, (&x.q, &x.k, &x.v), &x.d_o, scale);
    let tol = tolerance::<T>();
    let ctx = |e: String| format!("[{}] {s:?} window {window:?}: {e}", configs.dkdv);
    Ok([
        worst("dQ", &dq, &want.dq, tol).map_err(ctx)?,
        worst("dK", &dk, &want.dk, tol).map_err(ctx)?,
        worst("dV", &dv, &want.dv, tol).map_err(ctx)?,
    ])
}

fn report(what: &str, e: [f64; 3]) {
    println!(
        "{what}: max rel err dQ {:.2e} dK {:.2e} dV {:.2e}",
        e[0], e[1], e[2]
    );
}

/// The default configs of each head dim, f16 and bf16, on a ragged causal GQA 2:1 batch
/// (lengths 1, 19 and 45: not multiples of any tile, a query tile straddling the diagonal).
#[test]
fn default_configs_on_a_ragged_causal_gqa_batch() {
    for d in [32, 64, 96, 128] {
        let s = shape(4, 2, d, true, &[1, 19, 45], &[1, 19, 45]);
        let c = bwd_default_configs(d);
        report(&format!("f16 d{d}"), check::<f16>(&c, &s, None).unwrap());
        report(&format!("bf16 d{d}"), check::<bf16>(&c, &s, None).unwrap());
    }
}

/// Not causal, GQA 4:1, q_len ≠ k_len (a cached prefix longer than the chunk, and a chunk
/// longer than its keys), bf16 and f16.
#[test]
fn non_causal_gqa_4_to_1_with_unequal_lengths() {
    let s = shape(4, 1, 64, false, &[7, 33], &[40, 5]);
    let c = bwd_default_configs(64);
    report("f16 non-causal 4:1", check::<f16>(&c, &s, None).unwrap());
    report("bf16 non-causal 4:1", check::<bf16>(&c, &s, None).unwrap());
}

/// Causal bottom-right with k_len < q_len (rows that see nothing: LSE −∞, zero gradients)
/// and k_len > q_len; then a sliding window of 7 and of 40 keys (wider than a tile).
#[test]
fn causal_masks_fully_masked_rows_and_sliding_windows() {
    let s = shape(2, 2, 64, true, &[30, 5, 3], &[9, 70, 0]);
    let c = bwd_default_configs(64);
    report(
        "causal k<q, k>q, empty",
        check::<f16>(&c, &s, None).unwrap(),
    );
    let s = shape(4, 2, 32, true, &[50, 3], &[80, 3]);
    for w in [7, 40] {
        report(
            &format!("window {w}"),
            check::<f16>(&bwd_default_configs(32), &s, Some(w)).unwrap(),
        );
    }
}

/// Other configs of both tiled kernels (tiles of 16 to 128, 2 to 8 warps, 2 and 3 stages)
/// at d = 32 on a causal GQA batch: an even sample of each space.
#[test]
fn sampled_configs_of_both_kernels() {
    let s = shape(2, 1, 32, true, &[37, 1, 20], &[37, 1, 60]);
    let d = bwd_default_configs(32);
    for kernel in [BwdKernel::DkDv, BwdKernel::Dq] {
        let all: Vec<Config> = bwd_def_of(kernel, f16::SCALAR)
            .unwrap()
            .space
            .configs()
            .into_iter()
            .filter(|c| c.get("HEAD_DIM") == Some(32))
            .collect();
        let sample: Vec<&Config> = all.iter().step_by(all.len().div_ceil(6)).collect();
        for config in &sample {
            let mut c = d.clone();
            match kernel {
                BwdKernel::DkDv => c.dkdv = (*config).clone(),
                _ => c.dq = (*config).clone(),
            }
            check::<f16>(&c, &s, None).unwrap();
        }
        println!(
            "{kernel:?}: {} of {} configs at d = 32 pass",
            sample.len(),
            all.len()
        );
    }
}

/// Two runs of the borrowed-operand launch give bit-identical dQ, dK, dV (no atomics).
#[test]
fn two_runs_are_bit_identical() {
    let s = shape(4, 1, 64, true, &[33, 18], &[40, 18]);
    let scale = s.default_scale();
    let x = BwdInputs::<bf16>::new(&s, None, scale);
    let device = Device::cpu();
    let run = || {
        let mut bufs = AttnBwdBuffers::upload(&device, &s, &x).unwrap();
        backward_launch_with(&device, &s, scale, bufs.args(None)).unwrap();
        (
            device.download(&bufs.dq).unwrap(),
            device.download(&bufs.dk).unwrap(),
            device.download(&bufs.dv).unwrap(),
        )
    };
    let (a, b) = (run(), run());
    assert!(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "runs differ");
    assert!(a.1.iter().any(|x| x.to_f32() != 0.0), "dK all zero");
}

/// Bad operands are refused with a message: a short scratch buffer, a head dim the
/// backward lacks, a zero window.
#[test]
fn bad_operands_are_errors() {
    let s = shape(2, 1, 32, true, &[5], &[5]);
    let scale = s.default_scale();
    let x = BwdInputs::<f16>::new(&s, None, scale);
    let device = Device::cpu();
    let mut bufs = AttnBwdBuffers::upload(&device, &s, &x).unwrap();
    bufs.scratch = device.zeros(3).unwrap();
    let err = backward_launch_with(&device, &s, scale, bufs.args(None)).unwrap_err();
    assert!(err.to_string().contains("scratch"), "{err}");
    let mut bufs = AttnBwdBuffers::upload(&device, &s, &x).unwrap();
    let err = backward_launch_with(&device, &s, scale, bufs.args(Some(0))).unwrap_err();
    assert!(err.to_string().contains("window"), "{err}");
    let bad = AttnShape { head_dim: 48, ..s };
    let err = backward_launch_with(&device, &bad, scale, bufs.args(None)).unwrap_err();
    assert!(err.to_string().contains("head_dim"), "{err}");
}

/// The comparison can fail: the windowed kernel's gradients against the reference without
/// the window, and against the reference with the window one key wider, must mismatch.
#[test]
fn a_wrong_mask_is_caught() {
    let s = shape(2, 1, 32, true, &[40], &[40]);
    let scale = s.default_scale();
    let x = BwdInputs::<f16>::new(&s, Some(9), scale);
    let c = bwd_default_configs(32);
    let (dq, dk, _) = backward_run(&Device::cpu(), &c, &s, &x, scale, Some(9)).unwrap();
    let tol = tolerance::<f16>();
    let right = backward_reference(&s, Some(9), (&x.q, &x.k, &x.v), &x.d_o, scale);
    worst("dQ", &dq, &right.dq, tol).unwrap();
    for window in [None, Some(10)] {
        let wrong = backward_reference(&s, window, (&x.q, &x.k, &x.v), &x.d_o, scale);
        let err = worst("dQ", &dq, &wrong.dq, tol)
            .and_then(|_| worst("dK", &dk, &wrong.dk, tol))
            .unwrap_err();
        println!("window {window:?} instead of 9: {err}");
    }
}
