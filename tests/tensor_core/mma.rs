//! mma.sync m16n8k16 (f16/bf16, f32 accumulate) and the fragment packing helpers.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

/// One MMA per warp; each lane brings its own fragments and stores its piece of D.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_f16_frags<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = block_idx_x() * 32 + lane_id();
    d[i] = mma_m16n8k16_f16_f32(a[i], b[i], c[i]);
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_bf16_frags<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = block_idx_x() * 32 + lane_id();
    d[i] = mma_m16n8k16_bf16_f32(a[i], b[i], c[i]);
}

/// Only half of the warp reaches the MMA: a divergence error.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn mma_divergent<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = lane_id();
    if i < 16 {
        d[i] = mma_m16n8k16_f16_f32(a[i], b[i], c[i]);
    }
}

/// Blocks of 48 threads: the second warp is partial.
#[kernel(block = (48), tune(UNUSED = [1]))]
fn mma_partial_warp<const UNUSED: u32>(
    a: &[Vec4<u32>],
    b: &[Vec2<u32>],
    c: &[Vec4<f32>],
    d: &mut [Vec4<f32>],
) {
    let i = thread_idx_x() % 32;
    d[thread_idx_x()] = mma_m16n8k16_f16_f32(a[i], b[i], c[i]);
}

/// Packs pairs and unpacks them again.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn pack_pairs<const UNUSED: u32>(
    h: &[f16],
    bh: &[bf16],
    packed: &mut [u32],
    round_trip: &mut [f32],
) {
    let i = thread_idx_x();
    let p = pack_f16x2(h[2 * i], h[2 * i + 1]);
    let q = pack_bf16x2(bh[2 * i], bh[2 * i + 1]);
    packed[2 * i] = p;
    packed[2 * i + 1] = q;
    let u = unpack_f16x2(p);
    let v = unpack_bf16x2(q);
    round_trip[4 * i] = u.x.to_f32();
    round_trip[4 * i + 1] = u.y.to_f32();
    round_trip[4 * i + 2] = v.x.to_f32();
    round_trip[4 * i + 3] = v.y.to_f32();
}

// ---- host model (PTX ISA 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with floating
// point type"): groupID = lane >> 2, threadID_in_group = lane % 4.

