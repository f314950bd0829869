//! Shared arrays over the 48 KiB static limit: carved from dynamic shared memory in the
//! generated C (and compiled by NVRTC to `.extern .shared`), run by the interpreter like any
//! other arrays (results, races and bounds per array), and held to the opt-in limit per block
//! at launch.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::prelude::*;
use warpforge::{device, kernel};

const FILE: &str = "tests/large_shared.rs";

/// `file:line` of the line of this file ending in `// @{name}`.
fn at(name: &str) -> String {
    let marker = format!("// @{name}");
    let lines: Vec<usize> = include_str!("large_shared.rs")
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(&marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "marker {marker} must be on exactly one line"
    );
    format!("{FILE}:{}", lines[0])
}

/// Thread 0's `v`, for every thread of the block, through a shared array of its own.
#[device]
fn broadcast(v: f32) -> f32 {
    let mut slot = shared_array::<f32>(1);
    if thread_idx_x() == 0 {
        slot[0] = v;
    }
    sync_threads();
    slot[0]
}

/// `out[t]` = the sum of `x[k * 256 + 255 - t]` over the stages, plus `x[0]`: each thread
/// stages its own column and reads another's, so the barrier (`SYNC = 1`) is needed.
#[kernel(block = (256), tune(STAGES = [2, 4], SYNC = [1, 0]))]
fn reverse_stages<const STAGES: u32, const SYNC: u32>(x: &[f32], out: &mut [f32]) {
    // STAGES × 32 KiB: 64 KiB at STAGES = 2.
    let mut stage = shared_array::<f32>(STAGES * 8192);
    let t = thread_idx_x();
    for k in 0..STAGES * 32 {
        stage[k * 256 + t] = x[k * 256 + t]; // @stage-write
    }
    if SYNC == 1 {
        sync_threads();
    }
    let mut total = 0.0f32;
    for k in 0..STAGES * 32 {
        total += stage[k * 256 + 255 - t]; // @stage-read
    }
    out[t] = total + broadcast(x[0]);
}

fn config(stages: i64, sync: i64) -> Config {
    Config::new().with("STAGES", stages).with("SYNC", sync)
}

/// Runs `reverse_stages` over one block on the cpu backend.
fn run_reverse(stages: i64, sync: i64) -> Result<(Vec<f32>, Vec<f32>), String> {
    let device = Device::cpu();
    let data: Vec<f32> = (0..stages as usize * 8192)
        .map(|i| (i % 7) as f32)
        .collect();
    let x = device.upload(&data).unwrap();
    let mut out = device.zeros::<f32>(256).unwrap();
    let dims = LaunchDims::linear(1, 256);
    reverse_stages::launch(&device, &config(stages, sync), dims, &x, &mut out)
        .map_err(|e| e.to_string())?;
    Ok((data, device.download(&out).unwrap()))
}

#[test]
fn a_64_kib_kernel_runs_on_the_interpreter() {
    let (x, out) = run_reverse(2, 1).unwrap();
    for (t, &got) in out.iter().enumerate() {
        let want: f32 = (0..64).map(|k| x[k * 256 + 255 - t]).sum::<f32>() + x[0];
        assert_eq!(got, want, "out[{t}]");
    }
}

#[test]
fn races_on_a_carved_array_are_reported_with_its_name() {
    let err = run_reverse(2, 0).unwrap_err();
    assert!(
        err.starts_with("kernel reverse_stages: data race on shared array `stage`["),
        "{err}"
    );
    assert!(err.contains(&at("stage-write")), "{err}");
    assert!(err.contains(&at("stage-read")), "{err}");
}

#[test]
fn over_99_kib_is_refused_on_the_cpu_backend_naming_bytes_and_limit() {
    // 4 × 32 KiB of `stage` and 4 bytes of `broadcast::slot`.
    let err = run_reverse(4, 1).unwrap_err();
    assert!(
        err.contains(
            "kernel `reverse_stages` (config STAGES=4,SYNC=1) uses 131076 bytes of shared \
             memory; the limit is 101376 bytes per block on every GPU"
        ),
        "{err}"
    );
    assert!(err.contains("stage: [f32; 32768] = 131072 B"), "{err}");
    assert!(err.contains("broadcast::slot: [f32; 1] = 4 B"), "{err}");
}

/// `tile` comes first, so that its element 4096 would be `pad[0]` in the carved memory: the
/// interpreter still checks each array against its own length.
#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn carved_past_the_end<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(4096);
    let mut pad = shared_array::<f32>(12288);
    let t = thread_idx_x();
    tile[4032 + t + 1 - FIXED] = t as f32;
    pad[t] = 1.0;
    sync_threads();
    out[t] = tile[4032 + t] + pad[t];
}

#[test]
fn out_of_bounds_on_a_carved_array_is_reported_with_its_name() {
    let device = Device::cpu();
    let mut out = device.zeros::<f32>(64).unwrap();
    let dims = LaunchDims::linear(1, 64);
    let bad = Config::new().with("FIXED", 0);
    let err = carved_past_the_end::launch(&device, &bad, dims, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel carved_past_the_end: out-of-bounds write of tile[4096] (length 4096) by \
         thread (63,0,0) of block (0,0,0) at tests/large_shared.rs:121"
    );
    let fixed = Config::new().with("FIXED", 1);
    carved_past_the_end::launch(&device, &fixed, dims, &mut out).unwrap();
    let want: Vec<f32> = (0..64).map(|t| t as f32 + 1.0).collect();
    assert_eq!(device.download(&out).unwrap(), want);
}

#[test]
fn the_generated_c_carves_and_nvrtc_emits_extern_shared() {
    for (stages, bytes) in [(2, 65540u32), (4, 131076)] {
        let typed = resolve::specialize(reverse_stages::def(), &config(stages, 1)).unwrap();
        assert_eq!(codegen::dynamic_shared_bytes(&typed), bytes);
        let src = codegen::cuda_source(&typed);
        assert!(
            src.contains("extern __shared__ __align__(16) unsigned char wf_smem[];"),
            "{src}"
        );
        assert!(
            src.contains("float* stage = reinterpret_cast<float*>(wf_smem + 0);"),
            "{src}"
        );
        let slot = format!(
            "float* slot = reinterpret_cast<float*>(wf_smem + {});",
            bytes - 4
        );
        assert!(src.contains(&slot), "{src}");
        if let Err(e) = nvrtc::version() {
            if std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_some() {
                panic!("NVRTC is required here (WARPFORGE_REQUIRE_NVRTC is set): {e}");
            }
            eprintln!("SKIPPED the NVRTC part: NVRTC not found: {e}");
            continue;
        }
        for arch in [Arch::SM80, Arch::SM90] {
            let c = nvrtc::compile_cached(&src, arch, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{arch}: {e}\n{src}"));
            assert!(
                c.ptx
                    .lines()
                    .any(|l| l.contains(".extern .shared") && l.contains("wf_smem")),
                "{arch}: no `.extern .shared` in\n{}",
                c.ptx
            );
            // ptxas counts static shared memory only: nothing is left static.
            assert_eq!(c.resources.shared_bytes, 0, "{arch}: {}", c.log);
        }
    }
}
