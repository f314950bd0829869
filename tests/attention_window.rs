//! Sliding-window attention (Mistral, Qwen2): the forward and decode kernels with a window
//! against the f64 reference with the same mask, on the CPU interpreter, and a window wider
//! than every sequence equal to no window bit for bit.

use warpforge::dsl::Device;
use warpforge::kernels::attention::{
    compare, decode_default_config, decode_launch_with, default_config, inputs, launch_with,
    paginate, reference_masked, AttnBuffers, AttnShape, DecodeWorkspace,
};
use warpforge::prelude::bf16;

fn shape(q: &[usize], k: &[usize]) -> AttnShape {
    AttnShape {
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        causal: true,
        q_lens: q.to_vec(),
        k_lens: k.to_vec(),
    }
}

/// O and LSE of the forward (`decode = false`) or decode kernel with `window`, paged K/V.
fn run(
    shape: &AttnShape,
    window: Option<u32>,
    decode: bool,
    splits: usize,
) -> (Vec<bf16>, Vec<f32>) {
    let device = Device::cpu();
    let (q, k, v) = inputs::<bf16>(shape);
    let (kc, vc, table, per_seq) = paginate(shape, (&k, &v), 16, 3);
    let mut bufs =
        AttnBuffers::upload_paged(&device, shape, &q, (&kc, &vc), &table, 16, per_seq).unwrap();
    let mut args = bufs.args();
    args.window = window;
    let scale = shape.default_scale();
    if decode {
        let mut ws = DecodeWorkspace::new(&device, shape, splits).unwrap();
        decode_launch_with(
            &device,
            &decode_default_config(64),
            shape,
            args,
            &mut ws,
            scale,
        )
        .unwrap();
    } else {
        launch_with(&device, &default_config(64), shape, args, scale).unwrap();
    }
    (
        device.download(&bufs.o).unwrap(),
        device.download(&bufs.lse).unwrap(),
    )
}

fn check(shape: &AttnShape, window: u32, decode: bool, splits: usize) {
    let got = run(shape, Some(window), decode, splits);
    let (q, k, v) = inputs::<bf16>(shape);
    let w = window as i64;
    let want = reference_masked(shape, &q, &k, &v, shape.default_scale(), |b, i, j| {
        let diag = i as i64 + shape.k_lens[b] as i64 - shape.q_lens[b] as i64;
        shape.visible(b, i, j) && diag - (j as i64) < w
    });
    compare(shape, (&got.0, &got.1), &want)
        .unwrap_or_else(|e| panic!("window {window} decode {decode} splits {splits}: {e}"));
}

#[test]
fn forward_with_a_window_matches_the_reference() {
    // Windows inside one tile, across tiles, and of one key; a chunk continuing a cache.
    let s = shape(&[70, 33, 129], &[70, 90, 129]);
    for w in [1, 5, 40, 64, 100] {
        check(&s, w, false, 1);
    }
}

#[test]
fn decode_with_a_window_matches_the_reference() {
    let s = shape(&[1, 4, 1], &[37, 200, 5]);
    for (w, splits) in [(1, 1), (8, 1), (8, 3), (70, 2), (300, 1)] {
        check(&s, w, true, splits);
    }
}

#[test]
fn a_window_wider_than_the_sequences_changes_nothing() {
    let s = shape(&[50, 20], &[50, 80]);
    assert_eq!(run(&s, Some(80), false, 1), run(&s, None, false, 1));
    let d = shape(&[1, 3], &[90, 33]);
    assert_eq!(run(&d, Some(90), true, 1), run(&d, None, true, 1));
}
