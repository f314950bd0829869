//! mma.sync with f16 accumulators (m16n8k16) and FP8 inputs (m16n8k32), lane by lane against
//! a host model of the PTX ISA 9.7.14.5.8 fragment layouts ("Matrix Fragments for
//! mma.m16n8k16 with floating point type" and "... for mma.m16n8k32", `.e4m3`/`.e5m2`).

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_f16_acc<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec2<u32>],
    d: &mut [Vec2<u32>],
) {
    let i = lane_id();
    d[i] = mma_m16n8k16_f16_f16(a[i], b[i], c[i]);
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_e4m3<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = lane_id();
    d[i] = mma_m16n8k32_e4m3_f32(a[i], b[i], c[i]);
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_e5m2<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = lane_id();
    d[i] = mma_m16n8k32_e5m2_f32(a[i], b[i], c[i]);
}

/// Row-major A (16×K), B (K×8), C (16×8) as f64 values exact in the input formats.
struct Problem {
    k: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

/// Position of c_i/d_i (i in 0..4): row g (+8 for i >= 2), col 2t + i % 2.
fn cd_index(lane: usize, i: usize) -> usize {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * (i / 2)) * 8 + 2 * t + i % 2
}

/// D = A·B + C in f64 (exact for the small integers used in the exact tests).
fn reference(p: &Problem) -> Vec<f64> {
    (0..128)
        .map(|e| {
            let (i, j) = (e / 8, e % 8);
            (0..p.k)
                .map(|k| p.a[i * p.k + k] * p.b[k * 8 + j])
                .sum::<f64>()
                + p.c[e]
        })
        .collect()
}

fn f16_bits(x: f64) -> u32 {
    f16::from_f64(x).to_bits() as u32
}

/// f16 fragments: a_i (i in 0..8) at row g (+8 for i%4 >= 2), col 2t + i%2 (+8 for i >= 4);
/// b_i (i in 0..4) at row 2t + i%2 (+8 for i >= 2), col g; two per register, low first.
fn f16_frags(p: &Problem, lane: usize) -> ([u32; 4], [u32; 2], [u32; 2]) {
    let (g, t) = (lane / 4, lane % 4);
    let a = |i: usize| {
        let row = g + if i % 4 >= 2 { 8 } else { 0 };
        let col = 2 * t + i % 2 + if i >= 4 { 8 } else { 0 };
        f16_bits(p.a[row * 16 + col])
    };
    let b = |i: usize| f16_bits(p.b[(2 * t + i % 2 + 8 * (i / 2)) * 8 + g]);
    let c = |i: usize| f16_bits(p.c[cd_index(lane, i)]);
    (
        [0, 1, 2, 3].map(|r| a(2 * r) | a(2 * r + 1) << 16),
        [0, 1].map(|r| b(2 * r) | b(2 * r + 1) << 16),
        [0, 1].map(|r| c(2 * r) | c(2 * r + 1) << 16),
    )
}

/// FP8 fragments: a_i (i in 0..16) at row g (+8 for i%8 >= 4), col 4t + i%4 (+16 for
/// i >= 8); b_i (i in 0..8) at row 4t + i%4 (+16 for i >= 4), col g; four per register,
/// the lowest index in bits 0..8.
fn fp8_frags(p: &Problem, lane: usize, code: fn(f64) -> u8) -> ([u32; 4], [u32; 2]) {
    let (g, t) = (lane / 4, lane % 4);
    let a = |i: usize| {
        let row = g + if i % 8 >= 4 { 8 } else { 0 };
        let col = 4 * t + i % 4 + if i >= 8 { 16 } else { 0 };
        code(p.a[row * 32 + col]) as u32
    };
    let b = |i: usize| code(p.b[(4 * t + i % 4 + 16 * (i / 4)) * 8 + g]) as u32;
    let pack =
        |f: &dyn Fn(usize) -> u32, r: usize| (0..4).fold(0, |w, j| w | f(4 * r + j) << (8 * j));
    (
        [0, 1, 2, 3].map(|r| pack(&a, r)),
        [0, 1].map(|r| pack(&b, r)),
    )
}

fn e4m3(x: f64) -> u8 {
    F8E4M3::from_f32(x as f32).to_bits()
}

fn e5m2(x: f64) -> u8 {
    F8E5M2::from_f32(x as f32).to_bits()
}

