//! `warpforge autotune --show / --export`: the chosen configs of every cached device.

mod common;

use common::*;
use warpforge_autotune::cache::{config_text, Outcome, ResultRecord};
use warpforge_autotune::export::export_dir;
use warpforge_autotune::{Config, TuneCache, TuneKernel};

fn measured(kernel: &TuneKernel, config: &Config, ns: f64, hash: Option<&str>) -> ResultRecord {
    ResultRecord {
        config: config_text(config),
        config_hash: hash.map_or_else(|| kernel.config_hash(config).unwrap(), str::to_string),
        outcome: Outcome::Measured {
            median_ns: ns,
            spread: 0.01,
            samples: 10,
        },
    }
}

#[test]
fn the_fastest_current_config_of_each_entry_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let space = gemm.space();
    let (a, b, c) = (&space[1], &space[2], &space[3]);
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let small = gemm.entry_key(&[16, 4096, 4096]).unwrap();
    cache.record(&small, &[16, 4096, 4096], measured(&gemm, a, 900.0, None));
    cache.record(&small, &[16, 4096, 4096], measured(&gemm, b, 500.0, None));
    // Faster, but timed for other code: launches ignore it, so the export does too.
    cache.record(
        &small,
        &[16, 4096, 4096],
        measured(&gemm, c, 100.0, Some("0123")),
    );
    let large = gemm.entry_key(&[4096, 4096, 4096]).unwrap();
    let failed = ResultRecord {
        config: config_text(a),
        config_hash: gemm.config_hash(a).unwrap(),
        outcome: Outcome::Failed {
            reason: "crashed".into(),
        },
    };
    cache.record(&large, &[4096, 4096, 4096], failed);
    cache.save().unwrap();
    std::fs::write(dir.path().join("notes.json"), "{\"not\": \"a cache\"}").unwrap();

    let export = export_dir(dir.path()).unwrap();
    assert_eq!(export.devices.len(), 1, "the non-cache file is skipped");
    let chosen = &export.devices[0].chosen;
    assert_eq!(
        chosen.len(),
        1,
        "an entry with no measurement chooses nothing"
    );
    assert_eq!(chosen[0].kernel, "gemm");
    assert_eq!(chosen[0].config, config_text(b));
    assert_eq!(chosen[0].median_ns, 500.0);
    assert!(chosen[0].current);
    assert_eq!(chosen[0].bucket, [16, 4096, 4096]);
    for (name, value) in &b.values {
        assert_eq!(chosen[0].values[name], *value);
    }
    let json = serde_json::to_value(&export).unwrap();
    assert_eq!(json["devices"][0]["chosen"][0]["kernel"], "gemm");
    assert_eq!(json["devices"][0]["device"]["arch"], device().arch);
}

#[test]
fn a_missing_cache_dir_exports_no_device() {
    let dir = tempfile::tempdir().unwrap();
    let export = export_dir(&dir.path().join("absent")).unwrap();
    assert!(export.devices.is_empty());
}
