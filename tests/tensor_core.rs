//! Tensor-core intrinsics end to end: `#[kernel]` → resolver → interpreter, compared lane by
//! lane with a host model of the fragment layouts written from the PTX ISA, and compiled by
//! NVRTC for sm_80/89/90.

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

// ---- ldmatrix (PTX ISA 9.7.14.5.15)

/// Every form of ldmatrix from one shared tile; 11 registers per lane.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn ldmatrix_all<const UNUSED: u32>(src: &[f16], offsets: &[u32], out: &mut [u32]) {
    let lane = lane_id();
    let mut tile = shared_array::<f16>(512);
    for k in (lane..512).step_by(32) {
        tile[k] = src[k];
    }
    sync_threads();
    let off = offsets[lane];
    let r1 = ldmatrix_x1(&tile, off);
    let r2 = ldmatrix_x2(&tile, off);
    let r4 = ldmatrix_x4(&tile, off);
    let t1 = ldmatrix_x1_trans(&tile, off);
    let t4 = ldmatrix_x4_trans(&tile, off);
    let o = lane * 12;
    out[o] = r1;
    out[o + 1] = r2.x;
    out[o + 2] = r2.y;
    out[o + 3] = r4.x;
    out[o + 4] = r4.y;
    out[o + 5] = r4.z;
    out[o + 6] = r4.w;
    out[o + 7] = t1;
    out[o + 8] = t4.x;
    out[o + 9] = t4.y;
    out[o + 10] = t4.z;
    out[o + 11] = t4.w;
}

/// Reads the tile before the barrier that publishes it: a race.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn ldmatrix_unsynced<const UNUSED: u32>(src: &[f16], offsets: &[u32], out: &mut [u32]) {
    let lane = lane_id();
    let mut tile = shared_array::<f16>(512);
    for k in (lane..512).step_by(32) {
        tile[k] = src[k];
    }
    out[lane] = ldmatrix_x4(&tile, offsets[lane]).x;
}

/// The register lane `lane` receives from matrix `m`, per the ISA, from the row offsets.
fn ldmatrix_model(src: &[u16], offsets: &[u32], lane: usize, m: usize, trans: bool) -> u32 {
    let row = |r: usize| offsets[8 * m + r] as usize;
    let (g, t) = (lane / 4, lane % 4);
    let (lo, hi) = if trans {
        (src[row(2 * t) + g], src[row(2 * t + 1) + g])
    } else {
        (src[row(g) + 2 * t], src[row(g) + 2 * t + 1])
    };
    lo as u32 | (hi as u32) << 16
}

fn ldmatrix_run(offsets: &[u32]) -> Result<(Vec<u16>, Vec<u32>), String> {
    let device = Device::cpu();
    let src: Vec<f16> = (0..512).map(|k| f16::from_f32(k as f32)).collect();
    let bits = src.iter().map(|h| h.to_bits()).collect();
    let (s, o) = (
        device.upload(&src).unwrap(),
        device.upload(offsets).unwrap(),
    );
    let mut out = device.zeros::<u32>(32 * 12).unwrap();
    let config = ldmatrix_all::default_config();
    ldmatrix_all::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &s,
        &o,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    Ok((bits, device.download(&out).unwrap()))
}

#[test]
fn ldmatrix_matches_the_ptx_layout_lane_by_lane() {
    // Rows scattered over the tile in a permuted order.
    let offsets: Vec<u32> = (0..32).map(|l| ((l * 7 + 3) % 64) * 8).collect();
    let (src, out) = ldmatrix_run(&offsets).unwrap();
    for lane in 0..32 {
        let got = &out[lane * 12..lane * 12 + 12];
        let model = |m, trans| ldmatrix_model(&src, &offsets, lane, m, trans);
        let want = [
            model(0, false),
            model(0, false),
            model(1, false),
            model(0, false),
            model(1, false),
            model(2, false),
            model(3, false),
            model(0, true),
            model(0, true),
            model(1, true),
            model(2, true),
            model(3, true),
        ];
        assert_eq!(got, &want, "lane {lane}");
    }
}

