use super::*;
use crate::family::Lcg;

/// A random weight whose scales are exact in f16 and bf16 (a few mantissa bits).
fn random_weight(dim: GroupDim, k: usize, n: usize, group: usize, symmetric: bool) -> Int4Weight {
    let mut rng = Lcg::for_dims(&[k, n, group], symmetric as u64);
    let groups = match dim {
        GroupDim::Oc => k.div_ceil(group),
        GroupDim::Ic => n.div_ceil(group),
    };
    let params = match dim {
        GroupDim::Oc => groups * n,
        GroupDim::Ic => k * groups,
    };
    Int4Weight {
        k,
        n,
        group,
        dim,
        codes: (0..k * n).map(|_| (rng.next_u32() % 16) as u8).collect(),
        scales: (0..params)
            .map(|_| (1 + rng.next_u32() % 15) as f32 / 64.0)
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

/// GPTQ's act-order assignment: channel `order[j]` is in group `j / group`.
fn with_act_order(mut w: Int4Weight) -> Int4Weight {
    let mut order: Vec<usize> = (0..w.k).collect();
    let mut rng = Lcg::for_dims(&[w.k], 9);
    for i in (1..w.k).rev() {
        order.swap(i, rng.next_u32() as usize % (i + 1));
    }
    let mut g_idx = vec![0u32; w.k];
    for (j, &ch) in order.iter().enumerate() {
        g_idx[ch] = (j / w.group) as u32;
    }
    w.g_idx = Some(g_idx);
    w
}

fn round_trip<T: Int4Float>(w: &Int4Weight) {
    let p = pack::<T>(w).unwrap();
    assert_eq!(p.weights.len(), p.k_pad * p.n_pad / 8);
    assert_eq!(p.zeros.is_none(), w.zeros.iter().all(|&z| z == 8));
    let back = unpack::<T>(&p).unwrap();
    assert_eq!(
        &back, w,
        "{:?} k={} n={} group={}",
        w.dim, w.k, w.n, w.group
    );
    assert_eq!(back.dequantize(), w.dequantize());
}

#[test]
fn pack_unpack_round_trips_exactly() {
    for dim in [GroupDim::Oc, GroupDim::Ic] {
        for (k, n, group) in [
            (16, 64, 16),
            (64, 128, 32),
            (100, 70, 32),
            (256, 192, 128),
            (256, 256, 64),
        ] {
            for symmetric in [true, false] {
                let w = random_weight(dim, k, n, group, symmetric);
                round_trip::<f16>(&w);
                round_trip::<bf16>(&w);
                if dim == GroupDim::Oc {
                    round_trip::<f16>(&with_act_order(w));
                }
            }
        }
        // One group per channel, with k and n not multiples of 16 or 64.
        let whole = if dim == GroupDim::Oc { 37 } else { 90 };
        round_trip::<f16>(&random_weight(dim, 37, 90, whole, false));
    }
}

/// The lane-0 word of tile 0 holds, nibble 0..8, (k, n) = (0,0), (8,0), (0,8), (8,8),
/// (1,0), (9,0), (1,8), (9,8) — the MARLIN order the dequant relies on.
#[test]
fn lane_zero_word_matches_the_documented_order() {
    let mut w = random_weight(GroupDim::Oc, 16, 64, 16, true);
    for (i, c) in w.codes.iter_mut().enumerate() {
        let (k, n) = (i / 64, i % 64);
        *c = match (k, n) {
            (0, 0) => 1,
            (8, 0) => 2,
            (0, 8) => 3,
            (8, 8) => 4,
            (1, 0) => 5,
            (9, 0) => 6,
            (1, 8) => 7,
            (9, 8) => 8,
            _ => 0,
        };
    }
    let p = pack::<f16>(&w).unwrap();
    assert_eq!(p.weights[0], 0x8765_4321);
    // Lane 5 (g = 1, t = 1), word 2: column 32 + 1, k rows 2, 3, 10, 11.
    let (row, col) = value_position(5, 2, 1);
    assert_eq!((row, col), (3, 33));
}

#[test]
fn scale_permutations_are_bijections() {
    let mut oc: Vec<usize> = (0..64).map(oc_scale_position).collect();
    oc.sort();
    assert_eq!(oc, (0..64).collect::<Vec<_>>());
    // Lane g = 3 reads positions 24..32: columns 3, 11, 19, 27, 35, 43, 51, 59.
    let cols: Vec<usize> = (24..32)
        .map(|p| (0..64).find(|&c| oc_scale_position(c) == p).unwrap())
        .collect();
    assert_eq!(cols, [3, 11, 19, 27, 35, 43, 51, 59]);
    let ic: Vec<usize> = (0..16).map(ic_scale_position).collect();
    assert_eq!(ic, [0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15]);
}

#[test]
fn act_order_permutes_rows_and_activations_consistently() {
    let w = with_act_order(random_weight(GroupDim::Oc, 64, 64, 32, false));
    let p = pack::<f16>(&w).unwrap();
    let perm = p.perm.clone().unwrap();
    // Sorted rows are in ascending groups, and A'·W' = A·W on a one-hot row.
    let g_idx = w.g_idx.as_ref().unwrap();
    assert!(perm
        .windows(2)
        .all(|x| g_idx[x[0] as usize] <= g_idx[x[1] as usize]));
    let a: Vec<u32> = (0..64).collect();
    let a2 = permute_columns(&a, 1, 64, &perm);
    assert_eq!(a2, perm);
}

#[test]
fn unpackable_groups_are_refused_by_name() {
    let w = random_weight(GroupDim::Oc, 64, 64, 24, true);
    let err = pack::<f16>(&w).unwrap_err().to_string();
    assert!(err.contains("group size 24"), "{err}");
    let mut w = random_weight(GroupDim::Oc, 64, 64, 32, true);
    let mut g_idx: Vec<u32> = (0..64).map(|i| (i / 32) as u32).collect();
    g_idx[0] = 1; // 31 channels in group 0, 33 in group 1.
    w.g_idx = Some(g_idx);
    let err = pack::<f16>(&w).unwrap_err().to_string();
    assert!(err.contains("act-order"), "{err}");
}
