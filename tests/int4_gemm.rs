//! The int4 dequant-GEMM on the interpreter: the magic-number dequantization bit for bit
//! (all 256 nibble pairs, every zero point), the dequantized weight through the whole GEMM
//! against the host reference bit for bit (A = identity), sampled configs of the four
//! instances on ragged shapes with MARLIN's accuracy criterion, both group dims, act-order
//! with the device permutation, and the shape errors. The whole space of the first
//! instance of each source runs in `tests/library.rs` (and `warpforge check`).

use warpforge::dsl::{Element, LaunchDims};
use warpforge::kernel;
use warpforge::kernels::family::Lcg;
use warpforge::kernels::int4::dequant::{dequant_word_bf16, dequant_word_f16};
use warpforge::kernels::int4::family::{random_weight, Shape};
use warpforge::kernels::int4::host::{def_of, default_config, launch, reference, run, DeviceInt4};
use warpforge::kernels::int4::layout::{pack, Int4Float};
use warpforge::kernels::int4::{GroupDim, Int4Weight};
use warpforge::prelude::*;

/// `out[i]` = the four registers `dequant_word` makes of `q[i]` with zero pair `zero[i]`
/// and scale pair `scale[i]` in every register.
#[kernel(block = (256), tune(UNUSED = [1]), types(T = [f16, bf16]))]
fn dequant_probe<T: Float, const UNUSED: u32>(
    q: &[u32],
    zero: &[u32],
    scale: &[u32],
    out: &mut [Vec4<u32>],
    n: u32,
) {
    let i = block_idx_x() * 256 + thread_idx_x();
    if i < n {
        let z = zero[i];
        let s = scale[i];
        out[i] = dequant_word::<T>(q[i], Vec4::new(z, z, z, z), Vec4::new(s, s, s, s));
    }
}

fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// Every (code_lo, code_hi) pair in every register position, with every zero point and a
/// few scales: each half must be `T((code − zero) · scale)` exactly.
fn dequant_is_exact<T: Int4Float>(def: &'static warpforge::dsl::KernelDef) {
    let device = Device::cpu();
    let scales = [1.0f32, 0.0078125, 3.5, 0.1];
    let mut cases = Vec::new(); // (lo, hi, zero, scale)
    for lo in 0..16u32 {
        for hi in 0..16u32 {
            for zero in 0..16u32 {
                cases.push((lo, hi, zero, scales[((lo + hi + zero) % 4) as usize]));
            }
        }
    }
    // Nibble pair j = (position j, position j + 4): the same pair in all four registers.
    let q: Vec<u32> = cases
        .iter()
        .map(|&(lo, hi, _, _)| (0..4).fold(0, |q, j| q | lo << (4 * j) | hi << (16 + 4 * j)))
        .collect();
    let zero: Vec<u32> = cases
        .iter()
        .map(|&(_, _, z, _)| {
            let bits = T::bits_of(T::magic() + z as f32);
            pair(bits, bits)
        })
        .collect();
    let scale: Vec<u32> = cases
        .iter()
        .map(|&(_, _, _, s)| pair(T::bits_of(s), T::bits_of(s)))
        .collect();
    let n = cases.len();
    let (dq, dz, ds) = (
        device.upload(&q).unwrap(),
        device.upload(&zero).unwrap(),
        device.upload(&scale).unwrap(),
    );
    let mut out = device.zeros::<u32>(4 * n).unwrap();
    let mut args = [
        Arg::slice(&dq),
        Arg::slice(&dz),
        Arg::slice(&ds),
        Arg::slice_mut(&mut out),
        Arg::value(n as u32),
    ];
    let dims = LaunchDims::linear((n as u32).div_ceil(256), 256);
    device
        .launch(def, &def.space.default_config(), dims, &mut args)
        .unwrap();
    let out = device.download(&out).unwrap();
    for (i, &(lo, hi, z, s)) in cases.iter().enumerate() {
        // The scale as the kernel holds it (0.1 is not exact in T).
        let s = T::value_of(T::bits_of(s));
        let want = pair(
            T::bits_of((lo as f32 - z as f32) * s),
            T::bits_of((hi as f32 - z as f32) * s),
        );
        for r in 0..4 {
            assert_eq!(
                out[4 * i + r],
                want,
                "{}: codes ({lo}, {hi}), zero {z}, scale {s}, register {r}",
                T::SCALAR
            );
        }
    }
}

#[test]
fn magic_number_dequant_is_exact_for_every_nibble_pair_and_zero() {
    dequant_is_exact::<f16>(dequant_probe_f16::def());
    dequant_is_exact::<bf16>(dequant_probe_bf16::def());
}