#[test]
fn ldmatrix_checks_alignment_and_bounds() {
    let mut offsets: Vec<u32> = (0..32).map(|l| l * 8).collect();
    offsets[3] = 20;
    let err = ldmatrix_run(&offsets).unwrap_err();
    assert!(err.contains("ldmatrix_x1"), "{err}");
    assert!(err.contains("row offset 20"), "{err}");
    assert!(err.contains("not a multiple of 8"), "{err}");
    // x1 ignores lanes 8..32; x2 reads lane 9's row, here past the end.
    offsets[3] = 24;
    offsets[9] = 512;
    let err = ldmatrix_run(&offsets).unwrap_err();
    assert!(err.contains("tile"), "{err}");
    assert!(err.contains("512"), "{err}");
}

#[test]
fn ldmatrix_before_the_barrier_is_a_race() {
    let device = Device::cpu();
    let src = device.upload(&vec![f16::ONE; 512]).unwrap();
    let offsets: Vec<u32> = (0..32).map(|l| (31 - l) * 8).collect();
    let o = device.upload(&offsets).unwrap();
    let mut out = device.zeros::<u32>(32).unwrap();
    let config = ldmatrix_unsynced::default_config();
    let err = ldmatrix_unsynced::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &src,
        &o,
        &mut out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("data race on shared array `tile`"), "{err}");
}

#[test]
fn ldmatrix_needs_sm80_and_compiles_with_nvrtc() {
    let typed = resolve::specialize(ldmatrix_all::def(), &ldmatrix_all::default_config()).unwrap();
    let (needs, _) = warpforge::dsl::min_arch(&typed).unwrap();
    assert_eq!(needs, Arch::SM80);
    let source = codegen::cuda_source(&typed);
    assert!(
        source.contains("__shared__ __align__(16) __half"),
        "{source}"
    );
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED the NVRTC part: NVRTC not found");
        return;
    }
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        let c = nvrtc::compile(&source, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{source}"));
        for form in ["x1", "x2", "x4", "x1.trans", "x4.trans"] {
            let ptx = format!("ldmatrix.sync.aligned.m8n8.{form}.shared.b16");
            assert!(c.ptx.contains(&ptx), "no `{ptx}` in the PTX for {arch}");
        }
    }
}

// ---- cp.async

/// Copies `src[0..256]` into a shared tile in two groups (16-byte copies, then 8- and
/// 4-byte ones) and writes back what each thread sees. MODE 0: correct; MODE 1: reads the
/// second group before the wait that completes it; MODE 2: reads another thread's copy
/// without a barrier after the wait.
#[kernel(block = (32), tune(MODE = [0, 1, 2]))]
fn staged_copy<const MODE: u32>(src: &[f32], out: &mut [f32]) {
    let t = thread_idx_x();
    let mut tile = shared_array::<f32>(256);
    for k in (t..256).step_by(32) {
        tile[k] = -1.0;
    }
    sync_threads();
    cp_async_16(&mut tile, 4 * t, src, 4 * t);
    cp_async_commit();
    cp_async_8(&mut tile, 128 + 2 * t, src, 128 + 2 * t);
    cp_async_4(&mut tile, 192 + 2 * t, src, 192 + 2 * t);
    cp_async_4(&mut tile, 193 + 2 * t, src, 193 + 2 * t);
    cp_async_commit();
    cp_async_wait(1);
    for k in 0..4u32 {
        out[4 * t + k] = tile[4 * t + k];
    }
    if MODE != 1 {
        cp_async_wait(0);
    }
    out[128 + 2 * t] = tile[128 + 2 * t];
    out[129 + 2 * t] = tile[129 + 2 * t];
    out[192 + 2 * t] = tile[192 + 2 * t];
    out[193 + 2 * t] = tile[193 + 2 * t];
    if MODE == 2 {
        out[t] = tile[(4 * t + 4) % 128];
    }
    cp_async_wait(0);
}

