//! The `warpforge` CLI verbs, run as a user would.

use std::process::{Command, Output};

fn warpforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .args(args)
        .env("WARPFORGE_CACHE_DIR", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run warpforge")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn kernels_lists_each_kernel_with_its_space() {
    let o = warpforge(&["kernels"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for name in ["vector_add", "sum_partials", "gemm", "softmax"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("BLOCK ∈ {128, 256, 512}"), "{text}");
}

#[test]
fn emit_prints_cuda_c_for_a_config() {
    let o = warpforge(&["emit", "vector_add", "--config", "BLOCK=128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("extern \"C\" __global__"), "{text}");
    assert!(text.contains("__launch_bounds__(128)"), "{text}");
    assert!(text.contains("BLOCK=128"), "{text}");
}

#[test]
fn bad_input_gives_one_clear_line_and_a_nonzero_exit() {
    let cases: [(&[&str], &str); 4] = [
        (&["emit", "nope"], "unknown kernel `nope`"),
        (
            &["emit", "vector_add", "--config", "BLOCK=100"],
            "BLOCK=100 is outside the declared space",
        ),
        (
            &["emit", "vector_add", "--config", "WIDTH=4"],
            "has no parameter `WIDTH`",
        ),
        (&["compile", "vector_add", "--arch", "sm_xx"], "sm_xx"),
    ];
    for (args, expected) in cases {
        let o = warpforge(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?} printed more than one line:\n{err}"
        );
    }
}

#[test]
fn check_runs_a_kernel_on_the_interpreter() {
    let o = warpforge(&[
        "check",
        "vector_add",
        "--backend",
        "cpu",
        "--config",
        "BLOCK=256,ITEMS=1",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("5 passed, 0 failed"), "{text}");
    assert!(text.contains("max abs err"), "{text}");
}

#[test]
fn autotune_replay_reports_each_strategy_as_json() {
    let file = warpforge_autotune::replay::tuning_spaces_dir().join("convolution/A4000.json.gz");
    if !file.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing in CI",
            file.display()
        );
        eprintln!(
            "SKIPPED: {} not found (set WARPFORGE_TUNING_SPACES)",
            file.display()
        );
        return;
    }
    let o = warpforge(&[
        "autotune",
        "--replay",
        file.to_str().unwrap(),
        "--runs",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON output");
    let strategies: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, ["random", "local", "surrogate"]);
    for r in results.as_array().unwrap() {
        assert_eq!(r["runs"], 5);
        assert_eq!(r["target"], 0.95);
        assert!(
            r["median_evals"].as_u64().unwrap() >= 1
                && r["p90_evals"].as_u64().unwrap() >= r["median_evals"].as_u64().unwrap()
        );
    }
}
