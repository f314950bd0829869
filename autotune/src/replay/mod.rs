//! Replaying brute-forced tuning spaces: a Kernel Tuner cache file (gzip JSON) in which every
//! admissible config of a kernel was timed on a real GPU, used as a simulated device to measure
//! how many evaluations a search strategy needs.
//!
//! The configs listed in the cache are the space's admissible configs (the kernel's constraints
//! already applied), so strategies search exactly those. An entry whose `time` is not a number
//! (`"RuntimeFailedConfig"`, `"CompilationFailedConfig"`, ...) failed on the GPU: evaluating it
//! returns [`Outcome::Failed`] and still counts as an evaluation. A config outside the cache is
//! never proposed; [`ReplaySpace::evaluate_point`] reports it failed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;
use thiserror::Error;

use crate::prune::COMPILE_STATS;
use crate::search::{
    Outcome, Point, Prior, PriorSource, Resource, SearchParam, SearchSpace, SpaceError,
};

mod bench;
mod loso;

pub use bench::{
    benchmark, evals_to_target, fraction_of_optimum, percentile, random_median, strategy_report,
    BenchOptions, Contender, SpaceReport, StrategyReport, TargetStats, TARGETS,
};
pub use loso::{choose, leave_one_space_out, LosoReport, LosoRow};

/// Why a cache file could not be replayed.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot read tuning space `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a Kernel Tuner cache file (gzip JSON with tune_params and cache): {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}`: {message}")]
    Format { path: PathBuf, message: String },
    #[error("`{path}`: {source}")]
    Space { path: PathBuf, source: SpaceError },
    #[error("benchmark options: {0}")]
    Options(String),
}

#[derive(Deserialize)]
struct CacheFile {
    tune_params_keys: Vec<String>,
    tune_params: HashMap<String, Vec<serde_json::Value>>,
    cache: HashMap<String, CacheEntry>,
}

#[derive(Deserialize)]
struct CacheEntry {
    time: serde_json::Value,
    /// Compile statistics ([`COMPILE_STATS`]), where the file records them.
    #[serde(default)]
    num_regs: Option<serde_json::Value>,
    #[serde(default)]
    shared_bytes: Option<serde_json::Value>,
    #[serde(default)]
    threads: Option<serde_json::Value>,
    #[serde(default)]
    occupancy: Option<serde_json::Value>,
    #[serde(default)]
    spill_bytes: Option<serde_json::Value>,
}

impl CacheEntry {
    /// The entry's compile statistics in [`COMPILE_STATS`] order, each if it is a number.
    fn compile_stats(&self) -> [Option<f64>; 5] {
        [
            &self.num_regs,
            &self.shared_bytes,
            &self.threads,
            &self.occupancy,
            &self.spill_bytes,
        ]
        .map(|v| v.as_ref().and_then(serde_json::Value::as_f64))
    }
}

/// A brute-forced space and the time of each of its configs.
#[derive(Clone, Debug)]
pub struct ReplaySpace {
    space: SearchSpace,
    /// Per config id, its time, or None if it failed.
    times: Vec<Option<f64>>,
    best: f64,
}

impl ReplaySpace {
    /// Loads a gzip-compressed Kernel Tuner cache file.
    pub fn load(path: &Path) -> Result<ReplaySpace, ReplayError> {
        let io = |source| ReplayError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        GzDecoder::new(BufReader::new(File::open(path).map_err(io)?))
            .read_to_string(&mut text)
            .map_err(io)?;
        ReplaySpace::from_json(&text).map_err(|e| e.at(path))
    }

    /// Parses the (decompressed) JSON of a cache file.
    pub fn from_json(text: &str) -> Result<ReplaySpace, ReplayError> {
        let file: CacheFile = serde_json::from_str(text).map_err(|source| ReplayError::Json {
            path: PathBuf::new(),
            source,
        })?;
        let params = parameters(&file)?;
        let mut entries: Vec<(Point, &CacheEntry)> = file
            .cache
            .iter()
            .map(|(key, entry)| Ok((parse_key(key, &params)?, entry)))
            .collect::<Result<_, ReplayError>>()?;
        // A fixed order of ids, whatever the map's order.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let times: Vec<Option<f64>> = entries.iter().map(|e| entry_time(e.1)).collect();
        let stats: Vec<[Option<f64>; 5]> = entries.iter().map(|e| e.1.compile_stats()).collect();
        let space_error = |source| ReplayError::Space {
            path: PathBuf::new(),
            source,
        };
        let space = SearchSpace::new(params, entries.into_iter().map(|e| e.0))
            .and_then(|space| space.with_resources(Resource::from_rows(COMPILE_STATS, &stats)))
            .map_err(space_error)?;
        let best = times
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        if !best.is_finite() {
            return Err(format_error("every config in the cache failed"));
        }
        Ok(ReplaySpace { space, times, best })
    }

    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    /// The same space without the compile statistics its file records (if any), to measure
    /// a search without them.
    pub fn without_resources(&self) -> ReplaySpace {
        ReplaySpace {
            space: self.space.clone().without_resources(),
            times: self.times.clone(),
            best: self.best,
        }
    }

    /// The number of configs in the cache (failed ones included).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Always false: a loaded space has at least one config that ran.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The number of configs that ran (have a time).
    pub fn valid_count(&self) -> usize {
        self.times.iter().flatten().count()
    }

    /// The best time of the space.
    pub fn best_time(&self) -> f64 {
        self.best
    }

