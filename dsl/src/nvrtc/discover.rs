//! Finding libnvrtc and the CUDA headers.
//!
//! Order: the `WARPFORGE_NVRTC_LIB` / `WARPFORGE_CUDA_INCLUDE` overrides, `CUDA_HOME`,
//! `CUDA_PATH`, `/usr/local/cuda`, `$VIRTUAL_ENV`, then a `.venv` found by walking up from
//! the current directory and from this crate's source directory (so a binary built in the
//! workspace finds the workspace's `.venv`). A venv provides NVRTC through the NVIDIA PyPI
//! wheels: `site-packages/nvidia/cuda_nvrtc/lib` and `site-packages/nvidia/cuda_runtime/include`.
//! The library and the include directory are looked up independently, each taking the
//! first place that has it.
//!
//! Discovery reads its inputs from a [`DiscoveryInputs`] so tests need not touch the
//! process environment.

use super::NvrtcError;
use std::path::{Path, PathBuf};

const LIB_NAMES: [&str; 2] = ["libnvrtc.so.12", "libnvrtc.so"];
const HEADER: &str = "cuda_fp16.h";

/// Everything discovery looks at.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryInputs {
    /// `WARPFORGE_NVRTC_LIB`: the library file, or a directory holding it.
    pub nvrtc_lib: Option<PathBuf>,
    /// `WARPFORGE_CUDA_INCLUDE`: a directory holding `cuda_fp16.h`.
    pub cuda_include: Option<PathBuf>,
    pub cuda_home: Option<PathBuf>,
    pub cuda_path: Option<PathBuf>,
    /// Toolkit directories probed after the variables (`/usr/local/cuda`).
    pub system_roots: Vec<PathBuf>,
    /// `VIRTUAL_ENV`.
    pub virtual_env: Option<PathBuf>,
    /// Directories to walk up from, looking for a `.venv` in each ancestor.
    pub search_from: Vec<PathBuf>,
}

impl DiscoveryInputs {
    /// The inputs of this process: its environment, current directory and the workspace.
    pub fn from_env() -> DiscoveryInputs {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let mut search_from: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
        search_from.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        DiscoveryInputs {
            nvrtc_lib: var("WARPFORGE_NVRTC_LIB"),
            cuda_include: var("WARPFORGE_CUDA_INCLUDE"),
            cuda_home: var("CUDA_HOME"),
            cuda_path: var("CUDA_PATH"),
            system_roots: vec![PathBuf::from("/usr/local/cuda")],
            virtual_env: var("VIRTUAL_ENV"),
            search_from,
        }
    }
}

/// Where NVRTC and the headers are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolkit {
    /// Full path of the NVRTC shared library.
    pub lib: PathBuf,
    /// Directory containing `cuda_fp16.h`.
    pub include: PathBuf,
}

/// One place to look: a label for messages, the library and include directories it offers.
struct Place {
    label: String,
    lib_dirs: Vec<PathBuf>,
    include_dirs: Vec<PathBuf>,
}

/// Finds NVRTC and the headers; `NotFound` lists every place tried.
pub fn discover(inputs: &DiscoveryInputs) -> Result<Toolkit, NvrtcError> {
    let Search { places, mut tried } = places(inputs);
    let lib = places
        .iter()
        .find_map(|p| p.lib_dirs.iter().find_map(|d| lib_in(d)));
    let include = places.iter().find_map(|p| {
        p.include_dirs
            .iter()
            .find(|d| d.join(HEADER).is_file())
            .cloned()
    });
    match (lib, include) {
        (Some(lib), Some(include)) => Ok(Toolkit { lib, include }),
        (lib, include) => {
            if lib.is_none() {
                tried.push(format!("no place above has {}", LIB_NAMES.join(" or ")));
            }
            if include.is_none() {
                tried.push(format!("no place above has {HEADER}"));
            }
            Err(NvrtcError::NotFound { tried })
        }
    }
}

