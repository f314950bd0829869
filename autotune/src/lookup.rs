//! Choosing a config at launch: the exact shape bucket tuned on this device, else the
//! nearest tuned bucket of the same kernel code (by log-distance of the dimensions), else
//! the kernel's heuristic default. A miss is logged once per key.
//!
//! The hit path allocates nothing: a [`KernelHandle`] is resolved once per kernel, the
//! bucket of the launch's dims is a `Copy` value computed on the stack, and the table is a
//! sorted `Vec` searched by bisection.

use crate::cache::{Outcome, TuneCache};
use crate::kernel::TuneKernel;
use crate::key::Bucket;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use warpforge_dsl::Config;

/// A kernel registered with a [`TuneTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelHandle(u32);

/// Where a chosen config comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Tuned for this shape bucket.
    Exact,
    /// Tuned for the nearest bucket (this log-distance away).
    Nearest(u32),
    /// Nothing tuned for this kernel: its heuristic default.
    Default,
}

/// The config to launch with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice<'t> {
    pub config: &'t Config,
    pub source: Source,
}

struct KernelRow {
    name: &'static str,
    default: Config,
    /// Tuned buckets with their best config (index into `configs`).
    buckets: Vec<(Bucket, u32)>,
}

/// The best tuned config per (kernel, bucket) of one device, for lookups at launch.
pub struct TuneTable {
    kernels: Vec<KernelRow>,
    /// (kernel, bucket) → index into `configs`, sorted for bisection.
    exact: Vec<(KernelHandle, Bucket, u32)>,
    configs: Vec<Config>,
    /// Keys whose miss was already logged.
    logged: Mutex<HashSet<(KernelHandle, Option<Bucket>)>>,
}

impl TuneTable {
    /// A table for `kernels` (their handles are their positions) from a device's cache.
    /// Only entries of the current code are used: the kernel's hash must match, and a
    /// result only counts if its config's code hash still matches (an edit that changes
    /// one specialization discards that result alone).
    pub fn new(cache: &TuneCache, kernels: &[TuneKernel]) -> TuneTable {
        let mut table = TuneTable {
            kernels: Vec::new(),
            exact: Vec::new(),
            configs: Vec::new(),
            logged: Mutex::new(HashSet::new()),
        };
        for (index, kernel) in kernels.iter().enumerate() {
            let handle = KernelHandle(index as u32);
            let buckets = table.best_per_bucket(cache, kernel);
            for &(bucket, config) in &buckets {
                table.exact.push((handle, bucket, config));
            }
            table.kernels.push(KernelRow {
                name: kernel.name(),
                default: kernel.default_config(),
                buckets,
            });
        }
        table.exact.sort_unstable_by_key(|&(h, b, _)| (h, b));
        table
    }

    fn best_per_bucket(&mut self, cache: &TuneCache, kernel: &TuneKernel) -> Vec<(Bucket, u32)> {
        let mut hashes: HashMap<Config, Option<String>> = HashMap::new();
        let mut out = Vec::new();
        let entries = cache.entries().iter().filter(|e| {
            e.kernel == kernel.name() && e.ir_hash == kernel.ir_hash && e.dtypes == kernel.dtypes
        });
        for entry in entries {
            let Some(bucket) = entry.bucket() else {
                continue;
            };
            let mut best: Option<(f64, Config)> = None;
            for r in &entry.results {
                let (Outcome::Measured { median_ns, .. }, Some(config)) =
                    (&r.outcome, r.parsed_config())
                else {
                    continue;
                };
                let hash = hashes
                    .entry(config.clone())
                    .or_insert_with(|| kernel.config_hash(&config).ok());
                let current = hash.as_deref() == Some(r.config_hash.as_str());
                if current && best.as_ref().is_none_or(|(t, _)| *median_ns < *t) {
                    best = Some((*median_ns, config));
                }
            }
            if let Some((_, config)) = best {
                self.configs.push(config);
                out.push((bucket, (self.configs.len() - 1) as u32));
            }
        }
        out
    }

    /// The handle of the kernel called `name`.
    pub fn handle(&self, name: &str) -> Option<KernelHandle> {
        let i = self.kernels.iter().position(|k| k.name == name)?;
        Some(KernelHandle(i as u32))
    }

    /// How many (kernel, bucket) pairs are tuned.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// The config to launch `kernel` with at `dims`.
    ///
    /// # Panics
    /// If `kernel` is not a handle of this table.
    pub fn lookup(&self, kernel: KernelHandle, dims: &[usize]) -> Choice<'_> {
        let bucket = Bucket::of(dims);
        if let Some(b) = bucket {
            let found = self
                .exact
                .binary_search_by(|&(h, eb, _)| (h, eb).cmp(&(kernel, b)));
            if let Ok(i) = found {
                return Choice {
                    config: &self.configs[self.exact[i].2 as usize],
                    source: Source::Exact,
                };
            }
        }
        self.miss(kernel, bucket)
    }

    fn miss(&self, kernel: KernelHandle, bucket: Option<Bucket>) -> Choice<'_> {
        let row = &self.kernels[kernel.0 as usize];
        let nearest = bucket.and_then(|b| {
            row.buckets
                .iter()
                .filter_map(|(eb, c)| Some((eb.distance(&b)?, *c)))
                .min_by_key(|&(d, _)| d)
        });
        let choice = match nearest {
            Some((d, c)) => Choice {
                config: &self.configs[c as usize],
                source: Source::Nearest(d),
            },
            None => Choice {
                config: &row.default,
                source: Source::Default,
            },
        };
        self.log_once(kernel, bucket, &choice);
        choice
    }

    fn log_once(&self, kernel: KernelHandle, bucket: Option<Bucket>, choice: &Choice) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if !logged.insert((kernel, bucket)) {
            return;
        }
        let name = self.kernels[kernel.0 as usize].name;
        let shape = bucket.map_or("(too many dimensions)".into(), |b| b.to_string());
        match choice.source {
            Source::Nearest(d) => tracing::info!(
                "no tuned config for {name} at {shape} on this device; using the nearest \
                 tuned bucket ({d} doublings away): {}",
                choice.config
            ),
            _ => tracing::info!(
                "no tuned config for {name} at {shape} on this device; using the default \
                 {} (run `warpforge autotune` to tune it)",
                choice.config
            ),
        }
    }
}
