//! `tuned_config`: launch-time configs from the per-device cache, with no wiring.

mod common;

use common::*;
use warpforge_autotune::cache::{config_text, Outcome, ResultRecord};
use warpforge_autotune::{tuned_config, tuned_config_in, Source, TuneCache, TuneError};
use warpforge_dsl::Device;

#[test]
fn the_cache_of_the_device_gives_the_tuned_config() {
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let fast = gemm.space()[2].clone();
    assert_ne!(fast, gemm.default_config());
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let key = gemm.entry_key(&[512, 512, 512]).unwrap();
    let record = ResultRecord {
        config: config_text(&fast),
        config_hash: gemm.config_hash(&fast).unwrap(),
        outcome: Outcome::Measured {
            median_ns: 1000.0,
            spread: 0.01,
            samples: 10,
        },
    };
    cache.record(&key, &[512, 512, 512], record);
    cache.save().unwrap();

    let exact = tuned_config_in(dir.path(), &device(), "gemm", &[512, 512, 512]).unwrap();
    assert_eq!(exact, (fast.clone(), Source::Exact));
    let (config, source) =
        tuned_config_in(dir.path(), &device(), "gemm", &[1024, 512, 512]).unwrap();
    assert_eq!((config, source), (fast, Source::Nearest(1)));
    // Another kernel of the same cache has nothing tuned: its default.
    let softmax = kernel("softmax");
    let (config, source) = tuned_config_in(dir.path(), &device(), "softmax", &[64, 4096]).unwrap();
    assert_eq!(
        (config, source),
        (softmax.default_config(), Source::Default)
    );
}

#[test]
fn the_interpreter_uses_defaults_and_unknown_kernels_are_errors() {
    let (config, source) = tuned_config(&Device::cpu(), "softmax", &[64, 4096]).unwrap();
    assert_eq!(source, Source::Default);
    assert_eq!(config, kernel("softmax").default_config());
    let err = tuned_config(&Device::cpu(), "no_such_kernel", &[1]).unwrap_err();
    assert!(matches!(err, TuneError::UnknownKernel { .. }), "{err}");
}
