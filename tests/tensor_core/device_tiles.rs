//! Shared tiles passed to device functions: a `cp_async_*` stage load and an `ldmatrix_*`
//! fragment load factored into `#[device]` functions taking the tile as a slice parameter.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::prelude::*;
use warpforge::{device, kernel};

/// Thread `t` copies the 16-byte chunk `t` (8 f16) of `src[..len]` into `tile`.
#[device]
fn load_stage(tile: &mut [f16], src: &[f16], len: u32, t: u32) {
    let at = 8 * t;
    if at < len {
        cp_async_16_zfill(tile, at, src, at, 16);
    }
}

/// Both operands of one MMA as one cp.async group: passes its shared parameters on.
#[device]
fn load_operands(ta: &mut [f16], tb: &mut [f16], a: &[f16], b: &[f16], t: u32) {
    load_stage(ta, a, 256, t);
    load_stage(tb, b, 128, t);
    cp_async_commit();
}

/// The A fragment of a row-major 16×16 tile: lanes 8m..8m+8 address the rows of matrix m
/// (rows +8 for m odd, columns +8 for m ≥ 2).
#[device]
fn load_a_frag(tile: &[f16], lane: u32) -> Vec4<u32> {
    let m = lane / 8;
    let row = lane % 8 + 8 * (m % 2);
    ldmatrix_x4(tile, row * 16 + 8 * (m / 2))
}

/// The B fragment of an N-major 8×16 tile (`bt[n][k]`): matrix 0 holds k 0..8, matrix 1
/// k 8..16.
#[device]
fn load_b_frag(tile: &[f16], lane: u32) -> Vec2<u32> {
    let m = (lane / 8) % 2;
    ldmatrix_x2(tile, (lane % 8) * 16 + 8 * m)
}

/// D (16×8, row-major) = A (16×16 row-major) × B (given N-major as `bt`, 8×16). MODE 0:
/// correct; MODE 1: no barrier between the copies landing and the fragment loads (a race).
#[kernel(block = (32), tune(MODE = [0, 1]))]
fn device_tile_mma<const MODE: u32>(a: &[f16], bt: &[f16], d: &mut [f32]) {
    let lane = lane_id();
    let mut ta = shared_array::<f16>(256);
    let mut tb = shared_array::<f16>(128);
    load_operands(&mut ta, &mut tb, a, bt, lane);
    cp_async_wait(0);
    if MODE == 0 {
        sync_threads();
    }
    let zero = local_array::<Vec4<f32>>(1);
    let acc = mma_m16n8k16_f16_f32(load_a_frag(&ta, lane), load_b_frag(&tb, lane), zero[0]);
    let g = lane / 4;
    let t = lane % 4;
    d[g * 8 + 2 * t] = acc.x;
    d[g * 8 + 2 * t + 1] = acc.y;
    d[(g + 8) * 8 + 2 * t] = acc.z;
    d[(g + 8) * 8 + 2 * t + 1] = acc.w;
}

/// The stage load aimed at a global buffer instead of a shared tile.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn stage_into_global<const UNUSED: u32>(a: &[f16], scratch: &mut [f16]) {
    load_stage(scratch, a, 256, lane_id());
    cp_async_commit();
    cp_async_wait(0);
}

/// The fragment load from a local array.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn frag_from_local<const UNUSED: u32>(out: &mut [u32]) {
    let regs = local_array::<f16>(256);
    out[lane_id()] = load_a_frag(&regs, lane_id()).x;
}

/// Small integers (exact in f16, and their dot products in f32).
fn inputs() -> (Vec<f32>, Vec<f32>) {
    let a = (0..256).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let bt = (0..128).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
    (a, bt)
}

/// `d[m][n] = Σ_k a[m][k] · bt[n][k]`.
fn host_mma(a: &[f32], bt: &[f32]) -> Vec<f32> {
    let mut d = vec![0.0; 128];
    for m in 0..16 {
        for n in 0..8 {
            d[m * 8 + n] = (0..16).map(|k| a[m * 16 + k] * bt[n * 16 + k]).sum();
        }
    }
    d
}

fn run_mma(mode: i64) -> Result<Vec<f32>, String> {
    let device = Device::cpu();
    let (a, bt) = inputs();
    let halves = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let a_buf = device.upload(&halves(&a)).unwrap();
    let b_buf = device.upload(&halves(&bt)).unwrap();
    let mut d = device.zeros::<f32>(128).unwrap();
    let config = Config::new().with("MODE", mode);
    device_tile_mma::launch(
        &device,
        &config,
        LaunchDims::linear(1, 32),
        &a_buf,
        &b_buf,
        &mut d,
    )
    .map_err(|e| e.to_string())?;
    Ok(device.download(&d).unwrap())
}

#[test]
fn stage_and_fragment_loads_in_device_functions_match_the_host_model() {
    let (a, bt) = inputs();
    assert_eq!(run_mma(0).unwrap(), host_mma(&a, &bt));
}

#[test]
fn a_race_through_a_device_function_names_the_shared_array() {
    let err = run_mma(1).unwrap_err();
    assert!(err.contains("data race on shared array `ta`"), "{err}");
}

#[test]
fn a_tile_parameter_bound_to_global_or_local_memory_is_a_resolve_error() {
    let config = Config::new().with("UNUSED", 1);
    let err = resolve::specialize(stage_into_global::def(), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cp_async_16_zfill"), "{err}");
    assert!(
        err.contains("parameter `tile` of `load_stage` is bound to a global buffer"),
        "{err}"
    );
    assert!(err.contains("it must be a shared array"), "{err}");
    let err = resolve::specialize(frag_from_local::def(), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ldmatrix_x4"), "{err}");
    assert!(
        err.contains("parameter `tile` of `load_a_frag` is bound to a local array"),
        "{err}"
    );
    assert!(err.contains("it must be a shared array"), "{err}");
}

#[test]
fn device_tile_kernel_needs_sm80_keeps_alignment_and_compiles() {
    let config = Config::new().with("MODE", 0);
    let typed = resolve::specialize(device_tile_mma::def(), &config).unwrap();
    let (needs, intrinsic) = warpforge::dsl::min_arch(&typed).unwrap();
    assert_eq!(needs, Arch::SM80, "{intrinsic}");
    let source = codegen::cuda_source(&typed);
    // The tiles are used by cp.async and ldmatrix only inside device functions.
    for tile in ["ta[256]", "tb[128]"] {
        assert!(
            source.contains(&format!("__shared__ __align__(16) __half {tile}")),
            "{tile}:\n{source}"
        );
    }
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED the NVRTC part: NVRTC not found");
        return;
    }
    let c = nvrtc::compile(&source, Arch::SM80, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{source}"));
    for ptx in [
        "cp.async.cg.shared.global",
        "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
        "ldmatrix.sync.aligned.m8n8.x2.shared.b16",
        "mma.sync.aligned.m16n8k16",
    ] {
        assert!(c.ptx.contains(ptx), "no `{ptx}` in the PTX:\n{}", c.ptx);
    }
}
