//! Finding the cuobjdump binary.
//!
//! Order: `WARPFORGE_CUOBJDUMP` (the binary, or a directory holding it; when set it must be
//! right), then the NVIDIA wheel in a virtual environment found as for NVRTC (`VIRTUAL_ENV`,
//! then a `.venv` above the current directory or this crate), then the `bin` directory of
//! `CUDA_HOME`, `CUDA_PATH` and `/usr/local/cuda`, then `PATH`. The venv comes before the
//! toolkits because `scripts/setup-nvrtc` pins the wheel the tests were written against.

use super::super::discover::{site_packages, venvs};
use super::super::DiscoveryInputs;
use super::SassError;
use std::path::{Path, PathBuf};

const TOOL: &str = "cuobjdump";

/// Where the wheels put cuobjdump under `site-packages/nvidia`: CUDA 13's wheel
/// (`nvidia-cuda-cuobjdump`) uses `cu13/bin`; the older per-component layout is kept too.
const WHEEL_BIN_DIRS: [&str; 3] = ["cu13/bin", "cu12/bin", "cuda_cuobjdump/bin"];

/// Everything the lookup looks at, so tests need not touch the process environment.
#[derive(Clone, Debug, Default)]
pub struct ToolInputs {
    /// `WARPFORGE_CUOBJDUMP`.
    pub cuobjdump: Option<PathBuf>,
    /// The venv and toolkit places, shared with NVRTC discovery.
    pub toolkit: DiscoveryInputs,
    /// The directories of `PATH`.
    pub path: Vec<PathBuf>,
}

impl ToolInputs {
    /// The inputs of this process.
    pub fn from_env() -> ToolInputs {
        ToolInputs {
            cuobjdump: std::env::var_os("WARPFORGE_CUOBJDUMP")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            toolkit: DiscoveryInputs::from_env(),
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        }
    }
}

/// The cuobjdump to run; `NotFound` lists every directory tried.
pub fn find_cuobjdump(inputs: &ToolInputs) -> Result<PathBuf, SassError> {
    if let Some(path) = &inputs.cuobjdump {
        return tool_at(path).ok_or_else(|| SassError::BadOverride { path: path.clone() });
    }
    let dirs = search_dirs(inputs);
    if let Some(found) = dirs.iter().find_map(|d| tool_at(d)) {
        return Ok(found);
    }
    let mut tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if inputs.toolkit.virtual_env.is_none() {
        tried.push("VIRTUAL_ENV: not set".to_string());
    }
    if inputs.path.is_empty() {
        tried.push("PATH: not set".to_string());
    }
    Err(SassError::NotFound { tried })
}

/// The directories to probe, in order (see the module doc).
fn search_dirs(inputs: &ToolInputs) -> Vec<PathBuf> {
    let t = &inputs.toolkit;
    let wheels = venvs(t)
        .into_iter()
        .flat_map(|venv| site_packages(&venv))
        .flat_map(|sp| WHEEL_BIN_DIRS.map(|d| sp.join("nvidia").join(d)));
    let toolkits = t
        .cuda_home
        .iter()
        .chain(&t.cuda_path)
        .chain(&t.system_roots)
        .map(|root| root.join("bin"));
    wheels
        .chain(toolkits)
        .chain(inputs.path.iter().cloned())
        .collect()
}

/// `path` itself when it is an executable file, else `path/cuobjdump` when that is.
fn tool_at(path: &Path) -> Option<PathBuf> {
    [path.to_path_buf(), path.join(TOOL)]
        .into_iter()
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// An executable (on unix) stand-in for cuobjdump at `dir/cuobjdump`.
    fn fake_tool(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let tool = dir.join(TOOL);
        fs::write(&tool, b"#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        }
        tool
    }

    #[test]
    fn the_venv_wheel_comes_before_cuda_home_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = fake_tool(
            &dir.path()
                .join(".venv/lib/python3.11/site-packages/nvidia/cu13/bin"),
        );
        let home = dir.path().join("cuda");
        let in_home = fake_tool(&home.join("bin"));
        let in_path = fake_tool(&dir.path().join("usr-bin"));
        let deep = dir.path().join("a/b");
        fs::create_dir_all(&deep).unwrap();
        let mut inputs = ToolInputs {
            toolkit: DiscoveryInputs {
                cuda_home: Some(home),
                search_from: vec![deep],
                ..DiscoveryInputs::default()
            },
            path: vec![dir.path().join("usr-bin")],
            ..ToolInputs::default()
        };
        assert_eq!(find_cuobjdump(&inputs).unwrap(), wheel);
        inputs.toolkit.search_from.clear();
        assert_eq!(find_cuobjdump(&inputs).unwrap(), in_home);
        inputs.toolkit.cuda_home = None;
        assert_eq!(find_cuobjdump(&inputs).unwrap(), in_path);
    }

    #[test]
    fn the_override_wins_and_must_be_right() {
        let dir = tempfile::tempdir().unwrap();
        let custom = fake_tool(&dir.path().join("custom"));
        let mut inputs = ToolInputs {
            cuobjdump: Some(dir.path().join("custom")),
            path: vec![dir.path().to_path_buf()],
            ..ToolInputs::default()
        };
        assert_eq!(find_cuobjdump(&inputs).unwrap(), custom);
        inputs.cuobjdump = Some(dir.path().join("nothing-here"));
        let err = find_cuobjdump(&inputs).unwrap_err();
        assert!(matches!(err, SassError::BadOverride { .. }), "{err:?}");
        assert!(err.to_string().contains("nothing-here"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_non_executable_file_is_not_the_tool() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TOOL), b"data").unwrap();
        let inputs = ToolInputs {
            path: vec![dir.path().to_path_buf()],
            ..ToolInputs::default()
        };
        assert!(find_cuobjdump(&inputs).is_err());
    }

    #[test]
    fn nothing_found_lists_the_places_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = ToolInputs {
            toolkit: DiscoveryInputs {
                cuda_home: Some(dir.path().join("bogus-cuda")),
                ..DiscoveryInputs::default()
            },
            ..ToolInputs::default()
        };
        let msg = find_cuobjdump(&inputs).unwrap_err().to_string();
        for expected in ["bogus-cuda/bin", "VIRTUAL_ENV: not set", "PATH: not set"] {
            assert!(msg.contains(expected), "{expected} missing from:\n{msg}");
        }
        assert!(msg.contains("scripts/setup-nvrtc"), "{msg}");
        assert!(msg.contains("WARPFORGE_CUOBJDUMP"), "{msg}");
    }
}
