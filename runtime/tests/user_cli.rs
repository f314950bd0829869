//! The embeddable command line (`warpforge_runtime::cli::user`) over a user's own kernel:
//! the kernel of `examples/user_cli.rs`, which no library list knows.

#[path = "../examples/user_cli.rs"]
mod example;

use clap::Parser;
use std::process::ExitCode;
use warpforge_runtime::cli::user::{run, UserCli};

fn user(args: &[&str]) -> anyhow::Result<ExitCode> {
    let cli = UserCli::try_parse_from(std::iter::once("my-engine").chain(args.iter().copied()))?;
    run(&example::kernels(), cli)
}

#[test]
fn a_users_kernel_is_checked_on_the_interpreter() {
    assert_eq!(
        user(&["check", "scale_shift", "--backend", "cpu"]).unwrap(),
        ExitCode::SUCCESS
    );
    assert_eq!(
        user(&["check", "--all", "--backend", "cpu", "--config", "BLOCK=64"]).unwrap(),
        ExitCode::SUCCESS
    );
}

#[test]
fn a_users_kernel_is_emitted_and_listed() {
    assert_eq!(user(&["kernels"]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        user(&["emit", "scale_shift", "--config", "BLOCK=256"]).unwrap(),
        ExitCode::SUCCESS
    );
}

#[test]
fn unknown_names_and_configs_are_errors_that_say_what_exists() {
    let err = user(&["emit", "vector_add"]).unwrap_err().to_string();
    assert!(err.contains("unknown kernel `vector_add`"), "{err}");
    assert!(err.contains("scale_shift"), "{err}");
    let err = user(&["emit", "scale_shift", "--config", "BLOCK=100"]).unwrap_err();
    assert!(err.to_string().contains("BLOCK=100"), "{err}");
}

#[test]
fn a_users_kernel_is_exported() {
    if warpforge_dsl::nvrtc::version().is_err() {
        eprintln!("SKIPPED a_users_kernel_is_exported: NVRTC not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = ["compile", "scale_shift", "--arch", "sm_90", "--out", out];
    assert_eq!(user(&args).unwrap(), ExitCode::SUCCESS);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for ext in [".cu", ".sm_90.ptx", ".sm_90.cubin", ".json"] {
        assert!(
            names.iter().any(|n| n.ends_with(ext)),
            "{ext} missing: {names:?}"
        );
    }
}

#[test]
fn a_users_kernel_is_tuned_from_a_shapes_file() {
    if warpforge_dsl::nvrtc::version().is_err() {
        eprintln!("SKIPPED a_users_kernel_is_tuned_from_a_shapes_file: NVRTC not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shapes = dir.path().join("shapes.json");
    std::fs::write(&shapes, r#"[{"kernel": "scale_shift", "dims": [100000]}]"#).unwrap();
    let shapes = shapes.to_str().unwrap();
    // Without a GPU: the space, its NVRTC pruning and the shape to tune.
    let dry = ["tune", "--shapes", shapes, "--dry-run"];
    assert_eq!(user(&dry).unwrap(), ExitCode::SUCCESS);
    let err = user(&["tune", "--shapes", shapes, "--kernels", "nope", "--dry-run"]).unwrap_err();
    assert!(err.to_string().contains("unknown kernel `nope`"), "{err}");
    std::fs::write(
        dir.path().join("bad.json"),
        r#"[{"kernel": "scale_shift", "dims": []}]"#,
    )
    .unwrap();
    let bad = dir.path().join("bad.json");
    let err = user(&["tune", "--shapes", bad.to_str().unwrap(), "--dry-run"]).unwrap_err();
    assert!(err.to_string().contains("shape 0"), "{err}");
}
