//! Unit tests of the int4 GEMM on the interpreter (the integration tests in
//! `tests/int4_gemm.rs` cover the tunable space and ragged shapes).

use super::host::{def_of, reference, run};
use super::{GroupDim, Int4Weight};
use crate::family::Lcg;
use warpforge_dsl::prelude::*;
use warpforge_dsl::Element;

pub(crate) fn weight(
    dim: GroupDim,
    k: usize,
    n: usize,
    group: usize,
    symmetric: bool,
) -> Int4Weight {
    let mut rng = Lcg::for_dims(&[k, n, group], symmetric as u64 + 7);
    let groups = match dim {
        GroupDim::Oc => k.div_ceil(group),
        GroupDim::Ic => n.div_ceil(group),
    };
    let params = if dim == GroupDim::Oc {
        groups * n
    } else {
        k * groups
    };
    Int4Weight {
        k,
        n,
        group,
        dim,
        codes: (0..k * n).map(|_| (rng.next_u32() % 16) as u8).collect(),
        scales: (0..params)
            .map(|_| (1 + rng.next_u32() % 31) as f32 / 256.0)
            .collect(),
        zeros: (0..params)
            .map(|_| {
                if symmetric {
                    8
                } else {
                    (rng.next_u32() % 16) as u8
                }
            })
            .collect(),
        g_idx: None,
    }
}

#[test]
fn default_config_matches_the_reference() {
    let device = Device::cpu();
    for dim in [GroupDim::Oc, GroupDim::Ic] {
        let (m, k, n) = (3, 128, 128);
        let w = weight(dim, k, n, 32, false);
        let mut rng = Lcg::for_dims(&[m, k], 1);
        let a: Vec<f16> = rng
            .floats(m * k, 1.0)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        let def = def_of(dim, f16::SCALAR).unwrap();
        let config = def.space.default_config();
        let got = run::<f16>(&device, &config, &w, &a, m, k).unwrap();
        let want = reference::<f16>(&w, &a, m, k);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g.to_f32() - w).abs() <= 2e-3 * w.abs().max(1.0),
                "{dim:?} {i}: {g} vs {w}"
            );
        }
    }
}