/// Runs the f16-accumulator MMA; D per lane as f64 (c0..c3).
fn run_f16_acc(p: &Problem) -> Vec<f64> {
    let device = Device::cpu();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for lane in 0..32 {
        let (fa, fb, fc) = f16_frags(p, lane);
        a.extend(fa);
        b.extend(fb);
        c.extend(fc);
    }
    let (a, b, c) = (
        device.upload(&a).unwrap(),
        device.upload(&b).unwrap(),
        device.upload(&c).unwrap(),
    );
    let mut d = device.zeros::<u32>(64).unwrap();
    let config = mma_f16_acc::default_config();
    mma_f16_acc::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &a,
        &b,
        &c,
        &mut d,
    )
    .unwrap();
    let d = device.download(&d).unwrap();
    d.iter()
        .flat_map(|&w| [w as u16, (w >> 16) as u16])
        .map(|h| f16::from_bits(h).to_f64())
        .collect()
}

type Fp8Launch = fn(&Device, &Buffer<u32>, &Buffer<u32>, &Buffer<f32>, &mut Buffer<f32>);

fn run_fp8(p: &Problem, code: fn(f64) -> u8, launch: Fp8Launch) -> Vec<f64> {
    let device = Device::cpu();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for lane in 0..32 {
        let (fa, fb) = fp8_frags(p, lane, code);
        a.extend(fa);
        b.extend(fb);
        c.extend((0..4).map(|i| p.c[cd_index(lane, i)] as f32));
    }
    let (a, b, c) = (
        device.upload(&a).unwrap(),
        device.upload(&b).unwrap(),
        device.upload(&c).unwrap(),
    );
    let mut d = device.zeros::<f32>(128).unwrap();
    launch(&device, &a, &b, &c, &mut d);
    device
        .download(&d)
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect()
}

fn launch_e4m3(
    dev: &Device,
    a: &Buffer<u32>,
    b: &Buffer<u32>,
    c: &Buffer<f32>,
    d: &mut Buffer<f32>,
) {
    let config = mma_e4m3::default_config();
    mma_e4m3::launch(dev, &config, LaunchDims::linear(1, 32), a, b, c, d).unwrap();
}

fn launch_e5m2(
    dev: &Device,
    a: &Buffer<u32>,
    b: &Buffer<u32>,
    c: &Buffer<f32>,
    d: &mut Buffer<f32>,
) {
    let config = mma_e5m2::default_config();
    mma_e5m2::launch(dev, &config, LaunchDims::linear(1, 32), a, b, c, d).unwrap();
}

fn assert_lanes(d: &[f64], want: &[f64], tolerance: f64) {
    for lane in 0..32 {
        for i in 0..4 {
            let (got, expected) = (d[lane * 4 + i], want[cd_index(lane, i)]);
            assert!(
                (got - expected).abs() <= tolerance * expected.abs().max(1.0),
                "lane {lane} d{i}: got {got}, want {expected}"
            );
        }
    }
}

/// Small integers: every product and sum is exact in every format used.
fn integer_problem(k: usize) -> Problem {
    Problem {
        k,
        a: (0..16 * k)
            .map(|i| ((i * 7 + 3) % 9) as f64 - 4.0)
            .collect(),
        b: (0..8 * k).map(|i| ((i * 5 + 1) % 7) as f64 - 3.0).collect(),
        c: (0..128).map(|i| (i % 11) as f64 * 0.5).collect(),
    }
}

/// Every element of A distinct (B picks single columns of A), so a misplaced one shows.
fn placement_problem(k: usize, limit: usize) -> Problem {
    Problem {
        k,
        a: (0..16 * k).map(|i| (i % limit) as f64).collect(),
        b: (0..8 * k)
            .map(|i| if (i / 8) % 8 == i % 8 { 1.0 } else { 0.0 })
            .collect(),
        c: (0..128).map(|i| i as f64 * 0.25).collect(),
    }
}

#[test]
fn mma_f16_accumulate_matches_the_fragment_layout_lane_by_lane() {
    // The exact sums rounded once to f16 (above 512 the f16 spacing is 0.5).
    let f16r = |x: &f64| f16::from_f64(*x).to_f64();
    for p in [integer_problem(16), placement_problem(16, 256)] {
        let want: Vec<f64> = reference(&p).iter().map(f16r).collect();
        assert_lanes(&run_f16_acc(&p), &want, 0.0);
    }
}

