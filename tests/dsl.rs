//! The DSL end to end: `#[kernel]` → resolver → interpreter (and NVRTC where it matters),
//! through the same `launch` call a GPU would take.

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve};
use warpforge::prelude::*;
use warpforge::{device, kernel};

#[kernel(block = (64), tune(UNUSED = [1]))]
fn scale4<const UNUSED: u32>(x: &[Vec4<f32>], y: &mut [Vec4<f32>], alpha: f32) {
    let i = block_idx_x() * 64 + thread_idx_x();
    if i < x.len() {
        let v = x[i];
        y[i] = Vec4::new(v.x * alpha, v.y * alpha, v.z * alpha, v.w * alpha);
    }
}

#[test]
fn vector_slices_take_scalar_buffers_and_load_128_bits() {
    let device = Device::cpu();
    let data: Vec<f32> = (0..400).map(|i| i as f32).collect();
    let x = device.upload(&data).unwrap();
    let mut y = device.zeros::<f32>(400).unwrap();
    let config = scale4::default_config();
    scale4::launch(&device, &config, LaunchDims::linear(2, 64), &x, &mut y, 0.5).unwrap();
    let out = device.download(&y).unwrap();
    assert!(out.iter().zip(&data).all(|(o, d)| *o == d * 0.5));

    // A length that is not a multiple of the lanes is refused, naming the parameter.
    let odd = device.upload(&data[..7]).unwrap();
    let err = scale4::launch(
        &device,
        &config,
        LaunchDims::linear(1, 64),
        &odd,
        &mut y,
        1.0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`x`"), "{err}");

    if nvrtc::version().is_ok() {
        let typed = resolve::specialize(scale4::def(), &config).unwrap();
        let c = nvrtc::compile(
            &codegen::cuda_source(&typed),
            Arch::SM90,
            &CompileOptions::default(),
        )
        .unwrap();
        assert!(
            c.ptx.contains(".v4.f32"),
            "no 128-bit access in:\n{}",
            c.ptx
        );
    } else {
        eprintln!("SKIPPED the PTX part: NVRTC not found");
    }
}

/// `i` clamped to `LIMIT - 1`, with an early return.
#[device]
fn clamp_to<const LIMIT: u32>(i: u32) -> u32 {
    if i >= LIMIT {
        return LIMIT - 1;
    }
    i
}

#[kernel(block = (32), tune(LIMIT = [5, 9]))]
fn control_flow<const LIMIT: u32>(out: &mut [i32]) {
    let t = thread_idx_x();
    // An `if` used as a value, with statements in its branches.
    let parity = if t % 2 == 0 {
        let h = t / 2;
        h as i32
    } else {
        -1
    };
    // `loop` with `break`, and an inclusive range with `continue`.
    let mut n = 0i32;
    loop {
        n += 1;
        if n >= 3 {
            break;
        }
    }
    let mut odd_sum = 0u32;
    for k in 1..=t {
        if k % 2 == 0 {
            continue;
        }
        odd_sum += k;
    }
    out[t] = parity * 1000 + n * 100 + (odd_sum as i32) + (clamp_to::<LIMIT>(t) as i32) * 100_000;
}

#[test]
fn control_flow_matches_rust() {
    let device = Device::cpu();
    for limit in [5u32, 9] {
        let config = Config::new().with("LIMIT", limit as i64);
        let mut out = device.zeros::<i32>(32).unwrap();
        control_flow::launch(&device, &config, LaunchDims::linear(1, 32), &mut out).unwrap();
        let got = device.download(&out).unwrap();
        for (t, g) in got.iter().enumerate() {
            let t = t as u32;
            let parity = if t.is_multiple_of(2) {
                (t / 2) as i32
            } else {
                -1
            };
            let odd_sum: u32 = (1..=t).filter(|k| k % 2 == 1).sum();
            let want = parity * 1000 + 300 + odd_sum as i32 + (t.min(limit - 1) as i32) * 100_000;
            assert_eq!(*g, want, "thread {t}, LIMIT={limit}");
        }
    }
}

#[kernel(block = (64), tune(UNUSED = [1]))]
fn reads_past_the_end<const UNUSED: u32>(x: &[f32], y: &mut [f32]) {
    let i = thread_idx_x();
    y[i] = x[i + 1];
}

#[test]
fn an_out_of_bounds_read_names_kernel_buffer_index_thread_and_block() {
    let device = Device::cpu();
    let x = device.upload(&[1.0f32; 64]).unwrap();
    let mut y = device.zeros::<f32>(64).unwrap();
    let config = reads_past_the_end::default_config();
    let err = reads_past_the_end::launch(&device, &config, LaunchDims::linear(1, 64), &x, &mut y)
        .unwrap_err();
    // The line of the faulting read, found in this file (edits above it move it).
    let line = include_str!("dsl.rs")
        .lines()
        .position(|l| l.trim() == "y[i] = x[i + 1];")
        .expect("the kernel's read")
        + 1;
    assert_eq!(
        err.to_string(),
        format!(
            "kernel reads_past_the_end: out-of-bounds read of x[64] (length 64) by thread \
             (63,0,0) of block (0,0,0) at tests/dsl.rs:{line}"
        )
    );
}

#[kernel(block = (64), tune(UNUSED = [1]))]
fn diverging_barrier<const UNUSED: u32>(y: &mut [f32]) {
    if thread_idx_x() < 16 {
        sync_threads();
    }
    y[thread_idx_x()] = 1.0;
}

#[test]
fn a_barrier_in_divergent_code_is_an_error_not_a_hang() {
    let device = Device::cpu();
    let mut y = device.zeros::<f32>(64).unwrap();
    let config = diverging_barrier::default_config();
    let err =
        diverging_barrier::launch(&device, &config, LaunchDims::linear(1, 64), &mut y).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("kernel diverging_barrier: sync_threads() in block (0,0,0)"),
        "{msg}"
    );
    assert!(
        msg.contains("reached by threads [(0,0,0)") && msg.contains("but not by threads [(16,0,0)"),
        "{msg}"
    );
}