    /// One evaluation of config `id`.
    pub fn evaluate(&self, id: usize) -> Outcome {
        match self.times[id] {
            Some(t) => Outcome::Time(t),
            None => Outcome::Failed,
        }
    }

    /// One evaluation of a config by value indices; a config outside the cache fails.
    pub fn evaluate_point(&self, point: &[u16]) -> Outcome {
        match self.space.id_of(point) {
            Some(id) => self.evaluate(id),
            None => Outcome::Failed,
        }
    }

    /// The time a config must reach to be within `target` of the optimum (`best / target`).
    pub fn threshold(&self, target: f64) -> f64 {
        self.best / target
    }

    /// The number of configs within `target` of the optimum.
    pub fn hits(&self, target: f64) -> usize {
        let threshold = self.threshold(target);
        self.times
            .iter()
            .flatten()
            .filter(|&&t| t <= threshold)
            .count()
    }

    /// The results of `others` (the same kernel on other devices) as a prior for searching
    /// this space; None when none of them shares this space's parameters.
    pub fn prior_from<'a>(
        &self,
        others: impl IntoIterator<Item = (&'a str, &'a ReplaySpace)>,
    ) -> Option<Prior> {
        let sources = others
            .into_iter()
            .filter_map(|(name, other)| {
                PriorSource::matched(name, &self.space, &other.space, |id| other.evaluate(id))
            })
            .collect();
        Prior::new(sources)
    }
}

impl ReplayError {
    /// The same error, naming the file it came from.
    fn at(self, file: &Path) -> ReplayError {
        let path = file.to_path_buf();
        match self {
            ReplayError::Io { source, .. } => ReplayError::Io { path, source },
            ReplayError::Json { source, .. } => ReplayError::Json { path, source },
            ReplayError::Format { message, .. } => ReplayError::Format { path, message },
            ReplayError::Space { source, .. } => ReplayError::Space { path, source },
            options @ ReplayError::Options(_) => options,
        }
    }
}

fn format_error(message: impl Into<String>) -> ReplayError {
    ReplayError::Format {
        path: PathBuf::new(),
        message: message.into(),
    }
}

/// The parameters in `tune_params_keys` order; values must be integers (or booleans).
fn parameters(file: &CacheFile) -> Result<Vec<SearchParam>, ReplayError> {
    file.tune_params_keys
        .iter()
        .map(|name| {
            let values = file.tune_params.get(name).ok_or_else(|| {
                format_error(format!("tune_params has no values for `{name}`"))
            })?;
            let values = values
                .iter()
                .map(|v| integer(v).ok_or_else(|| format_error(format!(
                    "value {v} of `{name}` is not an integer; only integer parameters can be replayed"
                ))))
                .collect::<Result<_, _>>()?;
            Ok(SearchParam {
                name: name.clone(),
                values,
            })
        })
        .collect()
}

fn integer(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_bool().map(i64::from))
}

/// The value indices of a cache key: the comma-joined values, in `tune_params_keys` order.
fn parse_key(key: &str, params: &[SearchParam]) -> Result<Point, ReplayError> {
    let parts: Vec<&str> = key.split(',').map(str::trim).collect();
    if parts.len() != params.len() {
        return Err(format_error(format!(
            "cache key `{key}` has {} values but there are {} parameters",
            parts.len(),
            params.len()
        )));
    }
    parts
        .iter()
        .zip(params)
        .map(|(text, p)| {
            let index = text
                .parse::<i64>()
                .ok()
                .and_then(|v| p.values.iter().position(|&x| x == v));
            index.map(|i| i as u16).ok_or_else(|| {
                format_error(format!(
                    "cache key `{key}`: `{text}` is not a listed value of `{}`",
                    p.name
                ))
            })
        })
        .collect()
}

/// The entry's time, or None if it failed (not a positive finite number).
fn entry_time(entry: &CacheEntry) -> Option<f64> {
    entry.time.as_f64().filter(|t| t.is_finite() && *t > 0.0)
}

/// Environment variable naming the folder of brute-forced spaces.
pub const SPACES_ENV: &str = "WARPFORGE_TUNING_SPACES";

/// The folder of brute-forced spaces: `$WARPFORGE_TUNING_SPACES`, else `shared/tuning-spaces`
/// beside the workspace (where CI clones `shared/`).
pub fn tuning_spaces_dir() -> PathBuf {
    match std::env::var_os(SPACES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tuning-spaces"),
    }
}

/// The cache files of `paths`: a file stands for itself, a folder for its `.json.gz` files and
/// those of its kernel folders (`<kernel>/<gpu>.json.gz`); sorted, without repeats.
pub fn collect_space_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(gz_files(path)?);
            files.extend(space_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn gz_files(dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    let io = |source| ReplayError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for file in std::fs::read_dir(dir).map_err(io)? {
        let file = file.map_err(io)?.path();
        if file.is_file() && file.to_string_lossy().ends_with(".json.gz") {
            files.push(file);
        }
    }
    Ok(files)
}

/// The cache files in `dir`'s kernel folders (`<kernel>/<gpu>.json.gz`), sorted.
pub fn space_files(dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    let io = |source| ReplayError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for kernel in std::fs::read_dir(dir).map_err(io)? {
        let kernel = kernel.map_err(io)?.path();
        if !kernel.is_dir() {
            continue;
        }
        files.extend(gz_files(&kernel)?);
    }
    files.sort();
    Ok(files)
}
