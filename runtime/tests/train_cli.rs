//! `warpforge train` end to end on the CPU interpreter, on the tiny fixture model and a
//! corpus of token ids written here: a run killed mid-step and resumed gives the
//! uninterrupted run's loss curve bit for bit; the checkpoint is a model directory that
//! `warpforge generate` loads; settings come from `--config` with flags winning; bad
//! settings are refused before any work.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train/model")
}

/// Documents of arithmetic progressions mod 61 over ids 3..64, framed by BOS (1) and EOS
/// (2), as little-endian u32s: learnable, so the loss falls.
fn write_corpus(path: &Path) {
    let mut ids = vec![];
    let mut state = 12345u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for _ in 0..60 {
        let (len, start, step) = (5 + next(36), next(61), 1 + next(5));
        ids.push(1u32);
        ids.extend((0..len).map(|i| 3 + ((start + i * step) % 61) as u32));
        ids.push(2);
    }
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn train_command(dir: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warpforge"));
    c.current_dir(dir)
        .arg("train")
        .arg("--model")
        .arg(model())
        .args([
            "--data",
            "corpus.bin",
            "--out",
            out,
            "--backend",
            "cpu",
            "--quiet",
        ])
        .args([
            "--seq-len",
            "32",
            "--batch-tokens",
            "128",
            "--micro-batch-tokens",
            "64",
        ])
        .args(["--steps", "6", "--checkpoint-every", "2"])
        .args(extra);
    if !extra.contains(&"--lr") {
        c.args(["--lr", "3e-3"]);
    }
    c
}

fn run(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn losses(log: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap().to_bits(),
            )
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_bit_for_bit_and_its_checkpoint_generates() {
    killed_run_resumes(&[]);
}

/// The same with the optimizer's moments in FP8 (codes and group metadata checkpointed).
#[test]
fn a_killed_run_with_fp8_moments_resumes_bit_for_bit() {
    killed_run_resumes(&["--optimizer-states", "fp8"]);
}

/// The same under COAT's FP8 precision flow, with LAMB on FP8 moments.
#[test]
fn a_killed_fp8_lamb_run_resumes_bit_for_bit() {
    killed_run_resumes(&[
        "--precision",
        "fp8",
        "--optimizer",
        "lamb",
        "--lr",
        "0.05",
        "--optimizer-states",
        "fp8",
    ]);
}

fn killed_run_resumes(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("corpus.bin"));
    run(train_command(dir.path(), "whole", extra));
    let whole = losses(&dir.path().join("whole/train-log.jsonl"));
    assert_eq!(whole.len(), 6);
    assert!(
        f64::from_bits(whole[5].1) < f64::from_bits(whole[0].1),
        "the loss falls over six steps: {whole:?}"
    );

    // Kill the second run once it has logged step 3 (after the step-2 checkpoint, inside
    // step 4's work or later), then resume.
    let log = dir.path().join("cut/train-log.jsonl");
    let mut child = train_command(dir.path(), "cut", extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "the run never reached step 3");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().unwrap();
    let cut_at = losses(&log).len();
    run(train_command(
        dir.path(),
        "cut",
        &[extra, &["--resume"]].concat(),
    ));
    assert_eq!(
        losses(&log),
        whole,
        "resumed after {cut_at} logged steps: the curve differs from the uninterrupted run"
    );

    // The last checkpoint is a model directory generate loads.
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"id\": \"a\", \"prompt_ids\": [1, 5, 8, 11]}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .arg("generate")
        .arg("--model")
        .arg(dir.path().join("whole/step-6"))
        .arg("--input")
        .arg(&prompts)
        .args([
            "--backend",
            "cpu",
            "--quiet",
            "--max-tokens",
            "4",
            "--ignore-eos",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        line["token_ids"].as_array().map(Vec::len),
        Some(4),
        "{line}"
    );
}

#[test]
fn settings_come_from_the_config_file_with_flags_winning_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("corpus.bin"));
    let config = dir.path().join("train.json");
    std::fs::write(
        &config,
        format!(
            "{{\"model\": {:?}, \"data\": \"corpus.bin\", \"out\": \"cfg\", \"steps\": 5, \
             \"seq-len\": 32, \"batch_tokens\": 64, \"backend\": \"cpu\", \"optimizer\": \"lamb\"}}",
            model()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .current_dir(dir.path())
        .args(["train", "--quiet", "--steps", "1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        losses(&dir.path().join("cfg/train-log.jsonl")).len(),
        1,
        "--steps wins"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("cfg/step-1/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["settings"]["optimizer"], "lamb");

    for (args, says) in [
        (
            vec!["--seq-len", "30", "--batch-tokens", "64"],
            "multiple of --seq-len",
        ),
        (vec!["--seq-len", "100000"], "max_position_embeddings"),
        (vec!["--optimizer", "sgd"], "unknown optimizer"),
        (vec!["--precision", "fp4"], "--precision"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_warpforge"))
            .current_dir(dir.path())
            .args([
                "train",
                "--quiet",
                "--backend",
                "cpu",
                "--data",
                "corpus.bin",
            ])
            .args(["--out", "bad", "--model"])
            .arg(model())
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
