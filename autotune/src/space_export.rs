//! Our own tuning results as replayable spaces: `warpforge autotune --export-spaces DIR` writes
//! each cache entry (kernel, dtypes, shape bucket) of every device in the cache directory as a
//! Kernel Tuner cache file, `DIR/<kernel>_<bucket>/<device>.json.gz`, which `--replay` reads.
//! A problem tuned with `--strategy exhaustive` thereby becomes a brute-forced space of one of
//! our kernels, and devices that tuned the same problem share a folder, as leave-one-GPU-out
//! transfer expects.
//!
//! Each entry holds the config's parameter values, its `time` in milliseconds (Kernel Tuner's
//! unit; `"RuntimeFailedConfig"` for a failed one) and, compiled again with NVRTC (through the
//! compile cache) for the device's arch, its compile statistics under the names of
//! [`COMPILE_STATS`], so the replay benchmark's `surrogate+stats` row measures what they are
//! worth to the search. Only results timed with the code of this build are exported: the
//! statistics describe this code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Map, Value};
use thiserror::Error;
use warpforge_dsl::nvrtc::Arch;

use crate::cache::{CacheError, CacheFile, Entry, Outcome};
use crate::export::{cache_files, KernelCode};
use crate::kernel::TuneKernel;
use crate::prune::{compile_space, Limits, COMPILE_STATS};
use crate::Config;

/// Why the spaces could not be written.
#[derive(Debug, Error)]
pub enum SpaceExportError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot write the space {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One space written.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceFile {
    pub path: PathBuf,
    /// Configs in it (failed ones included).
    pub configs: usize,
    /// Whether its entries carry compile statistics (NVRTC compiled them for the device).
    pub compile_stats: bool,
}

/// Writes every current cache entry of the devices in `cache_dir` under `out` (see the module
/// documentation); `progress` hears of each file written.
pub fn export_spaces(
    cache_dir: &Path,
    out: &Path,
    mut progress: impl FnMut(&SpaceFile),
) -> Result<Vec<SpaceFile>, SpaceExportError> {
    let mut kernels = KernelCode::default();
    let mut written = Vec::new();
    for (_, file) in cache_files(cache_dir)? {
        for entry in &file.entries {
            let Some(kernel) = kernels.get(&entry.kernel) else {
                tracing::warn!("`{}` is not a library kernel; not exported", entry.kernel);
                continue;
            };
            let results = current_results(kernel, entry);
            if results.is_empty() {
                continue;
            }
            let path = out
                .join(format!("{}_{}", entry.kernel, bucket_name(entry)))
                .join(format!("{}.json.gz", file.device.file_stem()));
            let (text, compile_stats) = space_json(kernel, &file, &results);
            write_gz(&path, &text)?;
            let space = SpaceFile {
                path,
                configs: results.len(),
                compile_stats,
            };
            progress(&space);
            written.push(space);
        }
    }
    Ok(written)
}

/// The entry's results whose code hash is this build's, as configs and outcomes.
fn current_results(kernel: &TuneKernel, entry: &Entry) -> Vec<(Config, Outcome)> {
    if entry.ir_hash != kernel.ir_hash {
        return Vec::new();
    }
    entry
        .results
        .iter()
        .filter_map(|r| {
            let config = r.parsed_config()?;
            let current = kernel.config_hash(&config).ok()? == r.config_hash;
            current.then(|| (config, r.outcome.clone()))
        })
        .collect()
}

/// `4096x4096x16` for the bucket's dimensions, with the dtypes when there are several.
fn bucket_name(entry: &Entry) -> String {
    let dims: Vec<String> = entry.bucket.iter().map(u64::to_string).collect();
    let mut name = dims.join("x");
    if entry.dtypes.len() > 1 || entry.dtypes.first().is_some_and(|d| d != "f32") {
        name = format!("{name}_{}", entry.dtypes.join("-"));
    }
    name
}

/// The Kernel Tuner JSON of one entry, and whether it carries compile statistics.
fn space_json(
    kernel: &TuneKernel,
    file: &CacheFile,
    results: &[(Config, Outcome)],
) -> (String, bool) {
    let params = &kernel.def().space.params;
    let stats = compile_stats(kernel, &file.device.arch, results);
    let mut cache = Map::new();
    for (i, (config, outcome)) in results.iter().enumerate() {
        let values: Vec<i64> = params
            .iter()
            .map(|p| config.get(&p.name).unwrap_or(p.default))
            .collect();
        let key: Vec<String> = values.iter().map(i64::to_string).collect();
        let mut record = Map::new();
        for (p, v) in params.iter().zip(&values) {
            record.insert(p.name.clone(), json!(v));
        }
        let time = match outcome {
            Outcome::Measured { median_ns, .. } => json!(median_ns * 1e-6),
            Outcome::Failed { .. } => json!("RuntimeFailedConfig"),
        };
        record.insert("time".into(), time);
        if let Some(row) = stats.as_ref().and_then(|s| s[i]) {
            for (name, value) in COMPILE_STATS.iter().zip(row) {
                record.insert((*name).to_string(), json!(value));
            }
        }
        cache.insert(key.join(","), Value::Object(record));
    }
    let tune_params: BTreeMap<&str, &[i64]> = params
        .iter()
        .map(|p| (p.name.as_str(), p.values.as_slice()))
        .collect();
    let doc = json!({
        "device_name": file.device.name,
        "kernel_name": kernel.name(),
        "objective": "time",
        "tune_params_keys": params.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "tune_params": tune_params,
        "cache": cache,
    });
    (doc.to_string(), stats.is_some())
}

/// Each result's compile statistics for `arch` (None for a config that no longer compiles),
/// or None when NVRTC cannot compile for it here (not installed, or the arch unknown to it).
fn compile_stats(
    kernel: &TuneKernel,
    arch: &str,
    results: &[(Config, Outcome)],
) -> Option<Vec<Option<[f64; 5]>>> {
    let arch = match Arch::parse(arch) {
        Ok(arch) => arch,
        Err(e) => {
            tracing::warn!("no compile statistics for `{arch}`: {e}");
            return None;
        }
    };
    let configs: Vec<Config> = results.iter().map(|(c, _)| c.clone()).collect();
    let compiled = match compile_space(kernel, &configs, arch) {
        Ok(compiled) => compiled,
        Err(e) => {
            tracing::warn!("no compile statistics for {arch}: {e}");
            return None;
        }
    };
    let limits = Limits::for_arch(arch);
    let stats = compiled
        .into_iter()
        .map(|c| c.candidate(&limits).ok().map(|c| c.compile_stats()))
        .collect();
    Some(stats)
}

fn write_gz(path: &Path, text: &str) -> Result<(), SpaceExportError> {
    let error = |source| SpaceExportError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(text.as_bytes()).map_err(error)?;
    let bytes = gz.finish().map_err(error)?;
    // Written beside, then renamed: an interrupted export leaves no truncated space.
    let partial = path.with_extension("gz.partial");
    std::fs::write(&partial, bytes).map_err(error)?;
    std::fs::rename(&partial, path).map_err(error)
}
