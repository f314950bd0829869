//! The tuning cache: one human-readable JSON file per device,
//! `<cache dir>/<device>.json`, where the cache dir is `--cache-dir`, else
//! `$WARPFORGE_TUNE_CACHE`, else `<user cache dir>/warpforge/tune`.
//!
//! It holds every measured config of every problem (median, spread, samples) and every
//! failure, so a config added to a space is the only one timed next time, and a failed
//! config is never retried. Each result carries the code hash of its config
//! ([`crate::kernel`]); an entry whose kernel hash differs from the current code is never
//! used, and is replaced when the problem is tuned again. A file made under another
//! driver, NVRTC or warpforge version is rebuilt. Writes go to a temporary file renamed
//! into place; an unreadable (corrupt) file gives a warning and is rebuilt.
//!
//! Several processes may tune one device at once: [`TuneCache::save`] holds an exclusive
//! lock on `.<device>.json.lock` while it re-reads the file, merges what other runs saved
//! since this one loaded it, and writes the union, so no run's results are lost.

use crate::key::{Bucket, DeviceKey, EntryKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use warpforge_dsl::Config;

/// Bumped when the file's layout changes; a file of another format is rebuilt.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "no cache directory: the user cache dir is unknown on this system; \
         pass --cache-dir or set WARPFORGE_TUNE_CACHE"
    )]
    NoDir,
    #[error("cannot read the tuning cache {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the tuning cache {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The cache directory: `flag`, else `$WARPFORGE_TUNE_CACHE`, else
/// `<user cache dir>/warpforge/tune`.
pub fn cache_dir(flag: Option<&Path>) -> Result<PathBuf, CacheError> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("WARPFORGE_TUNE_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|d| d.join("warpforge").join("tune"))
        .ok_or(CacheError::NoDir)
}

/// The file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    pub format: u32,
    pub device: DeviceKey,
    pub entries: Vec<Entry>,
}

/// Every result of one problem key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kernel: String,
    pub ir_hash: String,
    pub dtypes: Vec<String>,
    /// The bucket's dimensions (powers of two).
    pub bucket: Vec<u64>,
    /// The dimensions actually timed (within the bucket).
    pub shape: Vec<usize>,
    pub results: Vec<ResultRecord>,
}

impl Entry {
    pub fn bucket(&self) -> Option<Bucket> {
        Bucket::from_powers(&self.bucket)
    }

    fn matches(&self, key: &EntryKey) -> bool {
        self.same_problem(key) && self.ir_hash == key.ir_hash
    }

    /// The same kernel, dtypes and bucket, whatever the code hash.
    pub(crate) fn same_problem(&self, key: &EntryKey) -> bool {
        self.kernel == key.kernel && self.dtypes == key.dtypes && self.bucket() == Some(key.bucket)
    }

    /// The result of `config`, if its code hash is still `config_hash`.
    pub fn result(&self, config: &Config, config_hash: &str) -> Option<&ResultRecord> {
        let text = config_text(config);
        self.results
            .iter()
            .find(|r| r.config == text && r.config_hash == config_hash)
    }
}

