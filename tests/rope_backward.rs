//! RoPE backward (`rope_bwd_{f32,f16,bf16}`) on the CPU interpreter: every config of every
//! instance at the RoPE family's ragged problems against the reference exactly; the f32
//! instance against central finite differences of an f64 forward under each scaling
//! (default, linear, Llama 3) with GQA and partial rotary; backward ∘ forward ≈ identity;
//! NVRTC compiles of the default configs.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::{Buffer, Device};
use warpforge::kernels::family::Lcg;
use warpforge::kernels::rope::scaling::angle;
use warpforge::kernels::rope::{launch_rope, launch_rope_bwd, Rope, RopeScaling, RopeShape};

const NAMES: [&str; 3] = ["rope_bwd_f32", "rope_bwd_f16", "rope_bwd_bf16"];

#[test]
fn whole_space_of_every_instance_is_exact() {
    for name in NAMES {
        let k = kernel(name);
        assert_eq!(k.tolerance(&k.problems()[0]), 0.0, "{name}");
    }
    let runs = check_whole_space(&NAMES);
    println!("{runs} (instance, config, problem) runs exact");
}

/// The three scalings the family checks.
fn ropes(rotary_dim: usize) -> [Rope; 3] {
    let plain = |scaling| Rope {
        theta: 10000.0,
        rotary_dim,
        scaling,
    };
    [
        plain(RopeScaling::Default),
        plain(RopeScaling::Linear { factor: 4.0 }),
        Rope::llama3_1(rotary_dim),
    ]
}

/// RoPE in f64 without roundings (`[tokens, heads, head_dim]`), θ as the kernels' table.
fn forward64(x: &[f64], heads: usize, head_dim: usize, positions: &[u32], rope: &Rope) -> Vec<f64> {
    let half = rope.rotary_dim / 2;
    let inv = rope.inv_freq();
    let mut out = x.to_vec();
    for (t, &p) in positions.iter().enumerate() {
        for h in 0..heads {
            let row = &mut out[(t * heads + h) * head_dim..][..head_dim];
            for i in 0..half {
                let (s, c) = angle(p, inv[i]).sin_cos();
                let (a, b) = (row[i], row[i + half]);
                row[i] = a * c - b * s;
                row[i + half] = b * c + a * s;
            }
        }
    }
    out
}

/// `dL/dq` and `dL/dk` of `L = Σ wq ⊙ rope(q) + Σ wk ⊙ rope(k)` by central differences
/// against `rope_bwd_f32` of (wq, wk), for each scaling: tokens at positions 0‥ and at a
/// long offset (Llama 3's bands), 4 query and 2 key heads, 32 of 48 dims rotated.
#[test]
fn gradients_match_central_differences() {
    let (tokens, q_heads, k_heads, head_dim, rotary_dim) = (5, 4, 2, 48, 32);
    let positions: Vec<u32> = vec![0, 1, 2, 3000, 9001];
    let mut rng = Lcg::for_dims(&[tokens, head_dim], 41);
    let q = rng.floats(tokens * q_heads * head_dim, 2.0);
    let k = rng.floats(tokens * k_heads * head_dim, 2.0);
    let wq = rng.floats(q.len(), 1.0);
    let wk = rng.floats(k.len(), 1.0);
    let device = Device::cpu();
    let shape = RopeShape {
        tokens,
        q_heads,
        k_heads,
        head_dim,
        rotary_dim,
        table_rows: 9002,
    };
    let config = kernel("rope_bwd_f32").default_config();
    let mut worst = 0f64;
    for rope in ropes(rotary_dim) {
        let table = device.upload(&rope.table(shape.table_rows)).unwrap();
        let pos = device.upload(&positions).unwrap();
        let mut dq: Buffer<f32> = device.upload(&wq).unwrap();
        let mut dk: Buffer<f32> = device.upload(&wk).unwrap();
        launch_rope_bwd(&device, &config, (&mut dq, &mut dk), (&pos, &table), shape).unwrap();
        let grads = [
            (device.download(&dq).unwrap(), &q, &wq, q_heads),
            (device.download(&dk).unwrap(), &k, &wk, k_heads),
        ];
        for (got, x, w, heads) in grads {
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let loss = |x: &[f64]| -> f64 {
                let y = forward64(x, heads, head_dim, &positions, &rope);
                y.iter().zip(w.iter()).map(|(y, &w)| y * w as f64).sum()
            };
            let h = 1e-4;
            for i in 0..x64.len() {
                let (mut plus, mut minus) = (x64.clone(), x64.clone());
                plus[i] += h;
                minus[i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                let err = (got[i] as f64 - fd).abs() / fd.abs().max(1.0);
                worst = worst.max(err);
                assert!(
                    err < 1e-5,
                    "{:?} [{i}]: kernel {} vs {fd}",
                    rope.scaling,
                    got[i]
                );
            }
        }
    }
    println!("max relative |kernel − central difference| = {worst:.2e}");
}

/// The backward undoes the forward (the rotation is orthogonal): f32 Q and K come back
/// within a few f32 ulps, under the Llama-3 scaling at long positions.
#[test]
fn backward_inverts_the_forward() {
    let (tokens, heads, head_dim) = (6, 3, 64);
    let positions: Vec<u32> = vec![0, 5, 17, 400, 8191, 20000];
    let rope = Rope::llama3_1(head_dim);
    let shape = RopeShape {
        tokens,
        q_heads: heads,
        k_heads: 1,
        head_dim,
        rotary_dim: head_dim,
        table_rows: 20001,
    };
    let mut rng = Lcg::for_dims(&[tokens, heads], 43);
    let q0 = rng.floats(tokens * heads * head_dim, 2.0);
    let k0 = rng.floats(tokens * head_dim, 2.0);
    let device = Device::cpu();
    let table = device.upload(&rope.table(shape.table_rows)).unwrap();
    let pos = device.upload(&positions).unwrap();
    let mut q = device.upload(&q0).unwrap();
    let mut k = device.upload(&k0).unwrap();
    let fwd = kernel("rope_f32").default_config();
    let bwd = kernel("rope_bwd_f32").default_config();
    launch_rope(&device, &fwd, (&mut q, &mut k), (&pos, &table), shape).unwrap();
    launch_rope_bwd(&device, &bwd, (&mut q, &mut k), (&pos, &table), shape).unwrap();
    let mut worst = 0f32;
    for (got, want) in [
        (device.download(&q).unwrap(), &q0),
        (device.download(&k).unwrap(), &k0),
    ] {
        for (g, w) in got.iter().zip(want.iter()) {
            worst = worst.max((g - w).abs());
        }
    }
    println!("max |rope_bwd(rope(x)) − x| = {worst:.2e} (|x| < 2)");
    assert!(worst < 2e-6, "{worst}");
}

/// The default configs compile with NVRTC without spilling.
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&NAMES);
}
