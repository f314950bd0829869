//! Embedding backward (`embedding_bwd_{f32,f16,bf16}`) on the CPU interpreter: every config
//! at the family's check problems exactly, the CSR index by hand and its errors, the
//! gradient against central finite differences of the f64 lookup loss, accumulation over
//! two micro-batches, and NVRTC compiles of the defaults.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Device};
use warpforge::kernels::embed::host::{launch_embedding_bwd, DeviceIndex, EmbedError, TokenIndex};
use warpforge::kernels::family::Lcg;

const NAMES: [&str; 3] = [
    "embedding_bwd_f32",
    "embedding_bwd_f16",
    "embedding_bwd_bf16",
];

#[test]
fn whole_space_of_every_instance_is_exact() {
    for name in NAMES {
        let k = kernel(name);
        assert_eq!(k.tolerance(&k.problems()[0]), 0.0);
    }
    let runs = check_whole_space(&NAMES);
    println!("{runs} (kernel, config, problem) runs exact");
}

#[test]
fn token_index_by_hand() {
    let index = TokenIndex::build(&[3, 1, 3, 0, 3, 1], 5).unwrap();
    assert_eq!(index.ids, [0, 1, 3]);
    assert_eq!(index.offsets, [0, 1, 3, 6]);
    assert_eq!(index.positions, [3, 1, 5, 0, 2, 4]);
    assert_eq!(
        TokenIndex::build(&[0, 5], 5),
        Err(EmbedError::IdOutOfRange {
            position: 1,
            id: 5,
            vocab: 5
        })
    );
    let empty = TokenIndex::build(&[], 5).unwrap();
    assert_eq!(
        (empty.distinct(), empty.offsets.as_slice()),
        (0, &[0u32][..])
    );
}

/// Runs the default f32 config: `dweight += scatter(dy)`.
fn scatter(device: &Device, dy: &[f32], ids: &[u32], dweight: &mut Buffer<f32>, hidden: usize) {
    let vocab = dweight.len() / hidden;
    let index = DeviceIndex::upload(device, &TokenIndex::build(ids, vocab).unwrap()).unwrap();
    let dyb = device.upload(dy).unwrap();
    let config = kernel("embedding_bwd_f32").default_config();
    launch_embedding_bwd(device, &config, (&dyb, &index), dweight, hidden as u32).unwrap();
}

/// `L(W) = Σ_p dy[p] · W[ids[p]]`; its gradient is the scatter-add, checked by central
/// differences in f64 on every weight (used ids and unused ones, whose gradient is 0).
#[test]
fn gradient_matches_central_differences() {
    let (tokens, vocab, hidden) = (23, 9, 8);
    let mut rng = Lcg::for_dims(&[tokens, vocab, hidden], 4);
    let ids: Vec<u32> = (0..tokens).map(|_| rng.next_u32() % 7).collect();
    let dy = rng.floats(tokens * hidden, 1.0);
    let weights: Vec<f64> = rng
        .floats(vocab * hidden, 1.0)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let loss = |w: &[f64]| -> f64 {
        ids.iter()
            .enumerate()
            .map(|(p, &id)| {
                (0..hidden)
                    .map(|c| dy[p * hidden + c] as f64 * w[id as usize * hidden + c])
                    .sum::<f64>()
            })
            .sum()
    };
    let device = Device::cpu();
    let mut grad: Buffer<f32> = device.zeros(vocab * hidden).unwrap();
    scatter(&device, &dy, &ids, &mut grad, hidden);
    let grad = device.download(&grad).unwrap();
    let h = 1e-3;
    for i in 0..vocab * hidden {
        let (mut plus, mut minus) = (weights.clone(), weights.clone());
        plus[i] += h;
        minus[i] -= h;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
        assert!(
            (grad[i] as f64 - fd).abs() < 1e-5,
            "dW[{i}]: {} vs {fd}",
            grad[i]
        );
    }
}

/// Two micro-batches accumulated into one buffer give the sum of their gradients, and a
/// rerun gives the same bits.
#[test]
fn accumulates_over_micro_batches_reproducibly() {
    let (tokens, vocab, hidden) = (40, 6, 12);
    let mut rng = Lcg::for_dims(&[tokens, vocab, hidden], 6);
    let ids: Vec<u32> = (0..2 * tokens)
        .map(|_| rng.next_u32() % vocab as u32)
        .collect();
    let dy = rng.floats(2 * tokens * hidden, 1.0);
    let device = Device::cpu();
    let run = || {
        let mut grad: Buffer<f32> = device.zeros(vocab * hidden).unwrap();
        scatter(
            &device,
            &dy[..tokens * hidden],
            &ids[..tokens],
            &mut grad,
            hidden,
        );
        scatter(
            &device,
            &dy[tokens * hidden..],
            &ids[tokens..],
            &mut grad,
            hidden,
        );
        device.download(&grad).unwrap()
    };
    let first = run();
    let mut whole = vec![0.0f64; vocab * hidden];
    for (p, &id) in ids.iter().enumerate() {
        for c in 0..hidden {
            whole[id as usize * hidden + c] += dy[p * hidden + c] as f64;
        }
    }
    for (g, w) in first.iter().zip(&whole) {
        assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
    }
    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&first), bits(&run()));
}

/// The default configs compile with NVRTC without spilling (see [`compile_defaults`]).
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&NAMES);
}
