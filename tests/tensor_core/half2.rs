//! Packed 16-bit-pair arithmetic (`add_f16x2`, ..., `min_bf16x2`) and shuffles of 16-bit
//! pairs, on the interpreter against host models, and compiled by NVRTC.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

/// Every op on one triple of registers per thread; 12 results per thread.
#[kernel(block = (64), tune(UNUSED = [1]))]
fn packed_ops<const UNUSED: u32>(a: &[u32], b: &[u32], c: &[u32], out: &mut [u32]) {
    let i = block_idx_x() * 64 + thread_idx_x();
    let x = a[i];
    let y = b[i];
    let z = c[i];
    let o = 12 * i;
    out[o] = add_f16x2(x, y);
    out[o + 1] = sub_f16x2(x, y);
    out[o + 2] = mul_f16x2(x, y);
    out[o + 3] = fma_f16x2(x, y, z);
    out[o + 4] = max_f16x2(x, y);
    out[o + 5] = min_f16x2(x, y);
    out[o + 6] = add_bf16x2(x, y);
    out[o + 7] = sub_bf16x2(x, y);
    out[o + 8] = mul_bf16x2(x, y);
    out[o + 9] = fma_bf16x2(x, y, z);
    out[o + 10] = max_bf16x2(x, y);
    out[o + 11] = min_bf16x2(x, y);
}

/// Each lane's pair moved by the four shuffles, as f16x2, bf16x2 and u32.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn pair_shuffles<const UNUSED: u32>(v: &[u32], out: &mut [u32]) {
    let i = lane_id();
    let h = unpack_f16x2(v[i]);
    let b = unpack_bf16x2(v[i]);
    let hx = warp_shfl_xor(h, 5);
    let hd = warp_shfl_down(h, 3);
    let bu = warp_shfl_up(b, 7);
    let bi = warp_shfl_idx(b, 11);
    out[6 * i] = pack_f16x2(hx.x, hx.y);
    out[6 * i + 1] = pack_f16x2(hd.x, hd.y);
    out[6 * i + 2] = pack_bf16x2(bu.x, bu.y);
    out[6 * i + 3] = pack_bf16x2(bi.x, bi.y);
    out[6 * i + 4] = warp_shfl_xor(v[i], 9);
    out[6 * i + 5] = warp_shfl_down(v[i], 17);
}

/// Interesting 16-bit patterns for both formats: zeros, subnormals, ones, ties, the largest
/// finite values, infinities, NaNs.
const SPECIALS: [u16; 24] = [
    0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x3c01, 0x1000, 0x7bff, 0xfbff,
    0x7c00, 0xfc00, 0x7e00, 0x3f80, 0xbf80, 0x3f81, 0x0080, 0x007f, 0x7f7f, 0x7f80, 0xff80, 0x7fc0,
];

fn patterns(n: usize) -> Vec<u32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let lo = if i % 3 == 0 {
                SPECIALS[(s >> 20) as usize % 24]
            } else {
                s as u16
            };
            let hi = if i % 5 == 0 {
                SPECIALS[(s >> 40) as usize % 24]
            } else {
                (s >> 32) as u16
            };
            lo as u32 | (hi as u32) << 16
        })
        .collect()
}

type Host = fn(u32, u32, u32) -> u32;

/// The host functions, in the kernel's output order.
const HOST: [Host; 12] = [
    |a, b, _| add_f16x2(a, b),
    |a, b, _| sub_f16x2(a, b),
    |a, b, _| mul_f16x2(a, b),
    fma_f16x2,
    |a, b, _| max_f16x2(a, b),
    |a, b, _| min_f16x2(a, b),
    |a, b, _| add_bf16x2(a, b),
    |a, b, _| sub_bf16x2(a, b),
    |a, b, _| mul_bf16x2(a, b),
    fma_bf16x2,
    |a, b, _| max_bf16x2(a, b),
    |a, b, _| min_bf16x2(a, b),
];

/// An independent model of the f16 add/sub/mul: the f64 result is exact for two f16, so
/// one rounding by `f16::from_f64` is the correctly rounded answer (NaN canonical).
fn f16_lane(op: usize, x: u16, y: u16) -> u16 {
    let (p, q) = (f16::from_bits(x).to_f64(), f16::from_bits(y).to_f64());
    let r = match op {
        0 => p + q,
        1 => p - q,
        _ => p * q,
    };
    if r.is_nan() {
        0x7fff
    } else {
        f16::from_f64(r).to_bits()
    }
}

