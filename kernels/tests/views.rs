//! Library launchers on buffer views: a tensor-core GEMM and an FP8 quantize run on
//! sub-views of larger buffers (on the interpreter), give the reference's results, and
//! leave every byte outside their views as it was. The same launchers take views of a
//! caller's cudarc memory on a GPU (examples/cudarc-interop).

use warpforge_dsl::prelude::*;
use warpforge_dsl::Element;
use warpforge_kernels::fp8::{launch, reference, Fp8Type};
use warpforge_kernels::gemm_tc::{self, Layout};

/// `data` placed at `offset` in a buffer of `total` elements, the rest `fill`.
fn embedded<T: Copy>(data: &[T], offset: usize, total: usize, fill: T) -> Vec<T> {
    let mut all = vec![fill; total];
    all[offset..offset + data.len()].copy_from_slice(data);
    all
}

/// Everything outside `offset..offset + len` of `got` equals `before`.
fn untouched_outside<T: PartialEq + std::fmt::Debug>(
    got: &[T],
    before: &[T],
    (offset, len): (usize, usize),
) {
    for (i, (g, b)) in got.iter().zip(before).enumerate() {
        if !(offset..offset + len).contains(&i) {
            assert_eq!(g, b, "element {i} outside the view changed");
        }
    }
}

#[test]
fn tensor_core_gemm_runs_on_sub_views() {
    let device = Device::cpu();
    let (m, n, k) = (32, 32, 32);
    let (a, b) = gemm_tc::inputs::<f16>(Layout::Nt, (m, n, k));
    let (lda, ldb) = (gemm_tc::padded(k), Layout::Nt.ldb(n, k));
    // Each operand sits 16-byte aligned inside a larger buffer of sentinels.
    let sentinel = f16::from_f32(-1024.0);
    let (a_at, b_at, c_at) = (64, 128, 36);
    let a_all = embedded(&a, a_at, a.len() + 200, sentinel);
    let b_all = embedded(&b, b_at, b.len() + 300, sentinel);
    let c_before = vec![7.5f32; m * n + 100];
    let (da, db) = (
        device.upload(&a_all).unwrap(),
        device.upload(&b_all).unwrap(),
    );
    let mut dc = device.upload(&c_before).unwrap();

    let def = gemm_tc::def_of(Layout::Nt, f16::SCALAR, f32::SCALAR).unwrap();
    let config = def.space.default_config();
    let av = da.view(a_at..a_at + a.len()).unwrap();
    let bv = db.view(b_at..b_at + b.len()).unwrap();
    let mut cv = dc.view_mut(c_at..c_at + m * n).unwrap();
    let shape = (m as u32, n as u32, k as u32);
    let lds = (lda as u32, ldb as u32, n as u32);
    cv.with(|c| gemm_tc::launch(&device, &config, Layout::Nt, &av, &bv, c, shape, lds))
        .unwrap();
    assert_eq!(cv.len(), m * n);
    let got_view = device.download(&cv).unwrap();
    drop(cv);

    let want = gemm_tc::reference(&a, &b, Layout::Nt, (m, n, k), (lda, ldb));
    assert_eq!(got_view, want, "C through the view");
    let c_all = device.download(&dc).unwrap();
    assert_eq!(
        &c_all[c_at..c_at + m * n],
        &want[..],
        "C in the larger buffer"
    );
    untouched_outside(&c_all, &c_before, (c_at, m * n));
    assert_eq!(device.download(&da).unwrap(), a_all, "A is read only");
    assert_eq!(device.download(&db).unwrap(), b_all, "B is read only");
}

#[test]
fn fp8_quantize_runs_on_sub_views() {
    fp8_quantize_on_sub_views(&Device::cpu());
}

/// The host backend (the generated CUDA C on the CPU) takes the same views.
#[test]
fn fp8_quantize_runs_on_sub_views_on_the_host_backend() {
    match Device::host() {
        Ok(host) => fp8_quantize_on_sub_views(&host),
        Err(e) => eprintln!("skipped: the host backend needs a C++ compiler ({e})"),
    }
}

fn fp8_quantize_on_sub_views(device: &Device) {
    let n = 64;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 - 20.5) * 0.37).collect();
    let scale = 0.05f32;
    let (x_at, s_at, q_at, bits_at) = (16, 4, 48, 8);
    let x_all = embedded(&x, x_at, n + 40, 1.0e6);
    let s_all = embedded(&[scale], s_at, 12, 9.0);
    let q_before = vec![F8E4M3::from_bits(0x55); n + 96];
    let bits_before = vec![0xdead_beefu32; 16];
    let (dx, ds) = (
        device.upload(&x_all).unwrap(),
        device.upload(&s_all).unwrap(),
    );
    let mut dq = device.upload(&q_before).unwrap();
    let mut dbits = device.upload(&bits_before).unwrap();
    // The amax is an atomic max into the view: it starts at zero.
    dbits
        .view_mut(bits_at..bits_at + 1)
        .unwrap()
        .with(|b| b.raw.host_bytes_mut().unwrap().fill(0));

    let (xv, sv) = (
        dx.view(x_at..x_at + n).unwrap(),
        ds.view(s_at..s_at + 1).unwrap(),
    );
    let mut qv = dq.view_mut(q_at..q_at + n).unwrap();
    let mut bv = dbits.view_mut(bits_at..bits_at + 1).unwrap();
    let config = Config::new();
    qv.with(|q| {
        bv.with(|bits| {
            launch::quantize_delayed::<F8E4M3>(device, &config, (&xv, &sv), (q, bits), n as u32)
        })
    })
    .unwrap();
    drop((qv, bv));

    let format = <F8E4M3 as Fp8Type>::FORMAT;
    let q_all = device.download(&dq).unwrap();
    for (i, &v) in x.iter().enumerate() {
        let want = reference::quantize(v, scale, format);
        assert_eq!(q_all[q_at + i].to_bits(), want as u64, "code {i} of {v}");
    }
    untouched_outside(&q_all, &q_before, (q_at, n));
    let bits_all = device.download(&dbits).unwrap();
    assert_eq!(f32::from_bits(bits_all[bits_at]), reference::amax(&x));
    untouched_outside(&bits_all, &bits_before, (bits_at, 1));
    assert_eq!(device.download(&dx).unwrap(), x_all);
}

#[test]
fn a_view_too_short_for_the_launch_is_refused() {
    let device = Device::cpu();
    let (m, n, k) = (16, 16, 16);
    let (a, b) = gemm_tc::inputs::<f16>(Layout::Nt, (m, n, k));
    let (da, db) = (device.upload(&a).unwrap(), device.upload(&b).unwrap());
    let mut dc = device.zeros::<f32>(m * n).unwrap();
    let def = gemm_tc::def_of(Layout::Nt, f16::SCALAR, f32::SCALAR).unwrap();
    let config = def.space.default_config();
    let lds = (
        gemm_tc::padded(k) as u32,
        Layout::Nt.ldb(n, k) as u32,
        n as u32,
    );
    let mut short = dc.view_mut(..m * n - 8).unwrap();
    let err = short
        .with(|c| gemm_tc::launch(&device, &config, Layout::Nt, &da, &db, c, (16, 16, 16), lds))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ldc"), "{err}");
}
