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

/// Whether NVRTC can compile here; without it a test says why it skips part of its checks
/// (and fails under `WARPFORGE_REQUIRE_NVRTC`, as in CI).
fn nvrtc_available() -> bool {
    match warpforge_dsl::nvrtc::supported_archs() {
        Ok(_) => true,
        Err(e) if std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_some() => {
            panic!("NVRTC is required here (WARPFORGE_REQUIRE_NVRTC is set): {e}")
        }
        Err(e) => {
            eprintln!("NVRTC is not installed here ({e}): compile statistics not checked");
            false
        }
    }
}

#[test]
fn an_exhaustively_tuned_problem_exports_as_a_replayable_space() {
    use warpforge_autotune::bench::{Fault, Script};
    use warpforge_autotune::replay::ReplaySpace;
    use warpforge_autotune::space_export::export_spaces;
    use warpforge_autotune::FakeBench;
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let space = gemm.space();
    let mut fake = FakeBench::new();
    for (i, c) in space.iter().enumerate() {
        fake.script(c.clone(), Script::time(20e-6 + i as f64 * 1e-6));
    }
    let broken = space
        .iter()
        .position(|c| *c != gemm.default_config())
        .unwrap();
    fake.script(space[broken].clone(), Script::fault(Fault::Crash, 0));
    let problem = shape("gemm", &[64, 64, 64]);
    let report = tune_once(
        dir.path(),
        &mut fake,
        &gemm,
        &problem,
        &kept(&space),
        quick(),
    );
    assert_eq!(report.failed.len(), 1);

    let out = dir.path().join("spaces");
    let mut heard = 0;
    let written = export_spaces(dir.path(), &out, |_| heard += 1).unwrap();
    assert_eq!((written.len(), heard), (1, 1));
    let file = &written[0];
    assert_eq!(file.configs, space.len());
    let folder = file.path.parent().unwrap().file_name().unwrap();
    assert_eq!(folder, "gemm_64x64x64");
    assert_eq!(
        file.path.file_name().unwrap().to_string_lossy(),
        format!("{}.json.gz", device().file_stem())
    );
    let replay = ReplaySpace::load(&file.path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replay.len(), space.len());
    assert_eq!(
        replay.valid_count(),
        space.len() - 1,
        "the crash is a failed config"
    );
    let fastest = report.best.unwrap().1.median;
    assert!(
        (replay.best_time() - fastest * 1e3).abs() < 1e-9,
        "milliseconds"
    );
    if nvrtc_available() {
        assert!(file.compile_stats);
        let names: Vec<&str> = replay
            .space()
            .resources()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "num_regs",
                "shared_bytes",
                "threads",
                "occupancy",
                "spill_bytes"
            ]
        );
        let registers = &replay.space().resources()[0].values;
        assert!(registers.iter().all(|&r| r > 0.0), "{registers:?}");
    }
}
