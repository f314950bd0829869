//! The real bench on the CPU interpreter (every workload, output checks across configs,
//! a whole tuning run), and on a GPU when there is one.

mod common;

use common::*;
use warpforge_autotune::bench::{CudaTimer, DeviceBench};
use warpforge_autotune::{Bench, RunFailure};
use warpforge_dsl::Device;

#[test]
fn every_workload_agrees_across_its_space_on_the_interpreter() {
    let cpu = Device::cpu();
    let problems = [
        ("gemm", vec![17, 40, 9]),
        ("softmax", vec![3, 300]),
        ("vector_add", vec![1000]),
        ("sum_partials", vec![5000]),
    ];
    for (name, dims) in problems {
        let k = kernel(name);
        let mut bench = DeviceBench::new(&cpu).unwrap();
        bench.prepare(&shape(name, &dims)).unwrap();
        let reference = bench.output(&k.default_config()).unwrap();
        for config in k.space() {
            let out = bench.output(&config).unwrap();
            warpforge_autotune::bench::compare(&reference, &out, bench.tolerance())
                .unwrap_or_else(|e| panic!("{name} {config}: {e}"));
        }
        match name {
            "softmax" => {
                for row in reference.chunks(300) {
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
                }
            }
            "sum_partials" => assert_eq!(reference.len(), 1),
            "gemm" => assert_eq!(reference.len(), 17 * 40),
            _ => assert!(reference.iter().any(|&x| x != 0.0)),
        }
        assert!(bench.sample(&k.default_config()).unwrap() > 0.0);
        assert!(bench.healthy());
    }
}

#[test]
fn an_unprepared_bench_errs_instead_of_panicking() {
    let cpu = Device::cpu();
    let mut bench = DeviceBench::new(&cpu).unwrap();
    let c = kernel("vector_add").default_config();
    assert!(matches!(bench.output(&c), Err(RunFailure::Error(_))));
    assert!(matches!(
        bench.prepare(&shape("gemm", &[1, 2])),
        Err(RunFailure::Error(_))
    ));
}

#[test]
fn a_whole_tuning_run_on_the_interpreter() {
    let cpu = Device::cpu();
    let dir = tempfile::tempdir().unwrap();
    let (k, space) = vector_add_space();
    let mut bench = DeviceBench::new(&cpu).unwrap();
    let report = tune_once(
        dir.path(),
        &mut bench,
        &k,
        &shape("vector_add", &[2000]),
        &kept(&space),
        quick(),
    );
    assert!(
        !report.has_failures(),
        "{:?} {:?}",
        report.error,
        report.failed
    );
    assert_eq!(report.timed, 9);
    assert!(report.best.unwrap().1.median > 0.0);
}

#[test]
fn cuda_events_time_a_tuning_run() {
    let gpu = match Device::cuda(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("skipping: no GPU here ({e})");
            return;
        }
    };
    let timer = CudaTimer::new(&gpu).unwrap();
    assert!(timer.flush_bytes() >= 1 << 20);
    let key = warpforge_autotune::probe::device_key(&gpu).unwrap();
    assert!(key.sms > 0, "{key}");
    let dir = tempfile::tempdir().unwrap();
    let k = kernel("softmax");
    let space = k.space();
    let mut bench = DeviceBench::new(&gpu).unwrap();
    let report = tune_once(
        dir.path(),
        &mut bench,
        &k,
        &shape("softmax", &[128, 32000]),
        &kept(&space),
        quick(),
    );
    assert!(
        !report.has_failures(),
        "{:?} {:?}",
        report.error,
        report.failed
    );
    let (best, m) = report.best.clone().unwrap();
    eprintln!("softmax 128x32000 on {key}: best {best} at {:.2} µs (spread {:.3}), {:.2}x over the default", m.median * 1e6, m.spread, report.speedup().unwrap());
    assert!(m.median > 1e-7 && m.median < 1e-2);
}
