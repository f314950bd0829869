//! cp.async with commit and wait groups.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::kernel;
use warpforge::prelude::*;

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

/// Each thread copies a 16-byte chunk of `src` (4 f32) from `4 * t`, reading only
/// `sizes[t]` bytes of it (the rest of the chunk is zero-filled).
#[kernel(block = (8), tune(UNUSED = [1]))]
fn zfill_copy<const UNUSED: u32>(src: &[f32], sizes: &[u32], out: &mut [f32]) {
    let t = thread_idx_x();
    let mut tile = shared_array::<f32>(32);
    for k in 0..4u32 {
        tile[4 * t + k] = -1.0;
    }
    sync_threads();
    let at = if sizes[t] == 0 { 0 } else { 4 * t };
    cp_async_16_zfill(&mut tile, 4 * t, src, at, sizes[t]);
    cp_async_commit();
    cp_async_wait(0);
    for k in 0..4u32 {
        out[4 * t + k] = tile[4 * t + k];
    }
}

fn zfill(src_len: usize, sizes: &[u32]) -> Result<Vec<f32>, String> {
    let device = Device::cpu();
    let data: Vec<f32> = (0..src_len).map(|i| i as f32 + 1.0).collect();
    let src = device.upload(&data).unwrap();
    let sizes = device.upload(sizes).unwrap();
    let mut out = device.zeros::<f32>(32).unwrap();
    let config = zfill_copy::default_config();
    zfill_copy::launch(
        &device,
        &config,
        LaunchDims::linear(1, 8),
        &src,
        &sizes,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    Ok(device.download(&out).unwrap())
}

#[test]
fn cp_async_zfill_reads_only_the_source_size_and_zeroes_the_rest() {
    // Thread t reads 4 * (t % 5) bytes: 0 (nothing; its index is clamped to 0) to 16.
    let sizes: Vec<u32> = (0..8).map(|t| 4 * (t % 5)).collect();
    let got = zfill(32, &sizes).unwrap();
    for t in 0..8 {
        let read = sizes[t] as usize / 4;
        for k in 0..4 {
            let want = if k < read {
                (4 * t + k) as f32 + 1.0
            } else {
                0.0
            };
            assert_eq!(got[4 * t + k], want, "thread {t} element {k}");
        }
    }
}

#[test]
fn cp_async_zfill_checks_bounds_of_the_bytes_it_reads_only() {
    // Thread 7 reads 8 bytes from element 28 of a 30-element source: in bounds, although
    // the 16-byte chunk passes the end.
    let mut sizes = vec![16u32; 7];
    sizes.push(8);
    let got = zfill(30, &sizes).unwrap();
    assert_eq!(&got[28..], &[29.0, 30.0, 0.0, 0.0]);
    // 12 bytes from element 28 would read element 30: out of bounds.
    sizes[7] = 12;
    let err = zfill(30, &sizes).unwrap_err();
    assert!(
        err.contains("out-of-bounds read of src[30] (length 30)"),
        "{err}"
    );
}

#[test]
fn cp_async_zfill_rejects_a_bad_source_size() {
    for bad in [20u32, 6] {
        let mut sizes = vec![16u32; 8];
        sizes[3] = bad;
        let err = zfill(32, &sizes).unwrap_err();
        assert!(err.contains("cp_async_16_zfill"), "{err}");
        assert!(err.contains(&format!("source size {bad} bytes")), "{err}");
        assert!(err.contains("thread (3,0,0)"), "{err}");
    }
}

#[test]
fn cp_async_zfill_compiles_to_a_source_size_operand() {
    let config = zfill_copy::default_config();
    let typed = resolve::specialize(zfill_copy::def(), &config).unwrap();
    assert_eq!(
        warpforge::dsl::min_arch(&typed),
        Some((Arch::SM80, "cp_async_16_zfill"))
    );
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED the NVRTC part: NVRTC not found");
        return;
    }
    let source = codegen::cuda_source(&typed);
    for arch in [Arch::SM80, Arch::SM90] {
        let c = nvrtc::compile(&source, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{source}"));
        assert!(
            c.ptx.contains("cp.async.cg.shared.global [%r") && c.ptx.contains("16, %r"),
            "no source-size cp.async in the PTX for {arch}:\n{}",
            c.ptx
        );
    }
}

/// As `zfill_copy`, with the copy under an L2 evict-first cache policy.
#[kernel(block = (8), tune(UNUSED = [1]))]
fn zfill_copy_evict_first<const UNUSED: u32>(src: &[f32], sizes: &[u32], out: &mut [f32]) {
    let t = thread_idx_x();
    let mut tile = shared_array::<f32>(32);
    for k in 0..4u32 {
        tile[4 * t + k] = -1.0;
    }
    sync_threads();
    let at = if sizes[t] == 0 { 0 } else { 4 * t };
    cp_async_16_zfill_evict_first(&mut tile, 4 * t, src, at, sizes[t]);
    cp_async_commit();
    cp_async_wait(0);
    for k in 0..4u32 {
        out[4 * t + k] = tile[4 * t + k];
    }
}

/// The evict-first copy is the zfill copy plus a cache hint: the same data lands (the
/// interpreter ignores the hint, as the hardware's result does), and the PTX carries
/// `createpolicy.fractional.L2::evict_first` and `.L2::cache_hint` with the source size.
#[test]
fn cp_async_evict_first_copies_as_zfill_with_an_l2_policy() {
    let device = Device::cpu();
    let data: Vec<f32> = (0..32).map(|i| i as f32 + 1.0).collect();
    let sizes: Vec<u32> = (0..8).map(|t| 4 * (t % 5)).collect();
    let (src, sz) = (
        device.upload(&data).unwrap(),
        device.upload(&sizes).unwrap(),
    );
    let mut out = device.zeros::<f32>(32).unwrap();
    let config = zfill_copy_evict_first::default_config();
    let dims = LaunchDims::linear(1, 8);
    zfill_copy_evict_first::launch(&device, &config, dims, &src, &sz, &mut out).unwrap();
    assert_eq!(device.download(&out).unwrap(), zfill(32, &sizes).unwrap());
    let typed = resolve::specialize(zfill_copy_evict_first::def(), &config).unwrap();
    assert_eq!(
        warpforge::dsl::min_arch(&typed),
        Some((Arch::SM80, "cp_async_16_zfill_evict_first"))
    );
    let source = codegen::cuda_source(&typed);
    assert!(
        source.contains("createpolicy.fractional.L2::evict_first.b64")
            && source.contains("cp.async.cg.shared.global.L2::cache_hint"),
        "{source}"
    );
    if nvrtc::version().is_err() {
        eprintln!("SKIPPED the NVRTC part: NVRTC not found");
        return;
    }
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        let c = nvrtc::compile(&source, arch, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}\n{source}"));
        assert!(
            c.ptx
                .contains("createpolicy.fractional.L2::evict_first.b64")
                && c.ptx.contains("cp.async.cg.shared.global.L2::cache_hint"),
            "no evict-first cp.async in the PTX for {arch}:\n{}",
            c.ptx
        );
    }
}