#[test]
fn mma_fp8_matches_the_fragment_layout_lane_by_lane() {
    // E4M3 holds the integers up to 16 exactly, E5M2 up to 8.
    for p in [integer_problem(32), placement_problem(32, 16)] {
        assert_lanes(&run_fp8(&p, e4m3, launch_e4m3), &reference(&p), 0.0);
    }
    for p in [integer_problem(32), placement_problem(32, 8)] {
        assert_lanes(&run_fp8(&p, e5m2, launch_e5m2), &reference(&p), 0.0);
    }
}

fn random(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0
}

/// Random data: the results are the f64 sums rounded once (the f16 tolerance is one f16
/// rounding; FP8 sums of 32 products stay far within f32's precision).
#[test]
fn mma_random_data_within_tolerance() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let f16r = |x: f64| f16::from_f64(x).to_f64();
    let mut p = Problem {
        k: 16,
        a: (0..256).map(|_| f16r(random(&mut s))).collect(),
        b: (0..128).map(|_| f16r(random(&mut s))).collect(),
        c: (0..128).map(|_| f16r(random(&mut s))).collect(),
    };
    assert_lanes(&run_f16_acc(&p), &reference(&p), 1e-3);
    let e4 = |x: f64| F8E4M3::from_bits(e4m3(x)).to_f32() as f64;
    p.k = 32;
    p.a = (0..512).map(|_| e4(random(&mut s) * 8.0)).collect();
    p.b = (0..256).map(|_| e4(random(&mut s))).collect();
    p.c = (0..128).map(|_| random(&mut s) as f32 as f64).collect();
    assert_lanes(&run_fp8(&p, e4m3, launch_e4m3), &reference(&p), 1e-6);
}

#[test]
fn new_mma_kernels_compile_with_nvrtc() {
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    }
    let config = mma_f16_acc::default_config();
    let cases = [
        (
            mma_f16_acc::def(),
            "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16",
            Arch::SM80,
        ),
        (
            mma_e4m3::def(),
            "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32",
            Arch::SM89,
        ),
        (
            mma_e5m2::def(),
            "mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32",
            Arch::SM89,
        ),
    ];
    for (def, ptx, oldest) in cases {
        let typed = resolve::specialize(def, &config).unwrap();
        let source = codegen::cuda_source(&typed);
        for arch in [Arch::SM80, Arch::SM89, Arch::SM90]
            .into_iter()
            .filter(|&a| a >= oldest)
        {
            let c = nvrtc::compile(&source, arch, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}\n{source}", def.name));
            assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX for {arch}");
        }
    }
}

#[test]
fn fp8_mma_needs_sm89_and_says_so() {
    for (def, name) in [
        (mma_e4m3::def(), "mma_m16n8k32_e4m3_f32"),
        (mma_e5m2::def(), "mma_m16n8k32_e5m2_f32"),
    ] {
        let typed = resolve::specialize(def, &mma_e4m3::default_config()).unwrap();
        assert_eq!(warpforge::dsl::min_arch(&typed), Some((Arch::SM89, name)));
        let err = nvrtc::check_arch(&typed, Arch::SM80)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("`{name}`")), "{err}");
        assert!(err.contains("needs sm_89 or newer"), "{err}");
        nvrtc::check_arch(&typed, Arch::SM89).unwrap();
        nvrtc::check_arch(&typed, Arch::SM90).unwrap();
        // And an NVRTC that emits PTX ISA 8.4: 12.4 or newer.
        let lib = std::path::Path::new("/opt/old-cuda/lib64/libnvrtc.so.12");
        let err = nvrtc::check_nvrtc_version(&typed, (12, 2), lib)
            .unwrap_err()
            .to_string();
        for part in [
            name,
            "PTX ISA 8.4",
            "NVRTC 12.4 or newer",
            "is 12.2",
            "/opt/old-cuda",
        ] {
            assert!(err.contains(part), "{part} missing: {err}");
        }
        nvrtc::check_nvrtc_version(&typed, (12, 4), lib).unwrap();
        nvrtc::check_nvrtc_version(&typed, (13, 0), lib).unwrap();
    }
    let typed = resolve::specialize(mma_f16_acc::def(), &mma_f16_acc::default_config()).unwrap();
    assert_eq!(
        warpforge::dsl::min_arch(&typed),
        Some((Arch::SM80, "mma_m16n8k16_f16_f16"))
    );
    let old = std::path::Path::new("libnvrtc.so.12");
    nvrtc::check_nvrtc_version(&typed, (12, 0), old).expect("f16 mma: any NVRTC 12");
}
