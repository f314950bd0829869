//! The tensor-core GEMMs `gemm_tc_nt` and `gemm_tc_nn`: f16 A and B with leading
//! dimensions padded to multiples of 8, f32 C.
//!
//! Inputs are integers in [-4, 4] (exact in f16; every product and partial sum is exact in
//! f32), so every config must give the same C bit for bit. The padding columns hold 1024,
//! which a config that reads past `k` (or `n`) would carry into C.

use super::{Lcg, Problem};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::f16;
use warpforge_dsl::{Buffer, Config, Device};
use warpforge_kernels::gemm_tc::{self, padded, Layout};

/// The f16 operands and f32 result of one `m×n×k` product.
struct GemmTc {
    layout: Layout,
    m: u32,
    n: u32,
    k: u32,
    a: Buffer<f16>,
    b: Buffer<f16>,
    c: Buffer<f32>,
}

/// The layout of B of a tensor-core GEMM kernel.
pub(super) fn layout_of(name: &str) -> Layout {
    match name {
        "gemm_tc_nn" => Layout::Nn,
        _ => Layout::Nt,
    }
}

/// A (`m` rows of `padded(k)`) and B (as `layout` stores it), padding columns set to 1024.
pub(super) fn operands(
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    rng: &mut Lcg,
) -> (Vec<f16>, Vec<f16>) {
    let mut fill = |rows: usize, ld: usize, cols: usize| -> Vec<f16> {
        (0..rows * ld)
            .map(|e| {
                let x = if e % ld < cols {
                    rng.integer(4)
                } else {
                    1024.0
                };
                f16::from_f32(x)
            })
            .collect()
    };
    let a = fill(m, padded(k), k);
    let b_cols = if layout == Layout::Nt { k } else { n };
    let b = fill(layout.b_rows(n, k), layout.ldb(n, k), b_cols);
    (a, b)
}

pub(super) fn build(
    device: &Device,
    name: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let layout = layout_of(name);
    let (m, n, k) = (d[0], d[1], d[2]);
    let (a, b) = operands(layout, (m as usize, n as usize, k as usize), rng);
    Ok(Box::new(GemmTc {
        layout,
        m,
        n,
        k,
        a: device.upload(&a)?,
        b: device.upload(&b)?,
        c: device.zeros((m as usize) * (n as usize))?,
    }))
}

impl Problem for GemmTc {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        launch(device, config, self)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        device.download(&self.c)
    }
}

/// The adapter: the one place that calls the tensor-core GEMM kernels.
fn launch(device: &Device, config: &Config, p: &mut GemmTc) -> Result<(), warpforge_dsl::Error> {
    let (m, n, k) = (p.m, p.n, p.k);
    let lda = padded(k as usize) as u32;
    let ldb = p.layout.ldb(n as usize, k as usize) as u32;
    let dims = gemm_tc::dims(config, m, n);
    let (a, b, c) = (&p.a, &p.b, &mut p.c);
    match p.layout {
        Layout::Nt => {
            gemm_tc::gemm_tc_nt::launch(device, config, dims, a, b, c, m, n, k, lda, ldb, n)?
        }
        Layout::Nn => {
            gemm_tc::gemm_tc_nn::launch(device, config, dims, a, b, c, m, n, k, lda, ldb, n)?
        }
    }
    Ok(())
}
