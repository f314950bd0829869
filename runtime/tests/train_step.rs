//! One training step of a tiny Llama on the kernels (the CPU interpreter) against PyTorch:
//! the loss, every parameter's gradient and the weights after one AdamW update, from the
//! fixture `scripts/make-train-fixture.py` wrote (f32 PyTorch on bf16-valued weights).
//!
//! The step computes in bf16 (f32 accumulation, f32 weight gradients), PyTorch in f32, so
//! the tolerances are bf16's: each is stated where it is checked, with the measured error
//! printed (`--nocapture`).

use safetensors::SafeTensors;
use serde_json::Value;
use std::path::PathBuf;
use warpforge_dsl::prelude::bf16;
use warpforge_dsl::Device;
use warpforge_runtime::model::{ModelConfig, ModelWeights};
use warpforge_runtime::train::data::Batch;
use warpforge_runtime::train::optimizer::{OptimizerConfig, OptimizerKind};
use warpforge_runtime::train::params::{hf_names, Params};
use warpforge_runtime::train::step::Model;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train")
}

fn batch() -> Batch {
    let text = std::fs::read_to_string(fixture().join("batch.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let list = |k: &str| -> Vec<i64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    Batch {
        tokens: list("tokens").iter().map(|&t| t as u32).collect(),
        targets: list("targets").iter().map(|&t| t as i32).collect(),
        positions: list("positions").iter().map(|&t| t as u32).collect(),
        cu_seqlens: list("cu_seqlens").iter().map(|&t| t as u32).collect(),
        rows: v["rows"].as_u64().unwrap() as usize,
        seq_len: v["seq_len"].as_u64().unwrap() as usize,
    }
}

struct Expected {
    data: Vec<u8>,
}

impl Expected {
    fn load() -> Expected {
        Expected {
            data: std::fs::read(fixture().join("expected.safetensors")).unwrap(),
        }
    }

    fn get(&self, name: &str) -> Vec<f32> {
        let file = SafeTensors::deserialize(&self.data).unwrap();
        let t = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn setup(device: &Device) -> (ModelConfig, Params<bf16>) {
    let dir = fixture().join("model");
    let config = ModelConfig::load(&dir).unwrap();
    let weights = ModelWeights::open(&dir).unwrap();
    let params = Params::<bf16>::load(device, &config, &weights, false).unwrap();
    (config, params)
}

/// max |got − want| / max |want|.
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &w| m.max(w.abs() as f64));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    err / scale.max(1e-30)
}

#[test]
fn the_loss_matches_pytorch() {
    let device = Device::cpu();
    let (config, params) = setup(&device);
    let model = Model::<bf16>::new(&device, &config, 64).unwrap();
    let b = batch();
    let got = model.eval_loss(&params, &b).unwrap();
    let want = Expected::load().get("loss")[0] as f64;
    let loss = got.sum / got.counted as f64;
    println!("loss: warpforge bf16 {loss:.6}, PyTorch f32 {want:.6}");
    assert_eq!(got.counted, b.counted());
    // bf16 activations through two layers: a few bf16 ulps (2^-8 relative) of the loss.
    assert!((loss - want).abs() <= 2e-2 * want, "loss {loss} vs {want}");
}

#[test]
fn gradients_and_one_adamw_step_match_pytorch() {
    let device = Device::cpu();
    let (config, mut params) = setup(&device);
    let model = Model::<bf16>::new(&device, &config, 64).unwrap();
    let b = batch();
    params.zero_grads(&device).unwrap();
    let scale = 1.0 / b.counted() as f32;
    model.forward_backward(&mut params, &b, scale).unwrap();
    let expected = Expected::load();
    let mut worst = 0.0f64;
    for p in &params.tensors {
        let got = device.download(&*params.grad(p.role).unwrap()).unwrap();
        let want: Vec<f32> = hf_names(p.role)
            .iter()
            .flat_map(|n| expected.get(&format!("grad.{n}")))
            .collect();
        let err = relative_error(&got, &want);
        println!("grad {:?}: relative error {err:.2e}", hf_names(p.role));
        worst = worst.max(err);
    }
    // bf16 rounding of every activation and activation gradient (2^-8 each) compounds
    // through two layers and the attention backward: a few percent of each tensor's largest
    // gradient.
    assert!(worst <= 5e-2, "worst gradient error {worst:.3e}");

    let mut opt = warpforge_runtime::train::optimizer::Optimizer::new(
        &device,
        &params,
        OptimizerConfig {
            weight_decay: 0.1,
            ..OptimizerConfig::defaults(OptimizerKind::AdamW)
        },
    )
    .unwrap();
    let before: Vec<Vec<f32>> = params
        .tensors
        .iter()
        .map(|p| device.download(&*params.master(p.role).unwrap()).unwrap())
        .collect();
    opt.step(&device, &mut params, 1e-3, 1).unwrap();
    for (p, w0) in params.tensors.iter().zip(before) {
        let got = device.download(&*params.master(p.role).unwrap()).unwrap();
        let want: Vec<f32> = hf_names(p.role)
            .iter()
            .flat_map(|n| expected.get(&format!("adamw.{n}")))
            .collect();
        // Step one of Adam moves every weight by lr · g/|g| (± lr), so the update's sign is
        // what a gradient error could flip: compare the updates, each ±1e-3 · (1 ± ...).
        let mut flipped = 0usize;
        for ((&g, &w), &o) in got.iter().zip(&want).zip(&w0) {
            let (du, dw) = (g - o, w - o);
            if (du - dw).abs() > 1e-4 + 1e-3 * o.abs() {
                flipped += 1;
            }
        }
        let share = flipped as f64 / got.len() as f64;
        println!(
            "adamw {:?}: {flipped} of {} updates differ",
            hf_names(p.role),
            got.len()
        );
        // Gradients near zero may take the other sign in bf16: at most 2% of the updates.
        assert!(
            share <= 0.02,
            "{:?}: {share:.3} of the updates differ",
            hf_names(p.role)
        );
    }
}
