//! The configs the tuning caches choose, as JSON for other programs: `warpforge autotune
//! --show` prints them and `--export FILE` writes them. Needs no GPU: it reads the cache
//! files of every device in the cache directory.
//!
//! Per cache entry (kernel, dtypes, shape bucket) the choice is the one a launch of this
//! build makes ([`crate::TuneTable`]): the fastest measured config whose code hash is still
//! the current code's. An entry of an edited kernel keeps its fastest config with
//! `"current": false` (launches ignore it until it is re-tuned).

use crate::cache::{CacheError, CacheFile, Outcome, FORMAT};
use crate::kernel::TuneKernel;
use crate::key::DeviceKey;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use warpforge_dsl::Config;

/// The chosen configs of every device's cache.
#[derive(Debug, Serialize)]
pub struct Export {
    /// The cache format the entries come from.
    pub format: u32,
    pub devices: Vec<DeviceChoices>,
}

/// One device's chosen configs.
#[derive(Debug, Serialize)]
pub struct DeviceChoices {
    pub device: DeviceKey,
    pub file: PathBuf,
    pub chosen: Vec<Chosen>,
}

/// The config chosen for one kernel at one shape bucket.
#[derive(Debug, PartialEq, Serialize)]
pub struct Chosen {
    pub kernel: String,
    pub dtypes: Vec<String>,
    /// The bucket's dimensions (powers of two); launches within it use this config.
    pub bucket: Vec<u64>,
    /// The dimensions that were timed.
    pub shape: Vec<usize>,
    /// `NAME=VALUE,...`, as `--config` takes it.
    pub config: String,
    /// The same as a map, for programs.
    pub values: HashMap<String, i64>,
    pub median_ns: f64,
    /// Whether launches of this build use it (the kernel and the config's code unchanged).
    pub current: bool,
}

/// Every device's cache in `dir`: its `*.json` files that parse as tuning caches of this
/// format (others are skipped with a warning), sorted by file name. A missing directory
/// has no devices.
pub fn export_dir(dir: &Path) -> Result<Export, CacheError> {
    let mut kernels = KernelCode::default();
    let devices = cache_files(dir)?
        .into_iter()
        .map(|(path, file)| DeviceChoices {
            chosen: chosen(&file, &mut kernels),
            device: file.device,
            file: path,
        })
        .collect();
    Ok(Export {
        format: FORMAT,
        devices,
    })
}

/// The tuning caches of this format in `dir` with their paths, sorted by file name; other
/// `*.json` files are skipped with a warning, and a missing directory has none.
pub fn cache_files(dir: &Path) -> Result<Vec<(PathBuf, CacheFile)>, CacheError> {
    let read = |path: &Path, e| CacheError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read(dir, e)),
    };
    let mut paths: Vec<PathBuf> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
        match serde_json::from_str::<CacheFile>(&text) {
            Ok(file) if file.format == FORMAT => files.push((path, file)),
            Ok(_) | Err(_) => tracing::warn!(
                "{} is not a tuning cache of format {FORMAT}; skipped",
                path.display()
            ),
        }
    }
    Ok(files)
}

/// The current code of the library's kernels, prepared on first use.
#[derive(Default)]
pub struct KernelCode {
    prepared: HashMap<String, Option<TuneKernel>>,
}

impl KernelCode {
    /// The library kernel called `name` as this build compiles it, or None if there is none.
    pub fn get(&mut self, name: &str) -> Option<&TuneKernel> {
        self.prepared
            .entry(name.to_string())
            .or_insert_with(|| TuneKernel::new(warpforge_kernels::find(name)?).ok())
            .as_ref()
    }
}

/// The chosen config of each entry of `file` that has a measured result.
pub fn chosen(file: &CacheFile, kernels: &mut KernelCode) -> Vec<Chosen> {
    let mut out = Vec::new();
    for entry in &file.entries {
        let kernel = kernels.get(&entry.kernel);
        let kernel_current = kernel.is_some_and(|k| k.ir_hash == entry.ir_hash);
        let mut best: Option<(f64, Config, bool)> = None;
        for r in &entry.results {
            let (Outcome::Measured { median_ns, .. }, Some(config)) =
                (&r.outcome, r.parsed_config())
            else {
                continue;
            };
            let current = kernel_current
                && kernel.and_then(|k| k.config_hash(&config).ok()) == Some(r.config_hash.clone());
            // A current config beats a stale one; among equals, the faster one.
            let better = best
                .as_ref()
                .is_none_or(|(t, _, c)| (current && !c) || (current == *c && *median_ns < *t));
            if better {
                best = Some((*median_ns, config, current));
            }
        }
        if let Some((median_ns, config, current)) = best {
            out.push(Chosen {
                kernel: entry.kernel.clone(),
                dtypes: entry.dtypes.clone(),
                bucket: entry.bucket.clone(),
                shape: entry.shape.clone(),
                config: crate::cache::config_text(&config),
                values: config.values.iter().cloned().collect(),
                median_ns,
                current,
            });
        }
    }
    out
}
