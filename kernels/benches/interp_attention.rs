//! Interpreter cost of one flash-attention tile: one block of the default d = 128 config
//! (128 query rows, 8 warps) over 64 keys (one K/V tile) of one (sequence, head), f16, with
//! the sanitizer on (the default) and off — what checking attention on the CPU costs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::f16;
use warpforge_dsl::interp::{self, InterpOptions};
use warpforge_dsl::{resolve, Arg, Device};
use warpforge_kernels::attention::{config_for, def_of, default_config, dims, inputs, AttnShape};

fn bench(c: &mut Criterion) {
    let shape = AttnShape::square(1, 1, 128, false, &[128]);
    let shape = AttnShape {
        k_lens: vec![64],
        ..shape
    };
    let config = config_for(&default_config(128), &shape);
    let def = def_of(warpforge_dsl::ScalarType::F16).unwrap();
    let kernel = resolve::specialize(def, &config).unwrap();
    let device = Device::cpu();
    let (q, k, v) = inputs::<f16>(&shape);
    let (q, k, v) = (
        device.upload(&q).unwrap(),
        device.upload(&k).unwrap(),
        device.upload(&v).unwrap(),
    );
    let mut o = device.zeros::<f16>(128 * 128).unwrap();
    let mut lse = device.zeros::<f32>(128).unwrap();
    let cu_q = device.upload(&shape.cu_seqlens_q()).unwrap();
    let cu_k = device.upload(&shape.cu_seqlens_k()).unwrap();
    let table = device.upload(&[0u32]).unwrap();
    let launch_dims = dims(&config, &shape);
    let mut launch = |options: &InterpOptions| {
        let mut args = [
            Arg::slice(&q),
            Arg::slice(&k),
            Arg::slice(&v),
            Arg::slice_mut(&mut o),
            Arg::slice_mut(&mut lse),
            Arg::slice(&cu_q),
            Arg::slice(&cu_k),
            Arg::value(1u32),
            Arg::value(1u32),
            Arg::value(shape.default_scale() * std::f32::consts::LOG2_E),
            Arg::value(0u32),
            Arg::slice(&table),
            Arg::value(0u32),
            Arg::value(0u32),
        ];
        interp::run(&kernel, &launch_dims, &mut args, options).unwrap()
    };
    let stats = launch(&InterpOptions::default());
    let mut group = c.benchmark_group("interp_attention_tile_128x64_d128");
    group.sample_size(10);
    group.throughput(Throughput::Elements(stats.thread_instructions));
    for (name, options) in [
        ("sanitized", InterpOptions::default()),
        ("fast", InterpOptions::fast()),
    ] {
        group.bench_function(name, |bch| bch.iter(|| launch(&options)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