/// One config's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// `NAME=VALUE,...` (empty for a kernel without tunables).
    pub config: String,
    /// The code hash of this config's specialization when it was timed.
    pub config_hash: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl ResultRecord {
    pub fn parsed_config(&self) -> Option<Config> {
        Config::parse(&self.config).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Measured {
        /// Nanoseconds.
        median_ns: f64,
        /// `(p75 - p25) / median`.
        spread: f64,
        samples: u32,
    },
    Failed {
        reason: String,
    },
}

/// `NAME=VALUE,...`, with nothing for an empty config.
pub fn config_text(config: &Config) -> String {
    let parts: Vec<String> = config
        .values
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    parts.join(",")
}

/// A device's cache, loaded.
#[derive(Debug)]
pub struct TuneCache {
    path: PathBuf,
    file: CacheFile,
}

impl TuneCache {
    /// Loads `<dir>/<device>.json`; a missing file is an empty cache, a corrupt one or
    /// one made for another device setup is rebuilt (with a warning / a note). Only an
    /// I/O error other than "not found" is an error.
    pub fn open(dir: &Path, device: &DeviceKey) -> Result<TuneCache, CacheError> {
        let path = dir.join(format!("{}.json", device.file_stem()));
        let empty = CacheFile {
            format: FORMAT,
            device: device.clone(),
            entries: Vec::new(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TuneCache { path, file: empty })
            }
            Err(source) => return Err(CacheError::Read { path, source }),
        };
        let file = match serde_json::from_str::<CacheFile>(&text) {
            Ok(f) if f.format == FORMAT && f.device == *device => f,
            Ok(f) if f.format != FORMAT => {
                tracing::warn!(
                    "tuning cache {} has format {} (this warpforge writes {FORMAT}); rebuilding it",
                    path.display(),
                    f.format
                );
                empty
            }
            Ok(f) => {
                tracing::info!(
                    "tuning cache {} was made for {}; this is {}: re-tuning",
                    path.display(),
                    f.device,
                    device
                );
                empty
            }
            Err(e) => {
                tracing::warn!(
                    "tuning cache {} is corrupt ({e}); rebuilding it",
                    path.display()
                );
                empty
            }
        };
        Ok(TuneCache { path, file })
    }

    /// The caches of the other devices in this cache's folder (sibling `.json` files of the
    /// current format made for another device); unreadable ones are skipped with a note.
    pub fn other_devices(&self) -> Vec<CacheFile> {
        let Some(dir) = self.path.parent() else {
            return Vec::new();
        };
        let Ok(files) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        files
            .flatten()
            .map(|f| f.path())
            .filter(|p| p != &self.path && p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                match serde_json::from_str::<CacheFile>(&text) {
                    Ok(f) if f.format == FORMAT && f.device != self.file.device => Some(f),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::info!("not a tuning cache, skipped: {} ({e})", p.display());
                        None
                    }
                }
            })
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &DeviceKey {
        &self.file.device
    }

    pub fn entries(&self) -> &[Entry] {
        &self.file.entries
    }

    /// The entry of `key` for the current code (never one of an edited kernel).
    pub fn entry(&self, key: &EntryKey) -> Option<&Entry> {
        self.file.entries.iter().find(|e| e.matches(key))
    }

    /// Records `result` under `key`, replacing the same config's earlier result and any
    /// entry of an older version of the kernel for the same problem.
    pub fn record(&mut self, key: &EntryKey, shape: &[usize], result: ResultRecord) {
        self.file
            .entries
            .retain(|e| e.matches(key) || !e.same_problem(key));
        let index = match self.file.entries.iter().position(|e| e.matches(key)) {
            Some(i) => i,
            None => {
                self.file.entries.push(Entry {
                    kernel: key.kernel.clone(),
                    ir_hash: key.ir_hash.clone(),
                    dtypes: key.dtypes.clone(),
                    bucket: key.bucket.dims(),
                    shape: shape.to_vec(),
                    results: Vec::new(),
                });
                self.file.entries.len() - 1
            }
        };
        let results = &mut self.file.entries[index].results;
        results.retain(|r| r.config != result.config);
        results.push(result);
    }

    /// Writes the file: under an exclusive lock, the results other processes saved since
    /// this cache was loaded are merged in (this run's win where both timed a config), then
    /// the union goes to a temporary file in the same directory, renamed over the old one,
    /// so a reader (or a crash) never sees half a file.
    pub fn save(&mut self) -> Result<(), CacheError> {
        let write_err = |source| CacheError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let name = self
            .path
            .file_name()
            .map_or("cache".into(), |n| n.to_string_lossy());
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|_| f))
            .map_err(write_err)?;
        let result = self.merge_and_write(&dir);
        drop(lock); // unlocks
        result
    }

    /// Merges the file on disk into this cache, then writes this cache (the lock held).
    fn merge_and_write(&mut self, dir: &Path) -> Result<(), CacheError> {
        let write_err = |source| CacheError::Write {
            path: self.path.clone(),
            source,
        };
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            if let Ok(on_disk) = serde_json::from_str::<CacheFile>(&text) {
                if on_disk.format == FORMAT && on_disk.device == self.file.device {
                    merge_entries(&mut self.file.entries, on_disk.entries);
                }
            }
        }
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map_or("cache".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, &self.path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        Ok(())
    }
}

/// Adds to `ours` what `theirs` (the file another process saved) has and `ours` lacks:
/// results of configs `ours` did not time for the same problem and code, and whole
/// entries for other problems. An entry of theirs for a problem that `ours` has under
/// other code is dropped when ours is newer by construction (it is what this process
/// runs), as [`TuneCache::record`] replaces old code's entries.
fn merge_entries(ours: &mut Vec<Entry>, theirs: Vec<Entry>) {
    let same_problem =
        |a: &Entry, b: &Entry| a.kernel == b.kernel && a.dtypes == b.dtypes && a.bucket == b.bucket;
    for entry in theirs {
        match ours.iter_mut().find(|e| same_problem(e, &entry)) {
            Some(mine) if mine.ir_hash == entry.ir_hash => {
                for r in entry.results {
                    if !mine.results.iter().any(|m| m.config == r.config) {
                        mine.results.push(r);
                    }
                }
            }
            Some(_) => {} // their entry is for other code of a kernel we have tuned
            None => ours.push(entry),
        }
    }
}