/// Symmetric: zero 8 subtracted as the constant `magic + 8`, so (n, 8, scale 1) gives n − 8.
#[test]
fn symmetric_zero_gives_code_minus_eight() {
    let device = Device::cpu();
    let def = dequant_probe_f16::def();
    let q: Vec<u32> = (0..256u32).map(|x| (x & 15) | (x >> 4) << 16).collect();
    let zero = vec![0x6408_6408u32; 256];
    let scale = vec![pair(0x3c00, 0x3c00); 256];
    let (dq, dz, ds) = (
        device.upload(&q).unwrap(),
        device.upload(&zero).unwrap(),
        device.upload(&scale).unwrap(),
    );
    let mut out = device.zeros::<u32>(1024).unwrap();
    let mut args = [
        Arg::slice(&dq),
        Arg::slice(&dz),
        Arg::slice(&ds),
        Arg::slice_mut(&mut out),
        Arg::value(256u32),
    ];
    device
        .launch(
            def,
            &def.space.default_config(),
            LaunchDims::linear(1, 256),
            &mut args,
        )
        .unwrap();
    let out = device.download(&out).unwrap();
    for x in 0..256usize {
        let (lo, hi) = ((x & 15) as f32 - 8.0, (x >> 4) as f32 - 8.0);
        let want = pair(f16::from_f32(lo).to_bits(), f16::from_f32(hi).to_bits());
        assert_eq!(out[4 * x], want, "nibbles {x:#04x}");
    }
}

fn activations<T: Int4Float>(m: usize, lda: usize, k: usize, salt: u64) -> Vec<T> {
    let mut rng = Lcg::for_dims(&[m, lda, k], salt);
    (0..m * lda)
        .map(|e| {
            T::from_f32(if e % lda < k {
                rng.float(1.0)
            } else {
                f32::NAN
            })
        })
        .collect()
}

/// A = identity (m = k): C is the dequantized weight rounded to T, bit for bit, through
/// packing, the pipeline, the dequant and the MMAs (and split-K: one nonzero term per sum).
fn identity_gemm_is_the_dequantized_weight<T: Int4Float>(dim: GroupDim) {
    let device = Device::cpu();
    let k = 96;
    for (group, asym) in [(32, true), (64, false), (0, true)] {
        let s = Shape {
            m: k,
            n: 136,
            k,
            group,
            act_order: false,
            asym,
        };
        let w = random_weight(dim, s);
        let a: Vec<T> = (0..k * k)
            .map(|e| T::from_f32((e / k == e % k) as u32 as f32))
            .collect();
        let def = def_of(dim, T::SCALAR).unwrap();
        for config in [def.space.default_config(), default_config(def, k)] {
            let c = run::<T>(&device, &config, &w, &a, k, k).unwrap();
            let want: Vec<u16> = w.dequantize().iter().map(|&x| T::bits_of(x)).collect();
            let got: Vec<u16> = c.iter().map(|x| x.to_bits() as u16).collect();
            assert_eq!(got, want, "{} {dim:?} group {group} [{config}]", def.name);
        }
    }
}

#[test]
fn identity_gemm_reproduces_the_dequantized_weight_bit_for_bit() {
    for dim in [GroupDim::Oc, GroupDim::Ic] {
        identity_gemm_is_the_dequantized_weight::<f16>(dim);
        identity_gemm_is_the_dequantized_weight::<bf16>(dim);
    }
}

/// MARLIN's criterion, mean |C − C_ref| / mean |C_ref| < 1e-3. For f16 against the f64
/// reference itself; bf16's own output rounding is 2^-8 relative, so against the
/// reference rounded to bf16.
fn assert_marlin<T: Int4Float>(got: &[T], want: &[f32], what: &str) {
    let rounded = T::SCALAR == bf16::SCALAR;
    let (mut err, mut mag) = (0f64, 0f64);
    for (g, &w) in got.iter().zip(want) {
        let w = if rounded { T::from_f32(w).to_f32() } else { w } as f64;
        err += (g.to_f32() as f64 - w).abs();
        mag += w.abs();
    }
    let rel = err / mag.max(f64::MIN_POSITIVE);
    assert!(rel < 1e-3, "{what}: mean relative error {rel:.3e}");
}

/// Ragged M, N and K, both group dims, group sizes 32/64/128/per-channel, symmetric and
/// asymmetric, act-order (Oc), on sampled configs of all four instances.
#[test]
fn sampled_configs_meet_marlins_criterion_on_ragged_shapes() {
    let device = Device::cpu();
    let shapes = [
        (1, 200, 136, 32, false),
        (7, 64, 512, 128, true),
        (16, 136, 264, 64, false),
        (33, 72, 160, 0, true),
        (128, 64, 96, 32, false),
    ];
    for dim in [GroupDim::Oc, GroupDim::Ic] {
        for (i, &(m, n, k, group, asym)) in shapes.iter().enumerate() {
            let act_order = dim == GroupDim::Oc && i % 2 == 1;
            let s = Shape {
                m,
                n,
                k,
                group,
                act_order,
                asym,
            };
            let w = random_weight(dim, s);
            check_configs::<f16>(&device, &w, s, i);
            check_configs::<bf16>(&device, &w, s, i);
        }
    }
}

