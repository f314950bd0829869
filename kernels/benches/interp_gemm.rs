//! Interpreter throughput on the library GEMM at 256³ (default config), with the sanitizer
//! on (the default) and off (`InterpOptions::fast()`): time per launch
//! and thread-instructions per second (a thread-instruction = one IR register instruction executed by one
//! thread; counted by the interpreter).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warpforge_dsl::interp::{self, InterpOptions};
use warpforge_dsl::{resolve, Arg, Device, LaunchDims};
use warpforge_kernels::gemm;

fn bench(c: &mut Criterion) {
    let n = 256usize;
    let config = gemm::gemm::default_config();
    let kernel = resolve::specialize(gemm::gemm::def(), &config).unwrap();
    let device = Device::cpu();
    let a = device.upload(&vec![1.0f32; n * n]).unwrap();
    let b = device.upload(&vec![2.0f32; n * n]).unwrap();
    let mut out = device.zeros::<f32>(n * n).unwrap();
    let dims: LaunchDims = gemm::dims(&config, n as u32, n as u32);
    let dim = n as u32;
    let mut launch = |options: &InterpOptions| {
        let mut args = [
            Arg::slice(&a),
            Arg::slice(&b),
            Arg::slice_mut(&mut out),
            Arg::value(dim),
            Arg::value(dim),
            Arg::value(dim),
        ];
        interp::run(&kernel, &dims, &mut args, options).unwrap()
    };
    let stats = launch(&InterpOptions::default());
    let mut group = c.benchmark_group("interp_gemm_256");
    group.sample_size(10);
    group.throughput(Throughput::Elements(stats.thread_instructions));
    let variants = [
        ("parallel_sanitized", InterpOptions::default()),
        ("parallel_fast", InterpOptions::fast()),
        ("one_thread_sanitized", InterpOptions::sequential()),
        (
            "one_thread_fast",
            InterpOptions {
                parallel: false,
                ..InterpOptions::fast()
            },
        ),
    ];
    for (name, options) in variants {
        group.bench_function(name, |bch| bch.iter(|| launch(&options)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
