//! The per-device tuning cache: atomic writes, corrupt files, edited kernels, new configs.

mod common;

use common::*;
use std::fs;
use warpforge_autotune::cache::{cache_dir, config_text, Outcome, ResultRecord, FORMAT};
use warpforge_autotune::key::{Bucket, EntryKey};
use warpforge_autotune::{FakeBench, TuneCache};

#[test]
fn results_round_trip_through_a_readable_file_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    let problem = shape("vector_add", &[1000]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!(report.timed, 9);

    let files: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".nvidia-test-gpu-sm_90-132sm.json.lock")
        .collect();
    assert_eq!(
        files,
        ["nvidia-test-gpu-sm_90-132sm.json"],
        "no temporary file left"
    );
    let text = fs::read_to_string(dir.path().join(&files[0])).unwrap();
    assert!(
        text.contains("\"bucket\": [\n        1024\n      ]"),
        "{text}"
    );
    assert!(text.contains("\"status\": \"measured\""), "{text}");
    assert!(text.contains("\"config\": \"BLOCK=128,ITEMS=1\""), "{text}");

    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert_eq!(cache.entries().len(), 1);
    let entry = &cache.entries()[0];
    assert_eq!(entry.results.len(), 9);
    assert_eq!(entry.shape, [1000]);
    assert_eq!(entry.ir_hash, k.ir_hash);
    assert!(entry.results.iter().all(|r| matches!(
        r.outcome,
        Outcome::Measured { median_ns, samples, .. } if (median_ns - 1e6).abs() < 1.0 && samples >= 5
    )));
}

#[test]
fn a_corrupt_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.json", device().file_stem()));
    fs::write(&path, "{ \"format\": 1, \"device\": ").unwrap();
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert!(cache.entries().is_empty());
    assert_eq!(cache.path(), path);

    let (k, space) = vector_add_space();
    let mut fake = FakeBench::new();
    let problem = shape("vector_add", &[1000]);
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!(report.timed, 9);
    let rebuilt: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(rebuilt["format"], FORMAT);
    assert_eq!(rebuilt["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn another_driver_or_nvrtc_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let problem = shape("vector_add", &[1000]);
    tune_once(
        dir.path(),
        &mut FakeBench::new(),
        &k,
        &problem,
        &kept(&space),
        quick(),
    );
    let upgraded = warpforge_autotune::DeviceKey {
        driver: "13.0".into(),
        ..device()
    };
    assert_eq!(upgraded.file_stem(), device().file_stem(), "same file");
    let cache = TuneCache::open(dir.path(), &upgraded).unwrap();
    assert!(cache.entries().is_empty());
}

#[test]
fn an_edited_kernel_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let problem = shape("vector_add", &[1000]);
    tune_once(
        dir.path(),
        &mut FakeBench::new(),
        &k,
        &problem,
        &kept(&space),
        quick(),
    );

    let mut edited = k.clone();
    edited.ir_hash = "0123456789abcdef".into();
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert!(cache.entry(&edited.entry_key(&[1000]).unwrap()).is_none());
    let mut fake = FakeBench::new();
    let report = tune_once(
        dir.path(),
        &mut fake,
        &edited,
        &problem,
        &kept(&space),
        quick(),
    );
    assert_eq!((report.timed, report.reused), (9, 0));
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert_eq!(cache.entries().len(), 1, "the stale entry is replaced");
    assert_eq!(cache.entries()[0].ir_hash, "0123456789abcdef");
}

