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