/// Thread 0 copies 16 bytes from `src[at..]`; everyone reads the tile after a barrier.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn copy_at<const UNUSED: u32>(src: &[f32], out: &mut [f32], at: u32) {
    let t = thread_idx_x();
    let mut tile = shared_array::<f32>(32);
    tile[t] = 0.0;
    sync_threads();
    if t == 0 {
        cp_async_16(&mut tile, 0, src, at);
        cp_async_commit();
        cp_async_wait(0);
    }
    sync_threads();
    out[t] = tile[t];
}

fn staged(mode: i64) -> Result<Vec<f32>, String> {
    let device = Device::cpu();
    let data: Vec<f32> = (0..256).map(|i| i as f32 + 0.5).collect();
    let src = device.upload(&data).unwrap();
    let mut out = device.zeros::<f32>(256).unwrap();
    let config = Config::new().with("MODE", mode);
    staged_copy::launch(&device, &config, LaunchDims::linear(1, 32), &src, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(device.download(&out).unwrap())
}

#[test]
fn cp_async_data_lands_at_the_matching_wait() {
    let want: Vec<f32> = (0..256).map(|i| i as f32 + 0.5).collect();
    assert_eq!(staged(0).unwrap(), want);
    // Read too early: the first group (waited for) is there, the second is not yet.
    let early = staged(1).unwrap();
    assert_eq!(&early[..128], &want[..128]);
    assert!(
        early[128..].iter().all(|&x| x == -1.0),
        "{:?}",
        &early[128..]
    );
}

#[test]
fn cp_async_data_needs_a_barrier_for_other_threads() {
    let err = staged(2).unwrap_err();
    assert!(err.contains("data race on shared array `tile`"), "{err}");
}

#[test]
fn cp_async_checks_alignment_and_bounds_at_issue() {
    let device = Device::cpu();
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let src = device.upload(&data).unwrap();
    let mut out = device.zeros::<f32>(32).unwrap();
    let config = copy_at::default_config();
    let mut run = |at: u32| {
        copy_at::launch(
            &device,
            &config,
            LaunchDims::linear(1, 32),
            &src,
            &mut out,
            at,
        )
        .map(|()| device.download(&out).unwrap())
        .map_err(|e| e.to_string())
    };
    let got = run(8).unwrap();
    assert_eq!(&got[..5], &[8.0, 9.0, 10.0, 11.0, 0.0]);
    let err = run(2).unwrap_err();
    assert!(err.contains("cp_async_16"), "{err}");
    assert!(err.contains("`src`[2] is not 16-byte aligned"), "{err}");
    let err = run(62).unwrap_err();
    assert!(err.contains("not 16-byte aligned"), "{err}");
    let err = run(64).unwrap_err();
    assert!(
        err.contains("out-of-bounds read of src[67] (length 64)"),
        "{err}"
    );
}

#[test]
fn cp_async_needs_sm80_and_compiles_with_nvrtc() {
    let config = Config::new().with("MODE", 0);
    let typed = resolve::specialize(staged_copy::def(), &config).unwrap();
    let (needs, intrinsic) = warpforge::dsl::min_arch(&typed).unwrap();
    assert_eq!(needs, Arch::SM80, "{intrinsic}");
    let err = nvrtc::check_arch(&typed, Arch::new(7, 5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cp_async"), "{err}");
    let source = codegen::cuda_source(&typed);
    assert!(
        source.contains("__shared__ __align__(16) float"),
        "{source}"
    );
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED the NVRTC part: NVRTC not found");
        return;
    }
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        let c = nvrtc::compile(&source, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{source}"));
        for ptx in [
            "cp.async.cg.shared.global [%r",
            "16;",
            "cp.async.ca.shared.global",
            "cp.async.commit_group",
            "cp.async.wait_group 1",
            "cp.async.wait_group 0",
        ] {
            assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX for {arch}");
        }
    }
}

// ---- lop3, prmt, ex2.approx

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
    let functions: [(i64, fn(u32, u32, u32) -> u32); 6] = [
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