fn check_configs<T: Int4Float>(device: &Device, w: &Int4Weight, s: Shape, salt: usize) {
    let def = def_of(w.dim, T::SCALAR).unwrap();
    let lda = s.lda();
    let a = activations::<T>(s.m, lda, s.k, salt as u64);
    let want = reference::<T>(w, &a, s.m, lda);
    let all = def.space.configs();
    // The default, the heuristic for m, and 4 configs spread over the space.
    let mut configs = vec![def.space.default_config(), default_config(def, s.m)];
    configs.extend(
        all.iter()
            .skip(salt * 7 % 29)
            .step_by(all.len() / 4)
            .cloned(),
    );
    for config in configs {
        let got = run::<T>(device, &config, w, &a, s.m, lda).unwrap();
        let what = format!("{} {}x{}x{} [{config}]", def.name, s.m, s.n, s.k);
        assert_marlin::<T>(&got, &want, &what);
    }
}

/// Act-order through the device permutation kernel (the family's case) and the host one
/// (`run`) agree with the reference on A in its original column order.
#[test]
fn act_order_permutes_activations_on_the_device() {
    use warpforge::kernels::find;
    let device = Device::cpu();
    for name in ["int4_gemm_oc_f16", "int4_gemm_oc_bf16"] {
        let kernel = find(name).unwrap();
        let problem = Shape {
            m: 5,
            n: 128,
            k: 256,
            group: 64,
            act_order: true,
            asym: true,
        }
        .problem();
        let report = kernel
            .check(&device, &kernel.default_config(), &problem)
            .unwrap();
        assert!(report.passed(), "{name}: {report}");
    }
}

#[test]
fn bad_shapes_are_clear_errors() {
    let device = Device::cpu();
    let s = Shape {
        m: 2,
        n: 64,
        k: 64,
        group: 32,
        act_order: false,
        asym: false,
    };
    let w = random_weight(GroupDim::Oc, s);
    let p = pack::<f16>(&w).unwrap();
    let dw = DeviceInt4::upload(&device, p).unwrap();
    let config = def_of(GroupDim::Oc, f16::SCALAR)
        .unwrap()
        .space
        .default_config();
    let mut c = device.zeros::<f16>(2 * 64).unwrap();
    let mut ws = device.zeros::<f32>(1).unwrap();
    // lda not a multiple of 8.
    let a = device.upload(&vec![f16::ZERO; 2 * 68]).unwrap();
    let err = launch(&device, &config, &dw, &a, 68, 2, &mut c, &mut ws)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lda") && err.contains("multiple of 8"),
        "{err}"
    );
    // C of the wrong size.
    let a = device.upload(&vec![f16::ZERO; 2 * 64]).unwrap();
    let mut small = device.zeros::<f16>(64).unwrap();
    let err = launch(&device, &config, &dw, &a, 64, 2, &mut small, &mut ws)
        .unwrap_err()
        .to_string();
    assert!(err.contains("m·n"), "{err}");
    // A weight packed for f16 used with bf16 activations.
    let a = device.upload(&vec![bf16::ZERO; 2 * 64]).unwrap();
    let mut cb = device.zeros::<bf16>(2 * 64).unwrap();
    let err = launch(&device, &config, &dw, &a, 64, 2, &mut cb, &mut ws)
        .unwrap_err()
        .to_string();
    assert!(err.contains("packed for f16"), "{err}");
    // A group the layout cannot express.
    let mut w = w;
    w.group = 48;
    w.scales.truncate(2 * 64);
    w.zeros.truncate(2 * 64);
    let err = pack::<f16>(&w).unwrap_err().to_string();
    assert!(err.contains("group size 48"), "{err}");
}

/// MARLIN's test shapes (n = 512, k = 1024 at m = 1, 16, 128) and a long K (4096, several
/// K tiles per split) on the defaults, the batch heuristic and a few sampled configs.
#[test]
fn larger_shapes_meet_marlins_criterion() {
    let device = Device::cpu();
    for (i, &(m, n, k)) in [
        (1, 512, 1024),
        (16, 512, 1024),
        (128, 512, 1024),
        (1, 256, 4096),
    ]
    .iter()
    .enumerate()
    {
        let asym = i % 2 == 1;
        let oc = Shape {
            m,
            n,
            k,
            group: 128,
            act_order: false,
            asym,
        };
        check_configs::<f16>(&device, &random_weight(GroupDim::Oc, oc), oc, i + 11);
        let ic = Shape { group: 64, ..oc };
        check_configs::<bf16>(&device, &random_weight(GroupDim::Ic, ic), ic, i + 17);
    }
}
