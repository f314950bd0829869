//! ldmatrix.m8n8 x1/x2/x4, plain and transposed.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

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
    assert!(err.contains("not 16-byte aligned"), "{err}");
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
