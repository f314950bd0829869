//! Finding libnvrtc and the CUDA headers, both from one installation.
//!
//! An installation is a place that has both the library and `cuda_fp16.h`; the library
//! and the headers are never taken from two different places (a CUDA 12 header set with a
//! CUDA 13 NVRTC, or the reverse, compiles wrongly or not at all). Installations, in order:
//! 1. the overrides `WARPFORGE_NVRTC_LIB` (the library file, or a directory holding it) and
//!    `WARPFORGE_CUDA_INCLUDE`; with only the library given, the headers are looked up
//!    beside it (`../include`, or the wheel's `cuda_runtime/include`);
//! 2. the toolkits named by `CUDA_HOME`, then `CUDA_PATH`;
//! 3. the system toolkit `/usr/local/cuda` (`lib64/`, `lib/`, `targets/<arch>-linux/`);
//! 4. NVIDIA's PyPI wheels in `$VIRTUAL_ENV`, then in a `.venv` found by walking up from the
//!    current directory and from this crate's source directory: CUDA 13's layout
//!    (`site-packages/nvidia/cu13/{lib,include}`) before CUDA 12's
//!    (`nvidia/cuda_nvrtc/lib` with `nvidia/cuda_runtime/include`).
//!
//! Within a directory the library is `libnvrtc.so.<major>` with the highest major (13 before
//! 12; any later major too), else the unversioned `libnvrtc.so`.
//!
//! Discovery reads its inputs from a [`DiscoveryInputs`] so tests need not touch the
//! process environment.

use super::NvrtcError;
use std::path::{Path, PathBuf};

const LIB_STEM: &str = "libnvrtc.so";
const HEADER: &str = "cuda_fp16.h";
/// The oldest NVRTC major this project compiles with.
const OLDEST_MAJOR: u32 = 12;

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

/// Where NVRTC and the headers are: one installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolkit {
    /// Full path of the NVRTC shared library.
    pub lib: PathBuf,
    /// Directory containing `cuda_fp16.h`.
    pub include: PathBuf,
    /// Which installation this is (`CUDA_HOME=/opt/cuda`, `/usr/local/cuda`, a venv's
    /// wheels), for reports and messages.
    pub source: String,
}

/// One installation to look in: a label, and the directories that may hold its library and
/// its headers. Only a place with both is taken.
struct Place {
    label: String,
    lib_dirs: Vec<PathBuf>,
    include_dirs: Vec<PathBuf>,
}

impl Place {
    /// The library and headers, when this place has both; else what it lacks.
    fn find(&self) -> Result<Toolkit, String> {
        let lib = self.lib_dirs.iter().find_map(|d| lib_in(d));
        let include = self
            .include_dirs
            .iter()
            .find(|d| d.join(HEADER).is_file())
            .cloned();
        match (lib, include) {
            (Some(lib), Some(include)) => Ok(Toolkit {
                lib,
                include,
                source: self.label.clone(),
            }),
            (None, None) => Err(format!("{}: neither {LIB_STEM}.* nor {HEADER}", self.label)),
            (None, Some(_)) => Err(format!("{}: has {HEADER} but no {LIB_STEM}.*", self.label)),
            (Some(lib), None) => Err(format!(
                "{}: has {} but no {HEADER} beside it (the headers must come from the same \
                 installation as the library)",
                self.label,
                lib.display()
            )),
        }
    }
}

/// Finds NVRTC and its headers in the first installation that has both; `NotFound` lists
/// every place tried and what each lacked.
pub fn discover(inputs: &DiscoveryInputs) -> Result<Toolkit, NvrtcError> {
    let Search { places, mut tried } = places(inputs);
    for place in &places {
        match place.find() {
            Ok(found) => return Ok(found),
            Err(why) => tried.push(why),
        }
    }
    Err(NvrtcError::NotFound { tried })
}

#[cfg(test)]
/// The major of a file name `libnvrtc.so.<major>[.<rest>]`, or 0 for `libnvrtc.so`.
fn lib_major(name: &str) -> Option<u32> {
    stem_major(name, LIB_STEM)
}

/// The major of `<stem>.<major>[.<rest>]`, or 0 for `<stem>` itself.
fn stem_major(name: &str, stem: &str) -> Option<u32> {
    let rest = name.strip_prefix(stem)?;
    if rest.is_empty() {
        return Some(0);
    }
    let version = rest.strip_prefix('.')?;
    version.split('.').next()?.parse().ok()
}

/// The library in `dir` (or `dir` itself when it is a file): the highest major at or above
/// 12, the shortest name of that major (the soname link before the fully versioned file),
/// then the unversioned name.
fn lib_in(dir: &Path) -> Option<PathBuf> {
    if dir.is_file() {
        return Some(dir.to_path_buf());
    }
    newest_lib(dir, LIB_STEM)
}

/// The library `<stem>.<major>` in `dir` with the highest major at or above 12 (the
/// shortest name of that major), else `<stem>` itself. Used for cuBLAS too.
pub fn newest_lib(dir: &Path, stem: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(u32, usize, PathBuf)> = None;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(major) = stem_major(&name, stem) else {
            continue;
        };
        if (major != 0 && major < OLDEST_MAJOR) || !entry.path().is_file() {
            continue;
        }
        let better = match &best {
            None => true,
            Some((m, len, _)) => major > *m || (major == *m && name.len() < *len),
        };
        if better {
            best = Some((major, name.len(), entry.path()));
        }
    }
    best.map(|(_, _, path)| path)
}

