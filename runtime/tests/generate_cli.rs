//! `warpforge generate` end to end on the CPU interpreter: the shipped model's completions
//! equal transformers' greedy ones; the parity fixture's prompts (two sharing a 36-token
//! prefix) give transformers' greedy tokens under every scheduling choice — prefix sharing
//! and Hydragen on or off, whole or chunked prefill, a cache small enough to preempt; the
//! dumped prompt logits are transformers' within the bf16 tolerance; bad input names its
//! lines and writes nothing.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

fn generate(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .arg("generate")
        .args(["--backend", "cpu", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `--dump-logits` line's rows equal `want` within the bf16 tolerance: 4 units of 2^-8
/// times the largest |logit| (see device_model.rs).
fn assert_within_bf16(dumped: &Value, want: &[f32], what: &str) {
    let got: Vec<f32> = dumped["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{what}");
    let tol = 4.0 / 256.0 * want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= tol, "{what}: {max} > {tol}");
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn shipped_model_completes_as_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let model = root().join("models/tiny-llama");
    let out = generate(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        model.join("prompts.jsonl").to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--max-tokens",
        "24",
        "--ignore-eos",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("padding waste") && stderr.contains("peak KV memory"),
        "{stderr}"
    );
    let want: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(model.join("completions.json")).unwrap())
            .unwrap();
    // The shipped prompts: transformers' completions for the first ones; the last two share
    // a long prefix (the summary shows the KV bytes that saved).
    let got = lines(&out_path);
    assert!(got.len() >= want.len());
    assert!(
        !stderr.contains("KV saved (sharing)        0 B"),
        "{stderr}"
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["id"], w["id"]);
        assert_eq!(ids(&g["token_ids"]), ids(&w["token_ids"]), "{}", w["id"]);
        assert_eq!(g["finish_reason"], "length");
        assert!(g["text"]
            .as_str()
            .unwrap()
            .starts_with(w["text"].as_str().unwrap()));
    }
}

/// The fixture's prompts as a request file of token ids.
fn fixture_requests(dir: &Path) -> (PathBuf, Vec<Vec<u64>>, usize) {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny-llama.expected.json")).unwrap(),
    )
    .unwrap();
    let prompts = expected["prompts"].as_array().unwrap();
    let path = dir.join("requests.jsonl");
    let text: String = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}\n", json!({"id": i, "prompt_ids": p["ids"]})))
        .collect();
    std::fs::write(&path, text).unwrap();
    let greedy = prompts.iter().map(|p| ids(&p["greedy"])).collect();
    (
        path,
        greedy,
        expected["new_tokens"].as_u64().unwrap() as usize,
    )
}

#[test]
fn every_scheduling_choice_gives_transformers_greedy_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (input, want, n) = fixture_requests(dir.path());
    let model = fixtures().join("tiny-llama");
    let n = n.to_string();
    let choices: [&[&str]; 5] = [
        &[],
        &["--no-prefix-sharing"],
        &["--no-chunked-prefill"],
        &["--token-budget", "7"],
        // 7 pages of 16 tokens: not every request fits at once, so some are preempted.
        &[
            "--kv-memory",
            "1",
            "--page-size",
            "16",
            "--token-budget",
            "64",
        ],
    ];
    for extra in choices {
        let out_path = dir.path().join("out.jsonl");
        let mut args = vec![
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
            "--max-tokens",
            &n,
            "--ignore-eos",
        ];
        args.extend_from_slice(extra);
        let out = generate(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        let got: Vec<Vec<u64>> = lines(&out_path)
            .iter()
            .map(|l| ids(&l["token_ids"]))
            .collect();
        assert_eq!(got, want, "{extra:?}\n{stderr}");
        if extra.is_empty() {
            assert!(
                !stderr.contains("KV saved (sharing)        0 B"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn dumped_prompt_logits_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _, _) = fixture_requests(dir.path());
    let model = fixtures().join("tiny-llama");
    let (out_path, dump) = (
        dir.path().join("out.jsonl"),
        dir.path().join("logits.jsonl"),
    );
    let out = generate(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--max-tokens",
        "2",
        "--dump-logits",
        dump.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(fixtures().join("tiny-llama.expected-logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (i, line) in lines(&dump).iter().enumerate() {
        let t = st.tensor(&format!("prompt.{i}")).unwrap();
        let want: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_within_bf16(line, &want, &format!("prompt {i}"));
    }
}

#[test]
fn bad_lines_are_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"prompt_ids\": [1, 2]}\n{\"id\": 2, \"prompt\": \"\"}\nnot json\n",
    )
    .unwrap();
    let out_path = dir.path().join("out.jsonl");
    let model = root().join("models/tiny-llama");
    let out = generate(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("line 3"),
        "{stderr}"
    );
    assert!(!out_path.exists());
}

/// An int4 model written by `warpforge quantize` runs its MLP on the int4 GEMM; its prompt
/// logits are the dequantizing host reference's within the bf16 tolerance and its greedy
/// tokens are the reference's.
#[test]
fn quantized_model_matches_its_dequantized_reference() {
    use warpforge_runtime::model::HostModel;
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q4");
    let model = root().join("models/tiny-llama");
    let out = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .args([
            "quantize",
            "--model",
            model.to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
        ])
        .args(["--group", "32", "--dim", "oc", "--method", "rtn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = HostModel::load(&q).unwrap();
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 421, 419, 261, 420, 14, 355],
        vec![1, 298, 292, 14, 328, 432],
    ];
    let input = dir.path().join("in.jsonl");
    let text: String = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}\n", json!({"id": i, "prompt_ids": p})))
        .collect();
    std::fs::write(&input, text).unwrap();
    let (out_path, dump) = (
        dir.path().join("out.jsonl"),
        dir.path().join("logits.jsonl"),
    );
    let out = generate(&[
        "--model",
        q.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--max-tokens",
        "12",
        "--ignore-eos",
        "--dump-logits",
        dump.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("linears on the int4 GEMM"), "{stderr}");
    for ((p, line), dumped) in prompts.iter().zip(lines(&out_path)).zip(lines(&dump)) {
        let want = host.prompt_logits(p).unwrap().values;
        assert_within_bf16(&dumped, &want, &format!("prompt {p:?}"));
        let greedy: Vec<u64> = host
            .greedy(p, 12, &[])
            .unwrap()
            .iter()
            .map(|&t| t as u64)
            .collect();
        assert_eq!(ids(&line["token_ids"]), greedy);
    }
}