#[test]
fn packed_arithmetic_matches_the_host_model_on_many_patterns() {
    let n = 64 * 64;
    let (a, b, c) = (
        patterns(n),
        patterns(2 * n)[n..].to_vec(),
        patterns(3 * n)[2 * n..].to_vec(),
    );
    let device = Device::cpu();
    let (ab, bb, cb) = (
        device.upload(&a).unwrap(),
        device.upload(&b).unwrap(),
        device.upload(&c).unwrap(),
    );
    let mut out = device.zeros::<u32>(12 * n).unwrap();
    let config = packed_ops::default_config();
    packed_ops::launch(
        &device,
        &config,
        LaunchDims::linear(64, 64),
        &ab,
        &bb,
        &cb,
        &mut out,
    )
    .unwrap();
    let out = device.download(&out).unwrap();
    for i in 0..n {
        for (k, host) in HOST.iter().enumerate() {
            let want = host(a[i], b[i], c[i]);
            let got = out[12 * i + k];
            assert_eq!(
                got, want,
                "op {k} on {:#010x} {:#010x} {:#010x}",
                a[i], b[i], c[i]
            );
            if k < 3 {
                let lane = |w: u32, s: u32| (w >> s) as u16;
                for s in [0, 16] {
                    let model = f16_lane(k, lane(a[i], s), lane(b[i], s));
                    assert_eq!(
                        lane(got, s),
                        model,
                        "op {k} lane {s} on {:#x} {:#x}",
                        a[i],
                        b[i]
                    );
                }
            }
        }
    }
}

#[test]
fn pairs_shuffle_as_one_register_on_every_lane() {
    let v: Vec<u32> = (0..32)
        .map(|i| 0x3c00_0000 | i << 16 | (0x4000 + i))
        .collect();
    let device = Device::cpu();
    let vb = device.upload(&v).unwrap();
    let mut out = device.zeros::<u32>(6 * 32).unwrap();
    let config = pair_shuffles::default_config();
    pair_shuffles::launch(&device, &config, LaunchDims::linear(1, 32), &vb, &mut out).unwrap();
    let out = device.download(&out).unwrap();
    for lane in 0..32usize {
        let down = |d: usize| if lane + d < 32 { v[lane + d] } else { v[lane] };
        let up = |d: usize| if lane >= d { v[lane - d] } else { v[lane] };
        let want = [v[lane ^ 5], down(3), up(7), v[11], v[lane ^ 9], down(17)];
        assert_eq!(&out[6 * lane..6 * lane + 6], &want, "lane {lane}");
    }
}

#[test]
fn packed_kernels_compile_with_nvrtc() {
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    }
    let config = packed_ops::default_config();
    let ops = resolve::specialize(packed_ops::def(), &config).unwrap();
    let shuffles = resolve::specialize(pair_shuffles::def(), &config).unwrap();
    let ops_src = codegen::cuda_source(&ops);
    let shfl_src = codegen::cuda_source(&shuffles);
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        let c = nvrtc::compile(&ops_src, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{ops_src}"));
        for ptx in [
            "add.rn.f16x2",
            "sub.rn.f16x2",
            "mul.rn.f16x2",
            "fma.rn.f16x2",
            "max.f16x2",
            "min.f16x2",
            "fma.rn.bf16x2",
            "max.bf16x2",
            "min.bf16x2",
        ] {
            assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX for {arch}");
        }
        assert!(!c.ptx.contains("add.rn.bf16x2"), "bf16 add must stay sm_80");
        let c = nvrtc::compile(&shfl_src, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{shfl_src}"));
        // One 32-bit shuffle per pair: 4 pair shuffles and 2 u32 shuffles.
        assert_eq!(c.ptx.matches("shfl.sync").count(), 6, "{}", c.ptx);
    }
    assert_eq!(
        warpforge::dsl::min_arch(&ops).map(|(a, _)| a),
        Some(Arch::SM80)
    );
    assert_eq!(warpforge::dsl::min_arch(&shuffles), None);
}
