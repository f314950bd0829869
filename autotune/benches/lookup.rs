//! The cost of choosing a tuned config at launch: a lookup plus a mock launch (a closure
//! that does nothing with the config) against the mock launch alone.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warpforge_autotune::cache::{config_text, Outcome, ResultRecord, TuneCache};
use warpforge_autotune::{DeviceKey, TuneKernel, TuneTable};
use warpforge_dsl::{Config, LaunchDims};

fn device() -> DeviceKey {
    DeviceKey {
        name: "bench GPU".into(),
        arch: "sm_90".into(),
        sms: 132,
        driver: "12.8".into(),
        nvrtc: "12.9".into(),
        warpforge: "0.1.0".into(),
    }
}

/// A table of gemm tuned at 4 token counts × 6 projections: a realistic model's worth.
fn table(dir: &std::path::Path) -> (TuneTable, TuneKernel) {
    let gemm = TuneKernel::new(warpforge_kernels::find("gemm").unwrap()).unwrap();
    let mut cache = TuneCache::open(dir, &device()).unwrap();
    let configs = gemm.space();
    for (i, m) in [1usize, 16, 128, 4096].into_iter().enumerate() {
        for (j, (n, k)) in [
            (4096, 4096),
            (1024, 4096),
            (14336, 4096),
            (4096, 14336),
            (128256, 4096),
            (512, 512),
        ]
        .into_iter()
        .enumerate()
        {
            let config = &configs[(i * 6 + j) % configs.len()];
            let key = gemm.entry_key(&[m, n, k]).unwrap();
            let record = ResultRecord {
                config: config_text(config),
                config_hash: gemm.config_hash(config).unwrap(),
                outcome: Outcome::Measured {
                    median_ns: 1000.0,
                    spread: 0.005,
                    samples: 20,
                },
            };
            cache.record(&key, &[m, n, k], record);
        }
    }
    let table = TuneTable::new(&cache, std::slice::from_ref(&gemm));
    (table, gemm)
}

fn mock_launch(config: &Config, dims: LaunchDims) {
    black_box((config, dims));
}

fn bench_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (table, gemm) = table(dir.path());
    let handle = table.handle("gemm").unwrap();
    let default = gemm.default_config();
    let dims = LaunchDims::grid_2d((64, 2), (16, 16));
    let shape = [128usize, 14336, 4096];
    assert_eq!(
        table.lookup(handle, &shape).source,
        warpforge_autotune::Source::Exact
    );
    let mut group = c.benchmark_group("launch");
    group.bench_function("mock launch", |b| {
        b.iter(|| mock_launch(black_box(&default), black_box(dims)))
    });
    group.bench_function("lookup + mock launch", |b| {
        b.iter(|| {
            let choice = table.lookup(black_box(handle), black_box(&shape));
            mock_launch(choice.config, black_box(dims))
        })
    });
    group.bench_function("nearest-bucket miss + mock launch", |b| {
        b.iter(|| {
            let choice = table.lookup(black_box(handle), black_box(&[100usize, 3000, 5000]));
            mock_launch(choice.config, black_box(dims))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
