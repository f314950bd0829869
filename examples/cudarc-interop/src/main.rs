//! An engine's view of warpforge: the engine owns the CUDA context, the stream and every
//! allocation (plain cudarc); warpforge launches its library kernels on that memory, on
//! that stream, without copying and without synchronizing. The engine synchronizes when it
//! wants its results, then checks them against a host computation.
//!
//! Run: `cargo run --release --manifest-path examples/cudarc-interop/Cargo.toml`. Without
//! a GPU it says why it skipped and exits 0.

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use std::sync::Arc;
use warpforge::dsl::backend::{BufferView, BufferViewMut};
use warpforge::dsl::{Config, Device, Element};
use warpforge::kernels::fp8::{launch as fp8, reference, Fp8Type};
use warpforge::kernels::gemm_tc::{self, Layout};
use warpforge::prelude::{f16, F8E4M3};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    // warpforge's probe never panics without a driver (cudarc's would): ask it first.
    if let Err(e) = Device::cuda(0) {
        println!("cudarc-interop: skipped: {e}");
        return Ok(());
    }
    // The engine's own context and stream (not the default stream).
    let ctx = CudaContext::new(0)?;
    let stream = ctx.new_stream()?;
    let device = Device::from_cuda_stream(Arc::clone(&stream))?;
    println!("cudarc-interop: {} on the caller's stream", device.name());
    gemm(&device, &stream)?;
    quantize(&device, &stream)?;
    println!("cudarc-interop: ok");
    Ok(())
}

/// C = A·Bᵀ (f16 → f32) on the tensor cores; C is written into the middle of a larger
/// allocation of the engine's, whose other elements must stay as they were.
fn gemm(device: &Device, stream: &Arc<CudaStream>) -> Result<(), Error> {
    let (m, n, k) = (256, 192, 128);
    let (a, b) = gemm_tc::inputs::<f16>(Layout::Nt, (m, n, k));
    let (lda, ldb) = (gemm_tc::padded(k), Layout::Nt.ldb(n, k));
    let da: CudaSlice<f16> = stream.clone_htod(&a)?;
    let db: CudaSlice<f16> = stream.clone_htod(&b)?;
    let (c_at, sentinel) = (64, -3.0f32);
    let mut dc: CudaSlice<f32> = stream.clone_htod(&vec![sentinel; c_at + m * n + 64])?;

    let def = gemm_tc::def_of(Layout::Nt, f16::SCALAR, f32::SCALAR).ok_or("no f16 GEMM")?;
    let config = def.space.default_config();
    {
        let a_view = BufferView::<f16>::cuda(device, &da)?;
        let b_view = BufferView::<f16>::cuda(device, &db)?;
        let mut c_part = dc.slice_mut(c_at..c_at + m * n);
        let mut c_view = BufferViewMut::<f32>::cuda(device, &mut c_part)?;
        let (shape, lds) = (
            (m as u32, n as u32, k as u32),
            (lda as u32, ldb as u32, n as u32),
        );
        c_view.with(|c| {
            gemm_tc::launch(device, &config, Layout::Nt, &a_view, &b_view, c, shape, lds)
        })?;
    }
    stream.synchronize()?;
    let c = stream.clone_dtoh(&dc)?;
    let want = gemm_tc::reference(&a, &b, Layout::Nt, (m, n, k), (lda, ldb));
    let (before, rest) = c.split_at(c_at);
    let (got, after) = rest.split_at(m * n);
    if let Some(i) = (0..m * n).find(|&i| got[i] != want[i]) {
        return Err(format!(
            "GEMM: C[{i}] = {} but the host computes {}",
            got[i], want[i]
        )
        .into());
    }
    if before.iter().chain(after).any(|&v| v != sentinel) {
        return Err("GEMM: an element outside the view of C changed".into());
    }
    println!("cudarc-interop: GEMM {m}x{n}x{k} (f16 -> f32, config {config}) matches the host");
    Ok(())
}

/// FP8 E4M3 codes of x with a delayed (given) scale, and x's amax, written into views at
/// offsets of the engine's allocations; x itself is a sub-range of a larger allocation.
fn quantize(device: &Device, stream: &Arc<CudaStream>) -> Result<(), Error> {
    let n = 4096;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 1001) as f32 - 500.0) * 0.173)
        .collect();
    let scale = 0.25f32;
    let (x_at, q_at) = (32, 128);
    let mut x_all = vec![1.0e6f32; x_at + n + 16];
    x_all[x_at..x_at + n].copy_from_slice(&x);
    let dx: CudaSlice<f32> = stream.clone_htod(&x_all)?;
    let dscale: CudaSlice<f32> = stream.clone_htod(&[scale])?;
    let mut dq: CudaSlice<u8> = stream.clone_htod(&vec![0x55u8; q_at + n + 16])?;
    let mut dbits: CudaSlice<u32> = stream.alloc_zeros(1)?;
    {
        let x_part = dx.slice(x_at..x_at + n);
        let x_view = BufferView::<f32>::cuda(device, &x_part)?;
        let s_view = BufferView::<f32>::cuda(device, &dscale)?;
        let mut q_part = dq.slice_mut(q_at..q_at + n);
        // The engine keeps FP8 codes as bytes: the view reads them as F8E4M3.
        let mut q_view = BufferViewMut::<F8E4M3>::cuda(device, &mut q_part)?;
        let mut bits_view = BufferViewMut::<u32>::cuda(device, &mut dbits)?;
        let config = Config::new();
        q_view.with(|q| {
            bits_view.with(|bits| {
                fp8::quantize_delayed::<F8E4M3>(
                    device,
                    &config,
                    (&x_view, &s_view),
                    (q, bits),
                    n as u32,
                )
            })
        })?;
    }
    stream.synchronize()?;
    let q = stream.clone_dtoh(&dq)?;
    let amax = f32::from_bits(stream.clone_dtoh(&dbits)?[0]);
    let format = <F8E4M3 as Fp8Type>::FORMAT;
    for (i, &v) in x.iter().enumerate() {
        let want = reference::quantize(v, scale, format);
        if q[q_at + i] != want {
            return Err(format!(
                "FP8: code {i} of {v} is {:#04x}, the host gives {want:#04x}",
                q[q_at + i]
            )
            .into());
        }
    }
    if q[..q_at].iter().chain(&q[q_at + n..]).any(|&b| b != 0x55) {
        return Err("FP8: a byte outside the view of the codes changed".into());
    }
    if amax != reference::amax(&x) {
        return Err(format!("FP8: amax {amax}, the host gives {}", reference::amax(&x)).into());
    }
    println!("cudarc-interop: FP8 E4M3 quantize of {n} values (amax {amax}) matches the host");
    Ok(())
}
