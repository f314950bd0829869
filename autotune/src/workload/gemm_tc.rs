//! The tensor-core GEMMs `gemm_tc_{nt,nn}_{t}_{o}`: f16 or bf16 A and B with leading
//! dimensions padded to multiples of 8, C in f32, f16 or bf16.
//!
//! Inputs are integers in [-4, 4] (exact in f16 and bf16; every product and partial sum is
//! exact in f32, and rounded once into C's type), so every config must give the same C bit
//! for bit. The padding columns hold 1024,
//! which a config that reads past `k` (or `n`) would carry into C.

use super::{Lcg, Problem};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, f16, Float};
use warpforge_dsl::{Buffer, Config, Device, Element};
use warpforge_kernels::gemm_tc::{self, padded, Layout};

/// The operands and result of one `m×n×k` product.
struct GemmTc<T: Element, O: Element> {
    layout: Layout,
    m: u32,
    n: u32,
    k: u32,
    a: Buffer<T>,
    b: Buffer<T>,
    c: Buffer<O>,
}

/// The layout of B of a tensor-core GEMM kernel (`gemm_tc_nn_*` or `gemm_tc_nt_*`).
pub(super) fn layout_of(name: &str) -> Layout {
    match name.starts_with("gemm_tc_nn") {
        true => Layout::Nn,
        false => Layout::Nt,
    }
}

/// A (`m` rows of `padded(k)`) and B (as `layout` stores it), padding columns set to 1024.
pub(super) fn operands<T: Float>(
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    rng: &mut Lcg,
) -> (Vec<T>, Vec<T>) {
    let mut fill = |rows: usize, ld: usize, cols: usize| -> Vec<T> {
        (0..rows * ld)
            .map(|e| {
                let x = if e % ld < cols {
                    rng.integer(4)
                } else {
                    1024.0
                };
                T::from_f32(x)
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
    let types = name.split('_').skip(3).collect::<Vec<_>>();
    match types.as_slice() {
        ["f16", "f32"] => typed::<f16, f32>(device, name, d, rng),
        ["f16", "f16"] => typed::<f16, f16>(device, name, d, rng),
        ["f16", "bf16"] => typed::<f16, bf16>(device, name, d, rng),
        ["bf16", "f32"] => typed::<bf16, f32>(device, name, d, rng),
        ["bf16", "f16"] => typed::<bf16, f16>(device, name, d, rng),
        _ => typed::<bf16, bf16>(device, name, d, rng),
    }
}

fn typed<T: Float + Element, O: Float + Element>(
    device: &Device,
    name: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let layout = layout_of(name);
    let (m, n, k) = (d[0], d[1], d[2]);
    let (a, b) = operands::<T>(layout, (m as usize, n as usize, k as usize), rng);
    Ok(Box::new(GemmTc::<T, O> {
        layout,
        m,
        n,
        k,
        a: device.upload(&a)?,
        b: device.upload(&b)?,
        c: device.zeros((m as usize) * (n as usize))?,
    }))
}

impl<T: Float + Element, O: Float + Element> Problem for GemmTc<T, O> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let (m, n, k) = (self.m, self.n, self.k);
        let lda = padded(k as usize) as u32;
        let ldb = self.layout.ldb(n as usize, k as usize) as u32;
        let (a, b, c) = (&self.a, &self.b, &mut self.c);
        gemm_tc::launch(
            device,
            config,
            self.layout,
            a,
            b,
            c,
            (m, n, k),
            (lda, ldb, n),
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        Ok(device
            .download(&self.c)?
            .into_iter()
            .map(O::to_f32)
            .collect())
    }
}
