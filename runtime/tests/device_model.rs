//! The device model (every layer on warpforge kernels, here on the CPU interpreter) against
//! the transformers fixture and the host reference.

use serde_json::Value;
use std::path::{Path, PathBuf};
use warpforge_dsl::prelude::bf16;
use warpforge_dsl::Device;
use warpforge_runtime::engine::model::DeviceModel;
use warpforge_runtime::engine::plan::{Chunk, LogitRows, StepPlan};
use warpforge_runtime::model::{HostModel, ModelDir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn pages(first: u32, n: usize) -> Vec<u32> {
    (first..first + n as u32).collect()
}

#[test]
fn prompt_logits_match_the_host_reference() {
    let dir = fixtures().join("tiny-llama");
    let model = ModelDir::open(&dir).unwrap();
    let host = HostModel::load(&dir).unwrap();
    let mut dev =
        DeviceModel::<bf16>::load(Device::cpu(), &model.config, &model.weights, (64, 16), 128)
            .unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny-llama.expected.json")).unwrap(),
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = expected["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ids(&p["ids"]))
        .collect();
    let mut next_page = 0u32;
    let chunks: Vec<Chunk> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = p.len().div_ceil(16);
            let c = Chunk {
                seq: i,
                tokens: p.clone(),
                start: 0,
                pages: pages(next_page, n),
                logits: LogitRows::All,
            };
            next_page += n as u32;
            c
        })
        .collect();
    let t = std::time::Instant::now();
    let out = dev
        .step(&StepPlan {
            chunks,
            shared_prefixes: vec![],
        })
        .unwrap();
    println!(
        "packed prefill of {} prompts: {:?}",
        prompts.len(),
        t.elapsed()
    );
    let vocab = model.config.vocab_size;
    for (i, p) in prompts.iter().enumerate() {
        let want = host.prompt_logits(p).unwrap();
        let got = &out[i];
        assert_eq!(got.len(), p.len() * vocab);
        let max = got
            .iter()
            .zip(&want.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = want.values.iter().map(|v| v.abs()).fold(0f32, f32::max);
        println!(
            "prompt {i}: {} tokens, max |diff| {max:.4} (max |logit| {scale:.2})",
            p.len()
        );
    }
}
