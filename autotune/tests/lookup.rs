//! Choosing a config at launch: exact bucket, nearest bucket, default.

mod common;

use common::*;
use warpforge_autotune::cache::{config_text, Outcome, ResultRecord};
use warpforge_autotune::{Config, Source, TuneCache, TuneKernel, TuneTable};

fn measured(kernel: &TuneKernel, config: &Config, ns: f64) -> ResultRecord {
    ResultRecord {
        config: config_text(config),
        config_hash: kernel.config_hash(config).unwrap(),
        outcome: Outcome::Measured {
            median_ns: ns,
            spread: 0.004,
            samples: 12,
        },
    }
}

#[test]
fn exact_then_nearest_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let softmax = kernel("softmax");
    let space = gemm.space();
    let (a, b, c) = (&space[1], &space[2], &space[3]);
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let small = gemm.entry_key(&[16, 4096, 4096]).unwrap();
    let large = gemm.entry_key(&[4096, 4096, 4096]).unwrap();
    cache.record(&small, &[16, 4096, 4096], measured(&gemm, a, 900.0));
    cache.record(&small, &[16, 4096, 4096], measured(&gemm, b, 500.0));
    cache.record(&large, &[4096, 4096, 4096], measured(&gemm, c, 9e5));
    let failed = ResultRecord {
        config: config_text(a),
        config_hash: gemm.config_hash(a).unwrap(),
        outcome: Outcome::Failed {
            reason: "crashed".into(),
        },
    };
    cache.record(&large, &[4096, 4096, 4096], failed);
    cache.save().unwrap();

    let cache = TuneCache::open(dir.path(), &device()).unwrap();
    let table = TuneTable::new(&cache, &[gemm.clone(), softmax.clone()]);
    assert_eq!(table.len(), 2);
    let g = table.handle("gemm").unwrap();
    let s = table.handle("softmax").unwrap();

    let hit = table.lookup(g, &[13, 4000, 4096]);
    assert_eq!(
        (hit.config, hit.source),
        (b, Source::Exact),
        "fastest of the bucket"
    );
    let hit = table.lookup(g, &[3000, 4096, 4096]);
    assert_eq!(
        (hit.config, hit.source),
        (c, Source::Exact),
        "a failure never wins"
    );
    let near = table.lookup(g, &[64, 4096, 4096]);
    assert_eq!((near.config, near.source), (b, Source::Nearest(2)));
    let near = table.lookup(g, &[1024, 4096, 4096]);
    assert_eq!((near.config, near.source), (c, Source::Nearest(2)));
    let none = table.lookup(s, &[16, 128256]);
    assert_eq!(none.source, Source::Default);
    assert_eq!(*none.config, softmax.default_config());
    let wrong_rank = table.lookup(g, &[16, 4096]);
    assert_eq!(wrong_rank.source, Source::Default);
    assert_eq!(*wrong_rank.config, gemm.default_config());
    // Repeated misses are served (and logged once) without changing the answer.
    assert_eq!(
        table.lookup(g, &[64, 4096, 4096]).source,
        Source::Nearest(2)
    );
}

#[test]
fn stale_code_is_never_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let gemm = kernel("gemm");
    let space = gemm.space();
    let mut cache = TuneCache::open(dir.path(), &device()).unwrap();
    let key = gemm.entry_key(&[128, 1024, 1024]).unwrap();
    let mut stale = measured(&gemm, &space[5], 100.0);
    stale.config_hash = "ffffffffffffffff".into();
    cache.record(&key, &[128, 1024, 1024], stale);
    cache.record(&key, &[128, 1024, 1024], measured(&gemm, &space[6], 200.0));

    let table = TuneTable::new(&cache, std::slice::from_ref(&gemm));
    let g = table.handle("gemm").unwrap();
    let hit = table.lookup(g, &[128, 1024, 1024]);
    assert_eq!(
        hit.config, &space[6],
        "the faster result's code changed since"
    );

    let mut edited = gemm.clone();
    edited.ir_hash = "0000000000000000".into();
    let table = TuneTable::new(&cache, &[edited]);
    assert!(table.is_empty());
    assert_eq!(table.lookup(g, &[128, 1024, 1024]).source, Source::Default);
    assert!(table.handle("softmax").is_none());
}
