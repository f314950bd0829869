//! Hand-built sample kernels, for tests and the interpreter benchmark.

use crate::backend::LaunchDims;
use crate::ir::BinOp;
use crate::typed::{ArraySpace, Builtin, Dim, Intrinsic, Kernel};
use crate::types::Type;

use super::build::*;

/// Rows and columns of C computed by one block of [`tiled_gemm`].
pub const GEMM_TILE: u32 = 64;
/// The K-slice staged in shared memory per step.
pub const GEMM_TILE_K: u32 = 16;
/// Each thread computes a `MICRO x MICRO` piece of the block's tile.
const MICRO: u32 = 4;
const THREADS: u32 = (GEMM_TILE / MICRO) * (GEMM_TILE / MICRO);

/// `c = a * b` in f32 (row-major, `a` is m x k, `b` is k x n), tiled: 64 x 64 tiles of C
/// per block of 16 x 16 threads, K staged through shared memory 16 at a time, a 4 x 4
/// register tile per thread accumulated with `fma` in ascending k. Ragged edges are guarded.
///
/// Parameters: `a: &[f32], b: &[f32], c: &mut [f32], m: u32, n: u32, k: u32`.
pub fn tiled_gemm() -> Kernel {
    let mut f = Fb::default();
    let f32t = Type::F32;
    let (a, b) = (
        f.slice_param("a", f32t, false),
        f.slice_param("b", f32t, false),
    );
    let c = f.slice_param("c", f32t, true);
    let (m, n, k) = (
        f.value_param("m", Type::U32),
        f.value_param("n", Type::U32),
        f.value_param("k", Type::U32),
    );
    let a_tile = f.array("a_tile", f32t, GEMM_TILE_K * GEMM_TILE, ArraySpace::Shared);
    let b_tile = f.array("b_tile", f32t, GEMM_TILE_K * GEMM_TILE, ArraySpace::Shared);
    let acc = f.array("acc", f32t, MICRO * MICRO, ArraySpace::Local);
    let a_frag = f.array("a_frag", f32t, MICRO, ArraySpace::Local);
    let b_frag = f.array("b_frag", f32t, MICRO, ArraySpace::Local);
    let [t, row0, col0, k0, l, e, r, kk, gr, gk, i, j] = [
        "t", "row0", "col0", "k0", "l", "e", "r", "kk", "gr", "gk", "i", "j",
    ]
    .map(|name| f.var(name, Type::U32));
    let (tx, ty) = (tid(Dim::X), tid(Dim::Y));
    let block = |d| builtin(Builtin::BlockIdx(d));
    let tile = || u(GEMM_TILE);
    let and = |x, y| bin(BinOp::And, x, y);
    let guarded = |cond, mem: Mem, index| select(cond, mem.at(index), lit(0f32));
    let stage = vec![
        // A tile: TILE rows x TILE_K columns, stored k-major (a_tile[kk * TILE + r]).
        for_(
            &l,
            u(0),
            u(GEMM_TILE * GEMM_TILE_K / THREADS),
            1,
            vec![
                let_(&e, add(t.clone(), mul(l.clone(), u(THREADS)))),
                let_(&r, bin(BinOp::Div, e.clone(), u(GEMM_TILE_K))),
                let_(&kk, bin(BinOp::Rem, e.clone(), u(GEMM_TILE_K))),
                let_(&gr, add(row0.clone(), r.clone())),
                let_(&gk, add(k0.clone(), kk.clone())),
                a_tile.store(
                    add(mul(kk.clone(), tile()), r.clone()),
                    guarded(
                        and(lt(gr.clone(), m.clone()), lt(gk.clone(), k.clone())),
                        a,
                        add(mul(gr.clone(), k.clone()), gk.clone()),
                    ),
                ),
                // B tile: TILE_K rows x TILE columns (b_tile[kk * TILE + col]).
                let_(&kk, bin(BinOp::Div, e.clone(), tile())),
                let_(&r, bin(BinOp::Rem, e.clone(), tile())),
                let_(&gk, add(k0.clone(), kk.clone())),
                let_(&gr, add(col0.clone(), r.clone())),
                b_tile.store(
                    add(mul(kk.clone(), tile()), r.clone()),
                    guarded(
                        and(lt(gk.clone(), k.clone()), lt(gr.clone(), n.clone())),
                        b,
                        add(mul(gk.clone(), n.clone()), gr.clone()),
                    ),
                ),
            ],
        ),
        sync(),
    ];
    let fma = |x, y, z| intr(Intrinsic::Fma, vec![x, y, z], f32t);
    let acc_at = || add(mul(i.clone(), u(MICRO)), j.clone());
    let compute = vec![
        for_(
            &kk,
            u(0),
            u(GEMM_TILE_K),
            1,
            vec![
                for_(
                    &i,
                    u(0),
                    u(MICRO),
                    1,
                    vec![a_frag.store(
                        i.clone(),
                        a_tile.at(add(
                            mul(kk.clone(), tile()),
                            add(mul(ty.clone(), u(MICRO)), i.clone()),
                        )),
                    )],
                ),
                for_(
                    &j,
                    u(0),
                    u(MICRO),
                    1,
                    vec![b_frag.store(
                        j.clone(),
                        b_tile.at(add(
                            mul(kk.clone(), tile()),
                            add(mul(tx.clone(), u(MICRO)), j.clone()),
                        )),
                    )],
                ),
                for_(
                    &i,
                    u(0),
                    u(MICRO),
                    1,
                    vec![for_(
                        &j,
                        u(0),
                        u(MICRO),
                        1,
                        vec![acc.store(
                            acc_at(),
                            fma(a_frag.at(i.clone()), b_frag.at(j.clone()), acc.at(acc_at())),
                        )],
                    )],
                ),
            ],
        ),
        sync(),
    ];
    let write_back = for_(
        &i,
        u(0),
        u(MICRO),
        1,
        vec![for_(
            &j,
            u(0),
            u(MICRO),
            1,
            vec![
                let_(
                    &gr,
                    add(row0.clone(), add(mul(ty.clone(), u(MICRO)), i.clone())),
                ),
                let_(
                    &gk,
                    add(col0.clone(), add(mul(tx.clone(), u(MICRO)), j.clone())),
                ),
                if_(
                    and(lt(gr.clone(), m.clone()), lt(gk.clone(), n.clone())),
                    vec![c.store(
                        add(mul(gr.clone(), n.clone()), gk.clone()),
                        acc.at(acc_at()),
                    )],
                    vec![],
                ),
            ],
        )],
    );
    let mut k_loop = stage;
    k_loop.extend(compute);
    let body = vec![
        acc.declare(),
        a_frag.declare(),
        b_frag.declare(),
        let_(&t, add(mul(ty.clone(), u(GEMM_TILE / MICRO)), tx.clone())),
        let_(&row0, mul(block(Dim::Y), tile())),
        let_(&col0, mul(block(Dim::X), tile())),
        for_(&k0, u(0), k.clone(), GEMM_TILE_K, k_loop),
        write_back,
    ];
    let mut kernel = kernel(f.finish("tiled_gemm", None, body), vec![]);
    kernel.block_dim = Some([GEMM_TILE / MICRO, GEMM_TILE / MICRO, 1]);
    kernel
}

/// The launch shape of [`tiled_gemm`] for an m x n result.
pub fn tiled_gemm_dims(m: u32, n: u32) -> LaunchDims {
    LaunchDims::grid_2d(
        (n.div_ceil(GEMM_TILE), m.div_ceil(GEMM_TILE)),
        (GEMM_TILE / MICRO, GEMM_TILE / MICRO),
    )
}