/// A 16x16, B 16x8, C 16x8, row-major, as f32 values exactly representable in the inputs.
struct Problem {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

/// The A fragment of `lane`: a_i for i in 0..8, row = g (+8 for a2,a3,a6,a7), col = 2t +
/// (i & 1) (+8 for a4..a7), packed two per register, a_{2r} low.
fn a_frag(p: &Problem, lane: usize, half: impl Fn(f32) -> u16) -> [u32; 4] {
    let (g, t) = (lane >> 2, lane % 4);
    let elem = |i: usize| {
        let row = if matches!(i, 2 | 3 | 6 | 7) { g + 8 } else { g };
        let col = t * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
        half(p.a[row * 16 + col]) as u32
    };
    [0, 1, 2, 3].map(|r| elem(2 * r) | elem(2 * r + 1) << 16)
}

/// The B fragment: b_i for i in 0..4, row = 2t + (i & 1) (+8 for b2,b3), col = g.
fn b_frag(p: &Problem, lane: usize, half: impl Fn(f32) -> u16) -> [u32; 2] {
    let (g, t) = (lane >> 2, lane % 4);
    let elem = |i: usize| {
        let row = t * 2 + (i & 1) + if i >= 2 { 8 } else { 0 };
        half(p.b[row * 8 + g]) as u32
    };
    [0, 1].map(|r| elem(2 * r) | elem(2 * r + 1) << 16)
}

/// Position of c_i / d_i (i in 0..4): row g (+8 for c2,c3), col 2t + (i & 1).
fn cd_index(lane: usize, i: usize) -> usize {
    let (g, t) = (lane >> 2, lane % 4);
    let row = if i >= 2 { g + 8 } else { g };
    row * 8 + t * 2 + (i & 1)
}

fn f16_bits(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

fn bf16_bits(x: f32) -> u16 {
    bf16::from_f32(x).to_bits()
}

/// D = A·B + C in f64 (the inputs are exact in f32), rounded to f32.
fn reference(p: &Problem) -> Vec<f32> {
    let mut d = vec![0f32; 16 * 8];
    for i in 0..16 {
        for j in 0..8 {
            let dot: f64 = (0..16)
                .map(|k| p.a[i * 16 + k] as f64 * p.b[k * 8 + j] as f64)
                .sum();
            d[i * 8 + j] = (dot + p.c[i * 8 + j] as f64) as f32;
        }
    }
    d
}

type MmaLaunch =
    fn(&Device, &Buffer<u32>, &Buffer<u32>, &Buffer<f32>, &mut Buffer<f32>) -> Result<(), String>;

/// Runs one warp's MMA through `launch` and returns D per lane (4 values each).
fn run_mma(p: &Problem, half: fn(f32) -> u16, launch: MmaLaunch) -> Vec<f32> {
    let device = Device::cpu();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for lane in 0..32 {
        a.extend(a_frag(p, lane, half));
        b.extend(b_frag(p, lane, half));
        c.extend((0..4).map(|i| p.c[cd_index(lane, i)]));
    }
    let (a, b, c) = (
        device.upload(&a).unwrap(),
        device.upload(&b).unwrap(),
        device.upload(&c).unwrap(),
    );
    let mut d = device.zeros::<f32>(128).unwrap();
    launch(&device, &a, &b, &c, &mut d).unwrap();
    device.download(&d).unwrap()
}

fn launch_f16(
    dev: &Device,
    a: &Buffer<u32>,
    b: &Buffer<u32>,
    c: &Buffer<f32>,
    d: &mut Buffer<f32>,
) -> Result<(), String> {
    let config = mma_f16_frags::default_config();
    mma_f16_frags::launch(dev, &config, LaunchDims::linear(1, 32), a, b, c, d)
        .map_err(|e| e.to_string())
}

fn launch_bf16(
    dev: &Device,
    a: &Buffer<u32>,
    b: &Buffer<u32>,
    c: &Buffer<f32>,
    d: &mut Buffer<f32>,
) -> Result<(), String> {
    let config = mma_bf16_frags::default_config();
    mma_bf16_frags::launch(dev, &config, LaunchDims::linear(1, 32), a, b, c, d)
        .map_err(|e| e.to_string())
}

/// Small integers: every product and sum is exact, so every accumulation model agrees.
fn integer_problem() -> Problem {
    Problem {
        a: (0..256).map(|i| ((i * 7 + 3) % 9) as f32 - 4.0).collect(),
        b: (0..128).map(|i| ((i * 5 + 1) % 7) as f32 - 3.0).collect(),
        c: (0..128).map(|i| (i % 11) as f32 * 0.5).collect(),
    }
}

fn assert_lanes(d: &[f32], want: &[f32], tolerance: f32) {
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

#[test]
fn mma_f16_matches_the_ptx_fragment_layout_lane_by_lane() {
    let p = integer_problem();
    assert_lanes(&run_mma(&p, f16_bits, launch_f16), &reference(&p), 0.0);
}

#[test]
fn mma_bf16_matches_the_ptx_fragment_layout_lane_by_lane() {
    let p = integer_problem();
    assert_lanes(&run_mma(&p, bf16_bits, launch_bf16), &reference(&p), 0.0);
}

/// A layout error shows as a wrong element: make every element of A and B distinct.
#[test]
fn mma_places_every_element() {
    let p = Problem {
        a: (0..256)
            .map(|i| (i % 16) as f32 + 16.0 * (i / 16) as f32)
            .collect(),
        b: (0..128)
            .map(|i| if i % 9 == 0 { 1.0 } else { 0.0 })
            .collect(),
        c: vec![0.0; 128],
    };
    assert_lanes(&run_mma(&p, f16_bits, launch_f16), &reference(&p), 0.0);
}

/// Random values in [-1, 1): the tolerance covers the hardware's unspecified internal
/// precision (the interpreter's f64 model is exact to one f32 rounding).
#[test]
fn mma_random_data_within_tolerance() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let round = |x: f32| f16::from_f32(x).to_f32();
    let p = Problem {
        a: (0..256).map(|_| round(next())).collect(),
        b: (0..128).map(|_| round(next())).collect(),
        c: (0..128).map(|_| next()).collect(),
    };
    assert_lanes(&run_mma(&p, f16_bits, launch_f16), &reference(&p), 1e-5);
}

fn zero_frags(device: &Device) -> (Buffer<u32>, Buffer<u32>, Buffer<f32>, Buffer<f32>) {
    (
        device.zeros::<u32>(128).unwrap(),
        device.zeros::<u32>(64).unwrap(),
        device.zeros::<f32>(128).unwrap(),
        device.zeros::<f32>(192).unwrap(),
    )
}

#[test]
fn mma_needs_every_lane_of_the_warp() {
    let device = Device::cpu();
    let (a, b, c, mut d) = zero_frags(&device);
    let config = mma_divergent::default_config();
    let err = mma_divergent::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &a,
        &b,
        &c,
        &mut d,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mma_m16n8k16_f16_f32"), "{err}");
    assert!(err.contains("not by lanes [16, 17"), "{err}");

    let config = mma_partial_warp::default_config();
    let err = mma_partial_warp::launch(
        &device,
        &config,
        LaunchDims::linear(1, 48),
        &a,
        &b,
        &c,
        &mut d,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs all 32 lanes"), "{err}");
    assert!(err.contains("warp 1"), "{err}");
}

#[test]
fn pack_and_unpack_follow_the_register_layout() {
    let device = Device::cpu();
    let values: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
    let h: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
    let bh: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
    let (hb, bhb) = (device.upload(&h).unwrap(), device.upload(&bh).unwrap());
    let mut packed = device.zeros::<u32>(64).unwrap();
    let mut round_trip = device.zeros::<f32>(128).unwrap();
    let config = pack_pairs::default_config();
    pack_pairs::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &hb,
        &bhb,
        &mut packed,
        &mut round_trip,
    )
    .unwrap();
    let (packed, round_trip) = (
        device.download(&packed).unwrap(),
        device.download(&round_trip).unwrap(),
    );
    for i in 0..32 {
        let want_h = h[2 * i].to_bits() as u32 | (h[2 * i + 1].to_bits() as u32) << 16;
        let want_b = bh[2 * i].to_bits() as u32 | (bh[2 * i + 1].to_bits() as u32) << 16;
        assert_eq!(packed[2 * i], want_h, "thread {i}");
        assert_eq!(packed[2 * i + 1], want_b, "thread {i}");
        assert_eq!(pack_f16x2(h[2 * i], h[2 * i + 1]), want_h, "host helper");
        let want = [
            values[2 * i],
            values[2 * i + 1],
            values[2 * i],
            values[2 * i + 1],
        ];
        assert_eq!(&round_trip[4 * i..4 * i + 4], &want, "thread {i}");
    }
}

#[test]
fn tensor_core_kernels_compile_with_nvrtc() {
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    }
    let kernels = [
        (
            mma_f16_frags::def(),
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
        ),
        (
            mma_bf16_frags::def(),
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
        ),
        (pack_pairs::def(), "mov.b32"),
    ];
    let config = pack_pairs::default_config();
    for (def, ptx) in kernels {
        let typed = resolve::specialize(def, &config).unwrap();
        let source = codegen::cuda_source(&typed);
        for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
            let c = nvrtc::compile(&source, arch, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}\n{source}", def.name));
            assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX for {arch}");
        }
    }
}

#[test]
fn mma_needs_sm80_and_says_so() {
    let typed =
        resolve::specialize(mma_bf16_frags::def(), &mma_bf16_frags::default_config()).unwrap();
    assert_eq!(
        warpforge::dsl::min_arch(&typed),
        Some((Arch::SM80, "mma_m16n8k16_bf16_f32"))
    );
    let sm75 = Arch::new(7, 5);
    let err = nvrtc::check_arch(&typed, sm75).unwrap_err().to_string();
    assert!(err.contains("`mma_m16n8k16_bf16_f32`"), "{err}");
    assert!(err.contains("needs sm_80 or newer"), "{err}");
    assert!(err.contains("sm_75"), "{err}");
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        nvrtc::check_arch(&typed, arch).unwrap();
    }
    // Packing alone needs nothing new.
    let pack = resolve::specialize(pack_pairs::def(), &pack_pairs::default_config()).unwrap();
    assert_eq!(warpforge::dsl::min_arch(&pack), None);
    nvrtc::check_arch(&pack, sm75).unwrap();
}