#[test]
fn a_config_whose_code_changed_is_retimed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let problem = shape("vector_add", &[1000]);
    tune_once(
        dir.path(),
        &mut FakeBench::new(),
        &k,
        &problem,
        &kept(&space),
        quick(),
    );
    // Pretend one specialization was timed with different code.
    let path = dir.path().join(format!("{}.json", device().file_stem()));
    let target = config_text(&space[4]);
    let mut file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    for r in file["entries"][0]["results"].as_array_mut().unwrap() {
        if r["config"] == target.as_str() {
            r["config_hash"] = "ffffffffffffffff".into();
        }
    }
    fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
    let mut fake = FakeBench::new();
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!((report.timed, report.reused), (1, 8));
    assert!(fake.runs(&space[4]) > 0);
    let others = space.iter().enumerate().filter(|(i, _)| *i != 4);
    let default = k.default_config();
    for (_, c) in others {
        let expected = if *c == default { 1 } else { 0 };
        assert_eq!(
            fake.runs(c),
            expected,
            "{c}: only the reference output runs"
        );
    }
}

#[test]
fn a_config_added_to_the_space_is_the_only_one_timed() {
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let problem = shape("vector_add", &[1000]);
    let (old, new) = space.split_at(8);
    tune_once(
        dir.path(),
        &mut FakeBench::new(),
        &k,
        &problem,
        &kept(old),
        quick(),
    );
    let mut fake = FakeBench::new();
    let report = tune_once(dir.path(), &mut fake, &k, &problem, &kept(&space), quick());
    assert_eq!((report.timed, report.reused), (1, 8));
    assert!(fake.runs(&new[0]) > 1);
    assert_eq!(
        fake.total_runs(),
        fake.runs(&new[0]) + 1,
        "+ the reference output"
    );
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    assert_eq!(cache.entries()[0].results.len(), 9);
}

#[test]
fn cache_dir_prefers_the_flag_then_the_environment() {
    let flag = std::path::Path::new("/tmp/flag-dir");
    assert_eq!(cache_dir(Some(flag)).unwrap(), flag);
    // The environment variable is read by the same function; set it in a child process
    // rather than here, where tests run in parallel threads.
    if std::env::var_os("WARPFORGE_TUNE_CACHE_TEST_CHILD").is_some() {
        let dir = cache_dir(None).unwrap();
        assert_eq!(dir, std::path::Path::new("/tmp/env-dir"));
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cache_dir_prefers_the_flag_then_the_environment"])
        .env("WARPFORGE_TUNE_CACHE_TEST_CHILD", "1")
        .env("WARPFORGE_TUNE_CACHE", "/tmp/env-dir")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Two runs tuning one device at once, each saving after every problem: the file ends with
/// every result of both (a save merges what the other saved, under a lock), where a plain
/// rename would keep only the last writer's.
#[test]
fn concurrent_runs_lose_no_results() {
    let dir = tempfile::tempdir().unwrap();
    let key = |kernel: &str, n: usize| EntryKey {
        kernel: kernel.into(),
        ir_hash: "h".into(),
        dtypes: vec!["f32".into()],
        bucket: Bucket::of(&[1 << n]).unwrap(),
    };
    let result = |config: &str| ResultRecord {
        config: config.into(),
        config_hash: "c".into(),
        outcome: Outcome::Measured {
            median_ns: 1000.0,
            spread: 0.01,
            samples: 10,
        },
    };
    // Both load the (empty) file before either saves, so neither starts with the other's.
    let run = |kernel: &'static str| {
        let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
        move || {
            for n in 0..12 {
                // Both runs time problem 0 with their own config, and 1..12 alone.
                cache.record(&key(kernel, n), &[1 << n], result(&format!("BLOCK={n}")));
                cache.record(
                    &key("shared", 0),
                    &[1],
                    result(&format!("BLOCK={kernel}{n}")),
                );
                cache.save().unwrap();
            }
        }
    };
    let (a, b) = (std::thread::spawn(run("a")), std::thread::spawn(run("b")));
    a.join().unwrap();
    b.join().unwrap();
    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    for kernel in ["a", "b"] {
        for n in 0..12 {
            assert!(cache.entry(&key(kernel, n)).is_some(), "{kernel} {n} lost");
        }
    }
    let shared = cache.entry(&key("shared", 0)).unwrap();
    assert_eq!(
        shared.results.len(),
        24,
        "every config of the shared problem kept"
    );
}