/// The places to look, in order, and notes on what was not there (unset variables, absent
/// `.venv`s), for the `NotFound` message.
#[derive(Default)]
struct Search {
    places: Vec<Place>,
    tried: Vec<String>,
}

impl Search {
    fn add(&mut self, place: Place) {
        self.places.push(place);
    }

    fn note(&mut self, text: String) {
        self.tried.push(text);
    }
}

fn places(inputs: &DiscoveryInputs) -> Search {
    let mut search = Search::default();
    if inputs.nvrtc_lib.is_some() || inputs.cuda_include.is_some() {
        search.add(override_place(inputs));
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
    if inputs.virtual_env.is_none() {
        search.note("VIRTUAL_ENV: not set".to_string());
    }
    for start in &inputs.search_from {
        if !start.ancestors().any(|a| a.join(".venv").is_dir()) {
            search.note(format!("no .venv in {} or its parents", start.display()));
        }
    }
    for venv in venvs(inputs) {
        for place in venv_places(&venv) {
            search.add(place);
        }
    }
    search
}

/// The overrides: the library where `WARPFORGE_NVRTC_LIB` says, the headers where
/// `WARPFORGE_CUDA_INCLUDE` says or else beside the library.
fn override_place(inputs: &DiscoveryInputs) -> Place {
    let lib_dirs: Vec<PathBuf> = inputs.nvrtc_lib.iter().cloned().collect();
    let include_dirs = match (&inputs.cuda_include, &inputs.nvrtc_lib) {
        (Some(include), _) => vec![include.clone()],
        (None, Some(lib)) => {
            let dir = if lib.is_file() {
                lib.parent().unwrap_or(lib).to_path_buf()
            } else {
                lib.clone()
            };
            // A toolkit's lib64/ (or a wheel's lib/) has include/ beside it; CUDA 12's
            // wheels keep the headers in the sibling package cuda_runtime.
            let parent = dir.parent().unwrap_or(&dir).to_path_buf();
            let mut dirs = vec![parent.join("include")];
            if let Some(nvidia) = parent.parent() {
                dirs.push(nvidia.join("cuda_runtime/include"));
            }
            dirs
        }
        (None, None) => Vec::new(),
    };
    Place {
        label: format!(
            "WARPFORGE_NVRTC_LIB={}, WARPFORGE_CUDA_INCLUDE={}",
            show(&inputs.nvrtc_lib),
            show(&inputs.cuda_include)
        ),
        lib_dirs,
        include_dirs,
    }
}

fn show(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(|| "(not set)".to_string(), |p| p.display().to_string())
}

/// A CUDA toolkit installation: `lib64`, `lib`, `targets/<arch>-linux/...`.
fn toolkit_place(label: &str, root: &Path) -> Place {
    let target = root.join(format!("targets/{}-linux", std::env::consts::ARCH));
    Place {
        label: format!("{label} (lib64/, lib/, targets/*/lib with include/)"),
        lib_dirs: vec![root.join("lib64"), root.join("lib"), target.join("lib")],
        include_dirs: vec![root.join("include"), target.join("include")],
    }
}

/// The wheel installations of a virtual environment, newest layout first, in each
/// `lib/python3*/site-packages`.
fn venv_places(venv: &Path) -> Vec<Place> {
    let mut out = Vec::new();
    for sp in site_packages(venv) {
        let nvidia = sp.join("nvidia");
        out.push(Place {
            label: format!(
                "{} (CUDA 13 wheels: nvidia/cu13/lib, include)",
                venv.display()
            ),
            lib_dirs: vec![nvidia.join("cu13/lib")],
            include_dirs: vec![nvidia.join("cu13/include")],
        });
        out.push(Place {
            label: format!(
                "{} (CUDA 12 wheels: nvidia/cuda_nvrtc/lib, cuda_runtime/include)",
                venv.display()
            ),
            lib_dirs: vec![nvidia.join("cuda_nvrtc/lib")],
            include_dirs: vec![nvidia.join("cuda_runtime/include")],
        });
    }
    if out.is_empty() {
        out.push(Place {
            label: format!("{} (no lib/python3*/site-packages)", venv.display()),
            lib_dirs: Vec::new(),
            include_dirs: Vec::new(),
        });
    }
    out
}

/// The virtual environments to search, in order: `VIRTUAL_ENV`, then each `.venv` found
/// walking up from each `search_from` directory, each once. Used by the cuobjdump lookup
/// too.
pub(super) fn venvs(inputs: &DiscoveryInputs) -> Vec<PathBuf> {
    let walked = inputs.search_from.iter().flat_map(|start| {
        start
            .ancestors()
            .map(|a| a.join(".venv"))
            .filter(|v| v.is_dir())
    });
    let mut out: Vec<PathBuf> = Vec::new();
    for venv in inputs.virtual_env.iter().cloned().chain(walked) {
        if !out.contains(&venv) {
            out.push(venv);
        }
    }
    out
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
mod tests;
