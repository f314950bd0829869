//! The autotuner: for each library kernel and problem shape, compile every config of the
//! declared space, prune those the device cannot run well, time the rest (each checked
//! against the default config's output first) and keep every result in a per-device
//! cache; at launch, [`TuneTable`] picks the tuned config.
//!
//! - [`shapes`]: problems from a model's `config.json` or a shapes file;
//! - [`prune`]: NVRTC in parallel, resource limits, spills;
//! - [`mod@bench`]: the timing harness (CUDA events, a fake device for tests);
//! - [`strategy`]: exhaustive search, and the trait other strategies implement;
//! - [`tuner`]: the loop of one problem; [`cache`]: the JSON file; [`lookup`]: launch-time
//!   choice; [`tuned_config`]: the same from the per-device cache with no wiring;
//!   [`export`]: the chosen configs as JSON for other programs.

pub mod bench;
pub mod cache;
mod error;
pub mod export;
pub mod kernel;
pub mod key;
pub mod lookup;
pub mod probe;
pub mod prune;
pub mod shapes;
pub mod space_export;
pub mod strategy;
pub mod transfer;
pub mod tuned;
pub mod tuner;

pub use bench::{Bench, DeviceBench, FakeBench, Measurement, RunFailure, SamplePolicy};
pub use cache::{cache_dir, CacheError, TuneCache};
pub use error::TuneError;
pub use kernel::TuneKernel;
pub use key::{Bucket, DeviceKey, EntryKey};
pub use lookup::{Choice, KernelHandle, Source, TuneTable};
pub use prune::{Candidate, Limits, PruneReason, Pruned, Pruning};
pub use shapes::{ModelConfig, ProblemShape};
pub use strategy::{Exhaustive, SearchStrategy, Trial};
pub use tuned::{tuned_config, tuned_config_in};
pub use tuner::{ProblemReport, Progress, TuneOptions, Tuner};
pub use warpforge_dsl::space::{Config, TuneSpace};

pub mod replay;
pub mod search;