fn lib_in(dir: &Path) -> Option<PathBuf> {
    if dir.is_file() {
        return Some(dir.to_path_buf());
    }
    LIB_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The places to look, in order, and what was tried (each place's label, plus unset
/// variables and absent `.venv`s), for the `NotFound` message.
#[derive(Default)]
struct Search {
    places: Vec<Place>,
    tried: Vec<String>,
}

impl Search {
    fn add(&mut self, place: Place) {
        self.tried.push(place.label.clone());
        self.places.push(place);
    }

    fn note(&mut self, text: String) {
        self.tried.push(text);
    }
}

fn places(inputs: &DiscoveryInputs) -> Search {
    let mut search = Search::default();
    if inputs.nvrtc_lib.is_some() || inputs.cuda_include.is_some() {
        search.add(Place {
            label: format!(
                "WARPFORGE_NVRTC_LIB={}, WARPFORGE_CUDA_INCLUDE={}",
                show(&inputs.nvrtc_lib),
                show(&inputs.cuda_include)
            ),
            lib_dirs: inputs.nvrtc_lib.iter().cloned().collect(),
            include_dirs: inputs.cuda_include.iter().cloned().collect(),
        });
    }
    for (name, root) in [
        ("CUDA_HOME", &inputs.cuda_home),
        ("CUDA_PATH", &inputs.cuda_path),
    ] {
        match root {
            Some(root) => search.add(toolkit_place(&format!("{name}={}", root.display()), root)),
            None => search.note(format!("{name}: not set")),
        }
    }
    for root in &inputs.system_roots {
        search.add(toolkit_place(&root.display().to_string(), root));
    }
    match &inputs.virtual_env {
        Some(venv) => search.add(venv_place(&format!("VIRTUAL_ENV={}", venv.display()), venv)),
        None => search.note("VIRTUAL_ENV: not set".to_string()),
    }
    for start in &inputs.search_from {
        let venvs: Vec<PathBuf> = start
            .ancestors()
            .map(|a| a.join(".venv"))
            .filter(|v| v.is_dir())
            .collect();
        if venvs.is_empty() {
            search.note(format!("no .venv in {} or its parents", start.display()));
        }
        for venv in venvs {
            search.add(venv_place(&venv.display().to_string(), &venv));
        }
    }
    search
}

fn show(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(|| "(not set)".to_string(), |p| p.display().to_string())
}

/// A CUDA toolkit installation: `lib64`, `lib`, `targets/<arch>-linux/...`.
fn toolkit_place(label: &str, root: &Path) -> Place {
    let target = root.join(format!("targets/{}-linux", std::env::consts::ARCH));
    Place {
        label: format!("{label} (lib64/, lib/, include/)"),
        lib_dirs: vec![root.join("lib64"), root.join("lib"), target.join("lib")],
        include_dirs: vec![root.join("include"), target.join("include")],
    }
}

/// A virtual environment with the NVIDIA wheels in any `lib/python3*/site-packages`.
fn venv_place(label: &str, venv: &Path) -> Place {
    let nvidia: Vec<PathBuf> = site_packages(venv)
        .into_iter()
        .map(|sp| sp.join("nvidia"))
        .collect();
    Place {
        label: format!("{label} (site-packages/nvidia/cuda_nvrtc/lib, cuda_runtime/include)"),
        lib_dirs: nvidia.iter().map(|n| n.join("cuda_nvrtc/lib")).collect(),
        include_dirs: nvidia
            .iter()
            .map(|n| n.join("cuda_runtime/include"))
            .collect(),
    }
}

/// The virtual environments to search, in order: `VIRTUAL_ENV`, then each `.venv` found
/// walking up from each `search_from` directory. Used by the cuobjdump lookup too.
pub(super) fn venvs(inputs: &DiscoveryInputs) -> Vec<PathBuf> {
    let walked = inputs.search_from.iter().flat_map(|start| {
        start
            .ancestors()
            .map(|a| a.join(".venv"))
            .filter(|v| v.is_dir())
    });
    inputs.virtual_env.iter().cloned().chain(walked).collect()
}

pub(super) fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake venv with the wheel layout under `root/.venv`.
    fn fake_venv(root: &Path) -> PathBuf {
        let nvidia = root.join(".venv/lib/python3.11/site-packages/nvidia");
        fs::create_dir_all(nvidia.join("cuda_nvrtc/lib")).unwrap();
        fs::create_dir_all(nvidia.join("cuda_runtime/include")).unwrap();
        fs::write(nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"), b"").unwrap();
        fs::write(nvidia.join("cuda_runtime/include/cuda_fp16.h"), b"").unwrap();
        nvidia
    }

    #[test]
    fn bogus_cuda_home_falls_through_to_a_venv_above() {
        let dir = tempfile::tempdir().unwrap();
        let nvidia = fake_venv(dir.path());
        let deep = dir.path().join("a/b/c");
        fs::create_dir_all(&deep).unwrap();
        let inputs = DiscoveryInputs {
            cuda_home: Some(dir.path().join("no-such-cuda")),
            search_from: vec![deep],
            ..DiscoveryInputs::default()
        };
        let found = discover(&inputs).unwrap();
        assert_eq!(found.lib, nvidia.join("cuda_nvrtc/lib/libnvrtc.so.12"));
        assert_eq!(found.include, nvidia.join("cuda_runtime/include"));
    }

    #[test]
    fn toolkit_layout_and_override_take_precedence() {
        let dir = tempfile::tempdir().unwrap();
        fake_venv(dir.path());
        let home = dir.path().join("cuda");
        fs::create_dir_all(home.join("lib64")).unwrap();
        fs::create_dir_all(home.join("include")).unwrap();
        fs::write(home.join("lib64/libnvrtc.so"), b"").unwrap();
        fs::write(home.join("include/cuda_fp16.h"), b"").unwrap();
        let mut inputs = DiscoveryInputs {
            cuda_path: Some(home.clone()),
            virtual_env: Some(dir.path().join(".venv")),
            ..DiscoveryInputs::default()
        };
        assert_eq!(
            discover(&inputs).unwrap().lib,
            home.join("lib64/libnvrtc.so")
        );
        let custom = dir.path().join("custom.so");
        fs::write(&custom, b"").unwrap();
        inputs.nvrtc_lib = Some(custom.clone());
        let found = discover(&inputs).unwrap();
        assert_eq!(found.lib, custom);
        assert_eq!(
            found.include,
            home.join("include"),
            "include still found separately"
        );
    }

    #[test]
    fn nothing_found_lists_every_place_tried() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = DiscoveryInputs {
            cuda_home: Some(dir.path().join("bogus")),
            system_roots: vec![dir.path().join("usr-local-cuda")],
            search_from: vec![dir.path().to_path_buf()],
            ..DiscoveryInputs::default()
        };
        let err = discover(&inputs).unwrap_err();
        let NvrtcError::NotFound { tried } = &err else {
            panic!("expected NotFound, got {err:?}")
        };
        let all = tried.join("\n");
        for expected in [
            "CUDA_HOME=",
            "bogus",
            "CUDA_PATH: not set",
            "usr-local-cuda",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
        assert!(all.contains("VIRTUAL_ENV: not set"), "{all}");
        assert!(all.contains("no .venv in"), "{all}");
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("pip install nvidia-cuda-nvrtc-cu12"), "{msg}");
    }
}
