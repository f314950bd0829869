//! lop3, prmt and ex2.approx.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

#[kernel(block = (32), tune(LUT = [0x96, 0xE8, 0xCA, 0x1E, 0x00, 0xFF]))]
fn lop3_table<const LUT: u32>(a: &[u32], b: &[u32], c: &[u32], out: &mut [u32]) {
    let i = block_idx_x() * 32 + thread_idx_x();
    out[i] = lop3(a[i], b[i], c[i], LUT);
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn prmt_and_ex2<const UNUSED: u32>(
    a: &[u32],
    b: &[u32],
    s: &[u32],
    x: &[f32],
    bytes: &mut [u32],
    pow: &mut [f32],
) {
    let i = block_idx_x() * 32 + thread_idx_x();
    bytes[i] = prmt(a[i], b[i], s[i]);
    pow[i] = ex2_approx(x[i]);
}

/// xorshift32 values for the inputs.
fn words(n: usize, mut state: u32) -> Vec<u32> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        })
        .collect()
}

#[test]
fn lop3_computes_the_function_its_table_names() {
    let device = Device::cpu();
    let (a, b, c) = (words(64, 1), words(64, 2), words(64, 3));
    type Lop = fn(u32, u32, u32) -> u32;
    let functions: [(i64, Lop); 6] = [
        (0x96, |a, b, c| a ^ b ^ c),
        (0xE8, |a, b, c| (a & b) | (a & c) | (b & c)),
        (0xCA, |a, b, c| (a & b) | (!a & c)),
        (0x1E, |a, b, c| a ^ (b | c)),
        (0x00, |_, _, _| 0),
        (0xFF, |_, _, _| u32::MAX),
    ];
    let (ab, bb, cb) = (
        device.upload(&a).unwrap(),
        device.upload(&b).unwrap(),
        device.upload(&c).unwrap(),
    );
    for (lut, f) in functions {
        let mut out = device.zeros::<u32>(64).unwrap();
        let config = Config::new().with("LUT", lut);
        lop3_table::launch(
            &device,
            &config,
            LaunchDims::linear(2, 32),
            &ab,
            &bb,
            &cb,
            &mut out,
        )
        .unwrap();
        let out = device.download(&out).unwrap();
        for i in 0..64 {
            assert_eq!(out[i], f(a[i], b[i], c[i]), "lut {lut:#x}, thread {i}");
        }
    }
}

/// Byte `k` of the 8 bytes `b:a`.
fn byte_of(a: u32, b: u32, k: u32) -> u32 {
    if k < 4 {
        a >> (8 * k) & 0xff
    } else {
        b >> (8 * (k - 4)) & 0xff
    }
}

#[test]
fn prmt_and_ex2_approx_follow_the_isa() {
    let device = Device::cpu();
    let mut a = words(64, 7);
    let b = words(64, 8);
    let mut s = words(64, 9);
    // Fixed cases: identity, b, byte swap, sign replication of 0x80 and of 0x7f.
    s[..5].copy_from_slice(&[0x3210, 0x7654, 0x0123, 0x8888, 0x9999]);
    a[3] = 0x0000_0080;
    a[4] = 0x0000_7f00;
    let x: Vec<f32> = (0..64)
        .map(|i| {
            if i < 32 {
                i as f32 - 16.0
            } else {
                (i as f32 - 48.0) * 0.37
            }
        })
        .collect();
    let up = |v: &Vec<u32>| device.upload(v).unwrap();
    let (ab, bb, sb, xb) = (up(&a), up(&b), up(&s), device.upload(&x).unwrap());
    let mut bytes = device.zeros::<u32>(64).unwrap();
    let mut pow = device.zeros::<f32>(64).unwrap();
    let config = prmt_and_ex2::default_config();
    let dims = LaunchDims::linear(2, 32);
    prmt_and_ex2::launch(
        &device, &config, dims, &ab, &bb, &sb, &xb, &mut bytes, &mut pow,
    )
    .unwrap();
    let (bytes, pow) = (
        device.download(&bytes).unwrap(),
        device.download(&pow).unwrap(),
    );
    assert_eq!(&bytes[..5], &[a[0], b[1], a[2].swap_bytes(), u32::MAX, 0]);
    for i in 0..64 {
        let want = (0..4).fold(0, |d, n| {
            let sel = s[i] >> (4 * n) & 0xf;
            let byte = byte_of(a[i], b[i], sel & 7);
            let byte = if sel & 8 != 0 {
                if byte & 0x80 != 0 {
                    0xff
                } else {
                    0
                }
            } else {
                byte
            };
            d | byte << (8 * n)
        });
        assert_eq!(bytes[i], want, "prmt, thread {i}");
        assert_eq!(bytes[i], prmt(a[i], b[i], s[i]), "host prmt, thread {i}");
    }
    for (i, (&p, &x)) in pow.iter().zip(&x).enumerate() {
        let want = (x as f64).exp2();
        if i < 32 {
            assert_eq!(p as f64, want, "2^{x} is exact");
        } else {
            assert!(
                ((p as f64 - want) / want).abs() < 1e-6,
                "2^{x}: {p} vs {want}"
            );
        }
    }
}

#[test]
fn bit_intrinsics_compile_with_nvrtc() {
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    }
    let kernels = [
        (
            lop3_table::def(),
            Config::new().with("LUT", 0xE8),
            "lop3.b32",
        ),
        (
            prmt_and_ex2::def(),
            prmt_and_ex2::default_config(),
            "prmt.b32",
        ),
        (
            prmt_and_ex2::def(),
            prmt_and_ex2::default_config(),
            "ex2.approx.f32",
        ),
    ];
    for (def, config, ptx) in kernels {
        let typed = resolve::specialize(def, &config).unwrap();
        assert_eq!(warpforge::dsl::min_arch(&typed), None);
        let source = codegen::cuda_source(&typed);
        for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
            let c = nvrtc::compile(&source, arch, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{arch}: {e}\n{source}"));
            assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX for {arch}");
        }
    }
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn lop3_runtime_table<const UNUSED: u32>(a: &[u32], out: &mut [u32], lut: u32) {
    let i = thread_idx_x();
    out[i] = lop3(a[i], a[i], a[i], lut);
}

#[test]
fn lop3_needs_a_constant_table() {
    let err = resolve::specialize(
        lop3_runtime_table::def(),
        &lop3_runtime_table::default_config(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("takes a constant lut in 0..=255"), "{err}");
}
