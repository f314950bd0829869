//! Tuned configs at launch without wiring: [`tuned_config`] answers "which config should this
//! library kernel launch with at these dims on this device" from the per-device tuning cache
//! that `warpforge autotune` fills, as a [`TuneTable`] does (exact shape bucket, else the
//! nearest tuned bucket, else the kernel's default).
//!
//! Each (cache file, kernel) is read and prepared once per process and kept; a process that
//! tunes and launches at once should build its own [`TuneTable`] after tuning instead.
//!
//! ```
//! use warpforge_autotune::{tuned_config, Source};
//! use warpforge_dsl::Device;
//!
//! // The interpreter has no tuning cache: the kernel's default config.
//! let (config, source) = tuned_config(&Device::cpu(), "gemm", &[256, 256, 256]).unwrap();
//! assert_eq!(source, Source::Default);
//! assert_eq!(config, warpforge_kernels::find("gemm").unwrap().def().space.default_config());
//! ```

use crate::cache::{cache_dir, TuneCache};
use crate::key::DeviceKey;
use crate::lookup::{Source, TuneTable};
use crate::{TuneError, TuneKernel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use warpforge_dsl::backend::Backend;
use warpforge_dsl::{Config, Device};

/// The config to launch the library kernel `kernel` with at problem `dims` on `device`, and
/// where it comes from. On a GPU: from the device's cache in [`cache_dir`] (`$WARPFORGE_TUNE_CACHE`,
/// else the user cache dir); on the cpu and host backends: the kernel's default.
pub fn tuned_config(
    device: &Device,
    kernel: &str,
    dims: &[usize],
) -> Result<(Config, Source), TuneError> {
    if device.backend() != Backend::Cuda {
        let lib = find(kernel)?;
        return Ok((lib.def().space.default_config(), Source::Default));
    }
    let key = crate::probe::device_key(device)?;
    tuned_config_in(&cache_dir(None)?, &key, kernel, dims)
}

/// [`tuned_config`] for the device `key` with its cache in `dir`.
pub fn tuned_config_in(
    dir: &Path,
    key: &DeviceKey,
    kernel: &str,
    dims: &[usize],
) -> Result<(Config, Source), TuneError> {
    let table = table(dir, key, kernel)?;
    let handle = table
        .handle(kernel)
        .expect("the table holds its one kernel");
    let choice = table.lookup(handle, dims);
    Ok((choice.config.clone(), choice.source))
}

type Tables = Mutex<HashMap<(PathBuf, String), Arc<TuneTable>>>;

/// The table of one kernel from one cache file, read once per process.
fn table(dir: &Path, key: &DeviceKey, kernel: &str) -> Result<Arc<TuneTable>, TuneError> {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    let tables = TABLES.get_or_init(Default::default);
    let id = (dir.join(key.file_stem()), kernel.to_string());
    if let Some(table) = lock(tables).get(&id) {
        return Ok(Arc::clone(table));
    }
    let prepared = TuneKernel::new(find(kernel)?)?;
    let cache = TuneCache::open(dir, key)?;
    let table = Arc::new(TuneTable::new(&cache, &[prepared]));
    lock(tables).insert(id, Arc::clone(&table));
    Ok(table)
}

fn lock(tables: &Tables) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, String), Arc<TuneTable>>> {
    tables.lock().unwrap_or_else(|p| p.into_inner())
}

fn find(kernel: &str) -> Result<warpforge_kernels::Kernel, TuneError> {
    warpforge_kernels::find(kernel).ok_or_else(|| TuneError::UnknownKernel {
        name: kernel.to_string(),
        known: "see `warpforge kernels`".to_string(),
    })
}
