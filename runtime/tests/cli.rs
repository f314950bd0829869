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

/// The shared convolution space; None (after saying why the test skips) when it is absent
/// outside CI, a failure in CI.
fn convolution_space_or_skip() -> Option<std::path::PathBuf> {
    let file = warpforge_autotune::replay::tuning_spaces_dir().join("convolution/A4000.json.gz");
    if file.exists() {
        return Some(file);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI",
        file.display()
    );
    eprintln!(
        "SKIPPED: {} not found (set WARPFORGE_TUNING_SPACES)",
        file.display()
    );
    None
}

#[test]
fn autotune_replay_reports_each_strategy_as_json() {
    let Some(file) = convolution_space_or_skip() else {
        return;
    };
    let o = warpforge(&[
        "autotune",
        "--replay",
        file.to_str().unwrap(),
        "--runs",
        "5",
        "--max-evals",
        "300",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reports: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON output");
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "one space");
    assert_eq!(reports[0]["configs"], 4362);
    let rows = reports[0]["strategies"].as_array().unwrap();
    let strategies: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    // One GPU of this kernel in its folder: no transfer row.
    assert_eq!(strategies, ["random", "local", "surrogate", "gp"]);
    for r in rows {
        assert_eq!(
            (r["runs"].as_u64(), r["budget"].as_u64()),
            (Some(5), Some(300))
        );
        let targets = r["targets"].as_array().unwrap();
        let fractions: Vec<f64> = targets
            .iter()
            .map(|t| t["target"].as_f64().unwrap())
            .collect();
        assert_eq!(fractions, [0.9, 0.95, 0.99]);
        for t in targets {
            if let (Some(m), Some(p)) = (t["median"].as_u64(), t["p90"].as_u64()) {
                assert!(m >= 1 && p >= m, "{t}");
            }
        }
        let area = r["curve_area"].as_f64().unwrap();
        assert!(area > 0.0 && area <= 1.0, "{r}");
    }
}

/// `--target` chooses the fractions reported, as in `--replay FILE --runs 100 --target 0.95`;
/// a fraction outside (0, 1] is a usage error (exit 2).
#[test]
fn replay_reports_the_targets_asked_for() {
    let Some(file) = convolution_space_or_skip() else {
        return;
    };
    let path = file.to_str().unwrap();
    let args = [
        "autotune",
        "--replay",
        path,
        "--runs",
        "4",
        "--only",
        "surrogate",
    ];
    let o = warpforge(&[&args[..], &["--target", "0.95", "--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let reports: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON output");
    let targets = &reports[0]["strategies"][0]["targets"];
    let fractions: Vec<f64> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_f64().unwrap())
        .collect();
    assert_eq!(fractions, [0.95]);
    let o = warpforge(&[&args[..], &["--target", "0.99,0.9"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("90% med/p90   99% med/p90"),
        "{}",
        stdout(&o)
    );
    let o = warpforge(&[&args[..], &["--target", "1.5"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a fraction of the optimum"),
        "{}",
        stderr(&o)
    );
}

/// Whether NVRTC and cuobjdump are here; `false` after printing why the test skips, and a
/// panic instead when `WARPFORGE_REQUIRE_NVRTC=1` (CI) says they must be.
fn nvrtc_and_cuobjdump_or_skip(test: &str) -> bool {
    use warpforge_dsl::nvrtc;
    let missing = match (nvrtc::version(), nvrtc::sass::cuobjdump()) {
        (Ok(_), Ok(_)) => return true,
        (Err(e), _) => e.to_string(),
        (_, Err(e)) => e.to_string(),
    };
    if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") {
        panic!("{test}: WARPFORGE_REQUIRE_NVRTC=1 but a tool is missing:\n{missing}");
    }
    eprintln!("SKIPPED {test}: {missing}");
    false
}

#[test]
fn compile_sass_prints_the_listing_and_an_opcode_summary() {
    if !nvrtc_and_cuobjdump_or_skip("compile --sass") {
        return;
    }
    let o = warpforge(&[
        "compile",
        "vector_add",
        "--arch",
        "sm_80",
        "--config",
        "BLOCK=128,ITEMS=1",
        "--sass",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    let table_row = text.find("vector_add     sm_80").expect("the resource row");
    let listing = text
        .find("=== SASS of vector_add sm_80")
        .expect("the listing");
    assert!(table_row < listing, "the SASS follows the table:\n{text}");
    for expected in ["code for sm_80", "Function : vector_add", "LDG.E", "EXIT"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let summary = text
        .lines()
        .find(|l| l.starts_with("opcodes: sm_80: "))
        .unwrap_or_else(|| panic!("no opcode summary in:\n{text}"));
    assert!(
        summary.ends_with("HMMA 0, QMMA 0, LDGSTS 0, LDSM 0, LDL 0, STL 0"),
        "{summary}"
    );
}

/// An FP8 kernel compiled for sm_80 is skipped with what it needs, and the command passes.
#[test]
fn compile_skips_an_arch_gated_kernel_and_exits_zero() {
    if !nvrtc_and_cuobjdump_or_skip("compile arch skip") {
        return;
    }
    let o = warpforge(&["compile", "fp8_gemm_e4m3_f32", "--arch", "sm_80"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}\n{}", stderr(&o));
    assert!(
        text.contains("skipped (needs sm_89: mma_m16n8k32_e4m3_f32)"),
        "{text}"
    );
    assert!(text.contains("0 passed, 0 failed, 1 skipped"), "{text}");
    assert!(text.contains("nvrtc: "), "{text}");
}

/// A reader that stops early (`warpforge kernels | head -1`) ends the process quietly: no
/// panic message on stderr. The read end is closed before the listing is written, so every
/// write meets a closed pipe (Rust ignores SIGPIPE by default, and `println!` panics on
/// the EPIPE error unless the binary restores the default disposition).
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .arg("kernels")
        .env("WARPFORGE_CACHE_DIR", env!("CARGO_TARGET_TMPDIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warpforge");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "exit code of a panic");
}

#[test]
fn an_unknown_kernel_gets_close_names() {
    let o = warpforge(&["emit", "rmsnrom_bf16"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `rmsnorm_bf16`"),
        "{}",
        stderr(&o)
    );
    let o = warpforge(&["emit", "zzzzzz"]);
    assert!(!stderr(&o).contains("did you mean"), "{}", stderr(&o));
}

#[test]
fn kernels_json_describes_each_space() {
    let o = warpforge(&["kernels", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let kernels = v["kernels"].as_array().unwrap();
    let add = kernels.iter().find(|k| k["name"] == "vector_add").unwrap();
    assert_eq!(add["params"][0]["name"], "BLOCK");
    assert_eq!(
        add["params"][0]["values"],
        serde_json::json!([128, 256, 512])
    );
    assert!(add["configs"].as_u64().unwrap() > 1);
    let attn = kernels
        .iter()
        .find(|k| k["name"] == "flash_attn_fwd_bf16")
        .unwrap();
    assert!(!attn["constraints"].as_array().unwrap().is_empty());
}

/// One exit status family for every command (`warpforge --help` documents it): 2 for what
/// the user asked wrongly, 1 when the work itself failed; the error on stderr, nothing on
/// stdout.
#[test]
fn exit_status_is_2_for_usage_errors_and_1_for_failed_work() {
    let usage: [&[&str]; 5] = [
        &["emit", "nope"],
        &["check", "vector_add", "--all"],
        &["emit", "vector_add", "--config", "BLOCK=100"],
        &["compile", "vector_add", "--arch", "sm_xx"],
        &["kernels", "--no-such-flag"],
    ];
    for args in usage {
        let o = warpforge(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stdout(&o).is_empty(),
            "{args:?} wrote to stdout: {}",
            stdout(&o)
        );
    }
    // A tuning cache "directory" that is a file: reading it fails, which is the work's
    // failure, not the user's spelling.
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let o = warpforge(&["autotune", "--show", "--cache-dir", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let help = stdout(&warpforge(&["--help"]));
    assert!(help.contains("Exit status: 0"), "{help}");
}

#[test]
fn check_json_has_a_record_per_check_and_the_summary() {
    let o = warpforge(&[
        "check",
        "vector_add",
        "--backend",
        "cpu",
        "--config",
        "BLOCK=256,ITEMS=1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("stdout is one JSON");
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5);
    for c in checks {
        assert_eq!(c["kernel"], "vector_add");
        assert_eq!(c["status"], "passed");
        assert!(c["config"].as_str().unwrap().contains("BLOCK=256"), "{c}");
        assert!(c["max_abs_error"].as_f64().unwrap() <= c["tolerance"].as_f64().unwrap());
    }
    assert_eq!(v["summary"]["passed"], 5);
    assert_eq!(v["summary"]["failed"], 0);
}
