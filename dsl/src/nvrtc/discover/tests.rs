//! Discovery order on fake directory trees.

use super::*;
use std::fs;

fn touch(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"").unwrap();
}

/// A toolkit at `root` with `lib` (relative) and `include/cuda_fp16.h`.
fn fake_toolkit(root: &Path, lib: &str) -> PathBuf {
    touch(&root.join(lib));
    touch(&root.join("include").join(HEADER));
    root.join(lib)
}

/// CUDA 12 wheels in `root/.venv`; returns `site-packages/nvidia`.
fn fake_cu12_venv(root: &Path) -> PathBuf {
    let nvidia = root.join(".venv/lib/python3.11/site-packages/nvidia");
    touch(&nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"));
    touch(&nvidia.join("cuda_runtime/include").join(HEADER));
    nvidia
}

fn inputs_in(dir: &Path) -> DiscoveryInputs {
    DiscoveryInputs {
        system_roots: vec![dir.join("usr-local-cuda")],
        ..DiscoveryInputs::default()
    }
}

#[test]
fn bogus_cuda_home_falls_through_to_a_venv_above() {
    let dir = tempfile::tempdir().unwrap();
    let nvidia = fake_cu12_venv(dir.path());
    let deep = dir.path().join("a/b/c");
    fs::create_dir_all(&deep).unwrap();
    let inputs = DiscoveryInputs {
        cuda_home: Some(dir.path().join("no-such-cuda")),
        search_from: vec![deep],
        ..inputs_in(dir.path())
    };
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"));
    assert_eq!(found.include, nvidia.join("cuda_runtime/include"));
    assert!(found.source.contains("CUDA 12 wheels"), "{}", found.source);
}

#[test]
fn order_is_override_then_cuda_home_then_system_toolkit_then_wheels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_cu12_venv(d);
    let system = fake_toolkit(&d.join("usr-local-cuda"), "lib64/libnvrtc.so.13");
    let mut inputs = DiscoveryInputs {
        search_from: vec![d.to_path_buf()],
        ..inputs_in(d)
    };
    assert_eq!(
        discover(&inputs).unwrap().lib,
        system,
        "toolkit before wheels"
    );
    let home = fake_toolkit(&d.join("cuda-home"), "lib64/libnvrtc.so.12");
    let path = fake_toolkit(&d.join("cuda-path"), "lib64/libnvrtc.so.12");
    inputs.cuda_path = Some(d.join("cuda-path"));
    assert_eq!(
        discover(&inputs).unwrap().lib,
        path,
        "CUDA_PATH before /usr/local/cuda"
    );
    inputs.cuda_home = Some(d.join("cuda-home"));
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, home, "CUDA_HOME before CUDA_PATH");
    assert_eq!(found.include, d.join("cuda-home/include"));
    assert!(found.source.starts_with("CUDA_HOME="), "{}", found.source);
    let custom = fake_toolkit(&d.join("custom"), "lib/libnvrtc.so.13");
    inputs.nvrtc_lib = Some(custom.clone());
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, custom, "the override wins");
    assert_eq!(
        found.include,
        d.join("custom/include"),
        "headers beside the overriding library, not CUDA_HOME's"
    );
}

#[test]
fn library_and_headers_come_from_one_installation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nvidia = fake_cu12_venv(d);
    // /usr/local/cuda has only the driver-side runtime: NVRTC but no headers.
    touch(&d.join("usr-local-cuda/lib64/libnvrtc.so.13"));
    // CUDA_HOME has headers but no NVRTC.
    touch(&d.join("cuda-home/include").join(HEADER));
    let inputs = DiscoveryInputs {
        cuda_home: Some(d.join("cuda-home")),
        search_from: vec![d.to_path_buf()],
        ..inputs_in(d)
    };
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"));
    assert_eq!(found.include, nvidia.join("cuda_runtime/include"));
}

#[test]
fn newest_major_in_a_directory_and_targets_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("usr-local-cuda");
    let lib = root
        .join("targets")
        .join(format!("{}-linux", std::env::consts::ARCH));
    for name in [
        "libnvrtc.so.11",
        "libnvrtc.so.12",
        "libnvrtc.so.13.0.88",
        "libnvrtc.so.13",
        "libnvrtc.so",
        "libnvrtc-builtins.so.13.0",
        "libnvrtc.alt.so.14",
    ] {
        touch(&lib.join("lib").join(name));
    }
    touch(&lib.join("include").join(HEADER));
    let found = discover(&inputs_in(d)).unwrap();
    assert_eq!(found.lib, lib.join("lib/libnvrtc.so.13"));
    assert_eq!(found.include, lib.join("include"));
    touch(&lib.join("lib/libnvrtc.so.14"));
    let found = discover(&inputs_in(d)).unwrap();
    assert_eq!(
        found.lib,
        lib.join("lib/libnvrtc.so.14"),
        "a later major too"
    );
    assert_eq!(lib_major("libnvrtc.so"), Some(0));
    assert_eq!(lib_major("libnvrtc.so.13.0.88"), Some(13));
    assert_eq!(lib_major("libnvrtc-builtins.so.13.0"), None);
    assert_eq!(lib_major("libnvrtc.so.x"), None);
}

#[test]
fn cuda13_wheels_before_cuda12_wheels_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nvidia = fake_cu12_venv(d);
    let inputs = DiscoveryInputs {
        virtual_env: Some(d.join(".venv")),
        ..inputs_in(d)
    };
    // cu13/ holding only cuobjdump (as here) or NVRTC without headers: not an installation.
    touch(&nvidia.join("cu13/bin/cuobjdump"));
    touch(&nvidia.join("cu13/lib/libnvrtc.so.13"));
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"));
    touch(&nvidia.join("cu13/include").join(HEADER));
    let found = discover(&inputs).unwrap();
    assert_eq!(found.lib, nvidia.join("cu13/lib/libnvrtc.so.13"));
    assert_eq!(found.include, nvidia.join("cu13/include"));
}

#[test]
fn nothing_found_lists_every_place_tried() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("bogus/lib64/libnvrtc.so.12"));
    let inputs = DiscoveryInputs {
        cuda_home: Some(dir.path().join("bogus")),
        search_from: vec![dir.path().to_path_buf()],
        ..inputs_in(dir.path())
    };
    let err = discover(&inputs).unwrap_err();
    let NvrtcError::NotFound { tried } = &err else {
        panic!("expected NotFound, got {err:?}")
    };
    let all = tried.join("\n");
    for expected in [
        "CUDA_HOME=",
        "bogus",
        "no cuda_fp16.h beside it",
        "CUDA_PATH: not set",
        "usr-local-cuda",
        "VIRTUAL_ENV: not set",
        "no .venv in",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("pip install nvidia-cuda-nvrtc-cu12"), "{msg}");
}
