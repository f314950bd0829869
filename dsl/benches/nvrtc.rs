//! NVRTC compile time of a small kernel: cold (NVRTC every time) and from the disk cache
//! (a fresh `CompileCache` each time, so the in-memory map is empty).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warpforge_dsl::nvrtc::{self, Arch, CompileCache, CompileOptions};

const KERNEL: &str = r#"
#include <cuda_fp16.h>
extern "C" __global__ void __launch_bounds__(256) scale(const __half* x, unsigned n, float* y, float a) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * __half2float(x[i]);
    }
}
"#;

fn compile(c: &mut Criterion) {
    if let Err(e) = nvrtc::toolkit() {
        eprintln!("SKIP nvrtc bench: NVRTC is not available:\n{e}");
        return;
    }
    let options = CompileOptions::default();
    let mut group = c.benchmark_group("nvrtc");
    group.sample_size(10);
    group.bench_function("compile_cold_sm90", |b| {
        b.iter(|| nvrtc::compile(black_box(KERNEL), Arch::SM90, &options).unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM90, &options)
        .unwrap();
    group.bench_function("compile_disk_cache_sm90", |b| {
        b.iter(|| {
            let hit = CompileCache::at(dir.path())
                .compile(black_box(KERNEL), Arch::SM90, &options)
                .unwrap();
            assert!(hit.cached);
            hit
        })
    });
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
