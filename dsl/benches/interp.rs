//! The CPU interpreter on a hand-built tiled f32 GEMM (shared-memory tiles, a 4 x 4
//! register tile per thread) at 256 x 256 x 256.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warpforge_dsl::interp::build::{buffer, read};
use warpforge_dsl::interp::sample::{tiled_gemm, tiled_gemm_dims};
use warpforge_dsl::interp::{run, InterpOptions};
use warpforge_dsl::Arg;

const SIZE: u32 = 256;

fn gemm(c: &mut Criterion) {
    let n = SIZE as usize;
    let kernel = tiled_gemm();
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.5).collect();
    let (ba, bb) = (buffer(&a), buffer(&b));
    let mut bc = buffer(&vec![0f32; n * n]);
    let dims = tiled_gemm_dims(SIZE, SIZE);
    let mut group = c.benchmark_group("interp");
    group.sample_size(10);
    // One multiply-add per element of the m x n x k iteration space.
    group.throughput(Throughput::Elements((n * n * n) as u64));
    for (name, options) in [
        ("gemm_256_parallel", InterpOptions::default()),
        ("gemm_256_sequential", InterpOptions::sequential()),
    ] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut args = [
                    Arg::Slice(&ba),
                    Arg::Slice(&bb),
                    Arg::SliceMut(&mut bc),
                    Arg::value(SIZE),
                    Arg::value(SIZE),
                    Arg::value(SIZE),
                ];
                run(&kernel, &dims, &mut args, &options).expect("gemm runs");
            })
        });
    }
    group.finish();
    let out: Vec<f32> = read(&bc);
    let want: f32 = (0..n).fold(0f32, |acc, p| a[p].mul_add(b[p * n], acc));
    assert_eq!(out[0], want, "c[0][0]");
}

criterion_group!(benches, gemm);
criterion_main!(benches);
