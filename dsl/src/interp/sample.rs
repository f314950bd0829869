//! Hand-built sample kernels, for tests and the interpreter benchmark.

use crate::backend::LaunchDims;
use crate::ir::BinOp;
use crate::test_ir::*;
use crate::typed::{ArraySpace, Dim, Intrinsic, Kernel};
use crate::types::Type;

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
    let mut f = FnBuilder::default();
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
    let (a_tile, a_tile_decl) =
        f.array("a_tile", f32t, GEMM_TILE_K * GEMM_TILE, ArraySpace::Shared);
    let (b_tile, b_tile_decl) =
        f.array("b_tile", f32t, GEMM_TILE_K * GEMM_TILE, ArraySpace::Shared);
    let (acc, acc_decl) = f.array("acc", f32t, MICRO * MICRO, ArraySpace::Local);
    let (a_frag, a_frag_decl) = f.array("a_frag", f32t, MICRO, ArraySpace::Local);
    let (b_frag, b_frag_decl) = f.array("b_frag", f32t, MICRO, ArraySpace::Local);
    let [t, row0, col0, k0, l, e, r, kk, gr, gk, i, j] = [
        "t", "row0", "col0", "k0", "l", "e", "r", "kk", "gr", "gk", "i", "j",
    ]
    .map(|name| f.var_mut(name, Type::U32));
    let (tx, ty) = (tid(Dim::X), tid(Dim::Y));
    let tile = || u32(GEMM_TILE);
    let micro = || [u32(0), u32(MICRO), u32(1)];
    let and = |x, y| bin(BinOp::And, x, y);
    let guarded = |cond, mem: Mem, index| select(cond, mem.at(index), lit(0f32));
    let stage = vec![
        // A tile: TILE rows x TILE_K columns, stored k-major (a_tile[kk * TILE + r]).
        for_(
            l,
            [u32(0), u32(GEMM_TILE * GEMM_TILE_K / THREADS), u32(1)],
            None,
            vec![
                let_(e, add(t.e(), mul(l.e(), u32(THREADS)))),
                let_(r, bin(BinOp::Div, e.e(), u32(GEMM_TILE_K))),
                let_(kk, bin(BinOp::Rem, e.e(), u32(GEMM_TILE_K))),
                let_(gr, add(row0.e(), r.e())),
                let_(gk, add(k0.e(), kk.e())),
                a_tile.store(
                    add(mul(kk.e(), tile()), r.e()),
                    guarded(
                        and(lt(gr.e(), m.e()), lt(gk.e(), k.e())),
                        a,
                        add(mul(gr.e(), k.e()), gk.e()),
                    ),
                ),
                // B tile: TILE_K rows x TILE columns (b_tile[kk * TILE + col]).
                let_(kk, bin(BinOp::Div, e.e(), tile())),
                let_(r, bin(BinOp::Rem, e.e(), tile())),
                let_(gk, add(k0.e(), kk.e())),
                let_(gr, add(col0.e(), r.e())),
                b_tile.store(
                    add(mul(kk.e(), tile()), r.e()),
                    guarded(
                        and(lt(gk.e(), k.e()), lt(gr.e(), n.e())),
                        b,
                        add(mul(gk.e(), n.e()), gr.e()),
                    ),
                ),
            ],
        ),
        sync(),
    ];
    let fma = |x, y, z| intr(Intrinsic::Fma, vec![x, y, z], f32t);
    let acc_at = || add(mul(i.e(), u32(MICRO)), j.e());
    let compute = vec![
        for_(
            kk,
            [u32(0), u32(GEMM_TILE_K), u32(1)],
            None,
            vec![
                for_(
                    i,
                    micro(),
                    None,
                    vec![a_frag.store(
                        i.e(),
                        a_tile.at(add(
                            mul(kk.e(), tile()),
                            add(mul(ty.clone(), u32(MICRO)), i.e()),
                        )),
                    )],
                ),
                for_(
                    j,
                    micro(),
                    None,
                    vec![b_frag.store(
                        j.e(),
                        b_tile.at(add(
                            mul(kk.e(), tile()),
                            add(mul(tx.clone(), u32(MICRO)), j.e()),
                        )),
                    )],
                ),
                for_(
                    i,
                    micro(),
                    None,
                    vec![for_(
                        j,
                        micro(),
                        None,
                        vec![acc.store(
                            acc_at(),
                            fma(a_frag.at(i.e()), b_frag.at(j.e()), acc.at(acc_at())),
                        )],
                    )],
                ),
            ],
        ),
        sync(),
    ];
    let write_back = for_(
        i,
        micro(),
        None,
        vec![for_(
            j,
            micro(),
            None,
            vec![
                let_(gr, add(row0.e(), add(mul(ty.clone(), u32(MICRO)), i.e()))),
                let_(gk, add(col0.e(), add(mul(tx.clone(), u32(MICRO)), j.e()))),
                if_(
                    and(lt(gr.e(), m.e()), lt(gk.e(), n.e())),
                    vec![c.store(add(mul(gr.e(), n.e()), gk.e()), acc.at(acc_at()))],
                    vec![],
                ),
            ],
        )],
    );
    let mut k_loop = stage;
    k_loop.extend(compute);
    let body = vec![
        a_tile_decl,
        b_tile_decl,
        acc_decl,
        a_frag_decl,
        b_frag_decl,
        let_(t, add(mul(ty.clone(), u32(GEMM_TILE / MICRO)), tx.clone())),
        let_(row0, mul(bid(Dim::Y), tile())),
        let_(col0, mul(bid(Dim::X), tile())),
        for_(k0, [u32(0), k.e(), u32(GEMM_TILE_K)], None, k_loop),
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
