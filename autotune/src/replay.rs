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
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::search::{search, Outcome, Point, SearchParam, SearchSpace, SpaceError, StrategyKind};

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
        let mut entries: Vec<(Point, Option<f64>)> = file
            .cache
            .iter()
            .map(|(key, entry)| Ok((parse_key(key, &params)?, entry_time(entry))))
            .collect::<Result<_, ReplayError>>()?;
        // A fixed order of ids, whatever the map's order.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let times: Vec<Option<f64>> = entries.iter().map(|e| e.1).collect();
        let space =
            SearchSpace::new(params, entries.into_iter().map(|e| e.0)).map_err(|source| {
                ReplayError::Space {
                    path: PathBuf::new(),
                    source,
                }
            })?;
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
        for file in std::fs::read_dir(&kernel).map_err(io)? {
            let file = file.map_err(io)?.path();
            if file.to_string_lossy().ends_with(".json.gz") {
                files.push(file);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Evaluations `strategy` (seeded with `seed`) needs to find a config within `target` of the
/// optimum (time ≤ best / target), failed evaluations included. Capped at the space size.
pub fn evals_to_target(
    space: &ReplaySpace,
    strategy: StrategyKind,
    seed: u64,
    target: f64,
) -> usize {
    let threshold = space.threshold(target);
    let mut strategy = strategy.build(seed);
    let history = search(
        space.space(),
        strategy.as_mut(),
        |id| space.evaluate(id),
        |h| h.best().is_some_and(|(_, t)| t <= threshold),
    );
    history.len().min(space.len())
}

/// The evaluations to target of one strategy over many seeded runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub runs: usize,
    pub target: f64,
    /// Nearest-rank median of the evaluations to target.
    pub median_evals: usize,
    /// Nearest-rank 90th percentile of the evaluations to target.
    pub p90_evals: usize,
}

/// Runs every strategy `runs` times (seeds `seed0..seed0 + runs`) on the space in `path`.
pub fn replay_report(
    path: &Path,
    runs: usize,
    target: f64,
    seed0: u64,
) -> Result<Vec<StrategyResult>, ReplayError> {
    let space = ReplaySpace::load(path)?;
    Ok(StrategyKind::ALL
        .into_iter()
        .map(|kind| strategy_result(&space, kind, runs, target, seed0))
        .collect())
}

/// The result of `runs` seeded runs of one strategy.
pub fn strategy_result(
    space: &ReplaySpace,
    kind: StrategyKind,
    runs: usize,
    target: f64,
    seed0: u64,
) -> StrategyResult {
    let mut evals: Vec<usize> = (0..runs as u64)
        .into_par_iter()
        .map(|i| evals_to_target(space, kind, seed0.wrapping_add(i), target))
        .collect();
    evals.sort_unstable();
    StrategyResult {
        strategy: kind.name().to_string(),
        runs,
        target,
        median_evals: percentile(&evals, 0.5),
        p90_evals: percentile(&evals, 0.9),
    }
}

/// The nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