#[kernel(block = (32), tune(UNUSED = [1]))]
fn uses_an_unsupported_method<const UNUSED: u32>(y: &mut [f32]) {
    let t = thread_idx_x() as f32;
    y[0] = t.powf(2.0);
}

#[test]
fn a_construct_rustc_accepts_but_the_dsl_does_not_points_at_the_users_line() {
    let config = uses_an_unsupported_method::default_config();
    let err = resolve::specialize(uses_an_unsupported_method::def(), &config).unwrap_err();
    assert_eq!(err.span.line, line!() - 7, "{err}");
    assert!(err.to_string().contains("tests/dsl.rs"), "{err}");
    assert!(err.message.contains("`.powf()` is not supported"), "{err}");
}

#[test]
fn a_config_outside_the_space_is_refused_at_launch() {
    let device = Device::cpu();
    let mut out = device.zeros::<i32>(32).unwrap();
    let config = Config::new().with("LIMIT", 6);
    let err =
        control_flow::launch(&device, &config, LaunchDims::linear(1, 32), &mut out).unwrap_err();
    assert!(
        err.to_string()
            .contains("LIMIT=6 is outside the declared space [5, 9]"),
        "{err}"
    );
}

// ---- 2-D shared tiles --------------------------------------------------------------------

/// A TILE×TILE transpose through a padded 2-D shared tile (`tile[r][c]`); `MISS` = 1 moves
/// the read one column past the tile's end, for the bounds report.
#[kernel(block = (TILE, TILE), tune(TILE = [8, 16], MISS = [0, 1]))]
fn transpose_tile2d<const TILE: u32, const MISS: u32>(x: &[f32], y: &mut [f32], n: u32) {
    let mut tile = shared_array2d::<f32>(TILE, TILE + 1);
    let tx = thread_idx_x();
    let ty = thread_idx_y();
    let bx = block_idx_x() * TILE;
    let by = block_idx_y() * TILE;
    tile[ty][tx] = x[(by + ty) * n + bx + tx];
    sync_threads();
    y[(bx + ty) * n + by + tx] = tile[tx + MISS * (TILE - 1)][ty + MISS * 2]; // @tile2d-read
}

/// The same transpose written with the flat index by hand.
#[kernel(block = (TILE, TILE), tune(TILE = [8, 16], MISS = [0, 1]))]
fn transpose_flat<const TILE: u32, const MISS: u32>(x: &[f32], y: &mut [f32], n: u32) {
    let mut tile = shared_array::<f32>((TILE) * (TILE + 1));
    let tx = thread_idx_x();
    let ty = thread_idx_y();
    let bx = block_idx_x() * TILE;
    let by = block_idx_y() * TILE;
    tile[(ty) * (TILE + 1) + (tx)] = x[(by + ty) * n + bx + tx];
    sync_threads();
    y[(bx + ty) * n + by + tx] = tile[(tx + MISS * (TILE - 1)) * (TILE + 1) + (ty + MISS * 2)];
}

#[test]
fn a_2d_shared_tile_is_its_flat_index_in_the_interpreter_and_the_cuda_c() {
    let n = 32u32;
    let x: Vec<f32> = (0..n * n).map(|v| v as f32).collect();
    let expected: Vec<f32> = (0..n * n).map(|i| ((i % n) * n + i / n) as f32).collect();
    let device = Device::cpu();
    let config = Config::new().with("TILE", 16).with("MISS", 0);
    let dims = LaunchDims::grid_2d((n / 16, n / 16), (16, 16));
    let input = device.upload(&x).unwrap();
    let mut out = device.zeros::<f32>((n * n) as usize).unwrap();
    transpose_tile2d::launch(&device, &config, dims, &input, &mut out, n).unwrap();
    assert_eq!(device.download(&out).unwrap(), expected);

    // The CUDA C of both spellings is the same text (but for the kernel's name).
    let source = |def, name: &str| {
        let typed = resolve::specialize(def, &config).unwrap();
        codegen::cuda_source(&typed).replace(name, "KERNEL")
    };
    let two_d = source(transpose_tile2d::def(), "transpose_tile2d");
    let flat = source(transpose_flat::def(), "transpose_flat");
    let body = |s: &str| s[s.find("__global__").unwrap()..].to_string();
    assert_eq!(body(&two_d), body(&flat));
    assert!(two_d.contains("tile[272]"), "{two_d}");

    // The sanitizer reports the flat element, at the author's line.
    let config = config.with("MISS", 1);
    let err = transpose_tile2d::launch(&device, &config, dims, &input, &mut out, n)
        .unwrap_err()
        .to_string();
    let line = include_str!("dsl.rs")
        .lines()
        .position(|l| l.ends_with("// @tile2d-read"))
        .unwrap()
        + 1;
    assert!(
        err.starts_with("kernel transpose_tile2d: out-of-bounds read of tile[")
            && err.contains("(length 272)")
            && err.ends_with(&format!("at tests/dsl.rs:{line}")),
        "{err}"
    );
}
