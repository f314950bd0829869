//! Whole kernels: memory, barriers, warp collectives, atomics, faults, and the sample GEMM.

use crate::backend::{Arg, LaunchDims};
use crate::interp::build::{buffer, launch, read};
use crate::interp::sample::{tiled_gemm, tiled_gemm_dims};
use crate::interp::{run, InterpError, InterpOptions};
use crate::ir::BinOp;
use crate::test_ir::*;
use crate::typed::{ArraySpace, AtomicOp, Dim, Expr, Intrinsic, Kernel};
use crate::types::Type;

/// `c[i] = a[i] + b[i]`, with an early return for `i >= n`.
fn vector_add() -> Kernel {
    let mut f = FnBuilder::default();
    let a = f.slice_param("a", Type::F32, false);
    let b = f.slice_param("b", Type::F32, false);
    let c = f.slice_param("c", Type::F32, true);
    let n = f.value_param("n", Type::U32);
    let i = f.var_mut("i", Type::U32);
    let body = vec![
        let_(i, global_x()),
        if_(bin(BinOp::Ge, i.e(), n.e()), vec![ret(None)], vec![]),
        c.store(i.e(), add(a.at(i.e()), b.at(i.e()))),
    ];
    kernel(f.finish("vector_add", None, body), vec![])
}

#[test]
fn vector_add_with_ragged_end() {
    let n = 1000usize;
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..n).map(|i| 0.5 * i as f32).collect();
    let (ba, bb, mut bc) = (buffer(&a), buffer(&b), buffer(&vec![0f32; n]));
    let mut args = [
        Arg::Slice(&ba),
        Arg::Slice(&bb),
        Arg::SliceMut(&mut bc),
        Arg::value(n as u32),
    ];
    launch(&vector_add(), LaunchDims::cover(n as u32, 256), &mut args).unwrap();
    let c: Vec<f32> = read(&bc);
    assert!(c.iter().enumerate().all(|(i, &v)| v == 1.5 * i as f32));
}

#[test]
fn out_of_bounds_read_names_buffer_thread_and_block() {
    let (ba, bb) = (buffer(&[0f32; 1024]), buffer(&[0f32; 1024]));
    let mut bc = buffer(&[0f32; 1024]);
    // n larger than the buffers: block 4 reads a[1024].
    let mut args = [
        Arg::Slice(&ba),
        Arg::Slice(&bb),
        Arg::SliceMut(&mut bc),
        Arg::value(2048u32),
    ];
    let err = launch(&vector_add(), LaunchDims::linear(8, 256), &mut args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel vector_add: out-of-bounds read of a[1024] (length 1024) by thread (0,0,0) of block \
         (4,0,0) at kernels/src/example.rs:1"
    );
}

#[test]
fn bad_arguments_are_reported_with_the_parameter() {
    let (ba, bb) = (buffer(&[0f32; 4]), buffer(&[0f32; 4]));
    let bc = buffer(&[0f32; 4]);
    let mut args = [
        Arg::Slice(&ba),
        Arg::Slice(&bb),
        Arg::Slice(&bc),
        Arg::value(4u32),
    ];
    let err = launch(&vector_add(), LaunchDims::linear(1, 4), &mut args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel vector_add: argument for parameter `c` should be &mut [f32] in host memory, got &[f32] of length 4"
    );
    let bi = buffer(&[0i32; 4]);
    let mut bc = buffer(&[0f32; 4]);
    let mut args = [
        Arg::Slice(&bi),
        Arg::Slice(&bb),
        Arg::SliceMut(&mut bc),
        Arg::value(4i32),
    ];
    let err = launch(&vector_add(), LaunchDims::linear(1, 4), &mut args).unwrap_err();
    assert!(
        matches!(err, InterpError::BadArgument { ref param, .. } if param == "a"),
        "{err}"
    );
}

/// Sums `x` per block: shared-memory tree down to one warp, then shuffles; thread 0 adds
/// the block's sum to `out[0]` atomically and stores it to `sums[block]`.
fn block_sum(threads: u32) -> Kernel {
    let mut f = FnBuilder::default();
    let x = f.slice_param("x", Type::F32, false);
    let sums = f.slice_param("sums", Type::F32, true);
    let total = f.slice_param("total", Type::F32, true);
    let (tile, tile_decl) = f.array("tile", Type::F32, threads, ArraySpace::Shared);
    let (t, s, v) = (
        f.var_mut("t", Type::U32),
        f.var_mut("s", Type::U32),
        f.var_mut("v", Type::F32),
    );
    let shfl = |v: Expr, d: u32| intr(Intrinsic::ShflDown, vec![v, u32(d)], Type::F32);
    let mut body = vec![
        tile_decl,
        let_(t, tid(Dim::X)),
        tile.store(t.e(), x.at(global_x())),
        sync(),
        let_(s, u32(threads / 2)),
        while_(
            bin(BinOp::Ge, s.e(), u32(32)),
            vec![
                if_(
                    lt(t.e(), s.e()),
                    vec![tile.store_op(t.e(), BinOp::Add, tile.at(add(t.e(), s.e())))],
                    vec![],
                ),
                sync(),
                set(s, bin(BinOp::Shr, s.e(), u32(1))),
            ],
        ),
    ];
    let mut warp = vec![let_(v, tile.at(t.e()))];
    for d in [16, 8, 4, 2, 1] {
        warp.push(set_op(v, BinOp::Add, shfl(v.e(), d)));
    }
    warp.push(if_(
        bin(BinOp::Eq, t.e(), u32(0)),
        vec![
            sums.store(bid(Dim::X), v.e()),
            eval(total.atomic(AtomicOp::Add, u32(0), vec![v.e()])),
        ],
        vec![],
    ));
    body.push(if_(lt(t.e(), u32(32)), warp, vec![]));
    kernel(f.finish("block_sum", None, body), vec![])
}

fn run_block_sum(options: &InterpOptions) -> (Vec<f32>, f32) {
    let blocks = 64;
    let x: Vec<f32> = (0..blocks * 256).map(|i| (i % 7) as f32).collect();
    let bx = buffer(&x);
    let (mut bs, mut bt) = (buffer(&vec![0f32; blocks]), buffer(&[0f32]));
    let mut args = [
        Arg::Slice(&bx),
        Arg::SliceMut(&mut bs),
        Arg::SliceMut(&mut bt),
    ];
    run(
        &block_sum(256),
        &LaunchDims::linear(blocks as u32, 256),
        &mut args,
        options,
    )
    .unwrap();
    (read(&bs), read::<f32>(&bt)[0])
}

#[test]
fn block_reduction_with_shared_memory_and_shuffles() {
    let (sums, total) = run_block_sum(&InterpOptions::default());
    for (b, &s) in sums.iter().enumerate() {
        let want: f32 = (b * 256..(b + 1) * 256).map(|i| (i % 7) as f32).sum();
        assert_eq!(s, want, "block {b}");
    }
    // Integer-valued partial sums are exact in f32, so any atomic order gives this total.
    assert_eq!(total, (0..64 * 256).map(|i| (i % 7) as f32).sum::<f32>());
    assert_eq!(run_block_sum(&InterpOptions::sequential()), (sums, total));
}

#[test]
fn sync_in_divergent_branch_is_reported() {
    let mut f = FnBuilder::default();
    let body = vec![if_(lt(tid(Dim::X), u32(16)), vec![sync()], vec![])];
    let k = kernel(f_finish(&mut f, "half_sync", body), vec![]);
    let err = launch(&k, LaunchDims::linear(2, 64), &mut []).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(
        "kernel half_sync: sync_threads() in block (0,0,0) is reached by threads [(0,0,0), (1,0,0)"
    ), "{msg}");
    assert!(
        msg.contains("and 8 more] but not by threads [(16,0,0), (17,0,0)"),
        "{msg}"
    );
    assert!(
        matches!(err, InterpError::BarrierDivergence { ref missing, .. } if missing.total == 48)
    );
}

fn f_finish(
    f: &mut FnBuilder,
    name: &str,
    body: Vec<crate::typed::Stmt>,
) -> crate::typed::Function {
    std::mem::take(f).finish(name, None, body)
}

#[test]
fn exited_threads_do_not_block_a_barrier() {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let body = vec![
        if_(
            bin(BinOp::Ge, tid(Dim::X), u32(40)),
            vec![ret(None)],
            vec![],
        ),
        sync(),
        out.store(tid(Dim::X), u32(1)),
    ];
    let k = kernel(f_finish(&mut f, "early_exit", body), vec![]);
    let mut b = buffer(&[0u32; 64]);
    launch(&k, LaunchDims::linear(1, 64), &mut [Arg::SliceMut(&mut b)]).unwrap();
    assert_eq!(read::<u32>(&b).iter().sum::<u32>(), 40);
}

#[test]
fn shuffle_in_divergent_warp_is_reported() {
    let mut f = FnBuilder::default();
    let v = f.var_mut("v", Type::U32);
    let shfl = intr(Intrinsic::ShflXor, vec![tid(Dim::X), u32(1)], Type::U32);
    let body = vec![if_(lt(tid(Dim::X), u32(8)), vec![let_(v, shfl)], vec![])];
    let k = kernel(f_finish(&mut f, "half_warp", body), vec![]);
    let err = launch(&k, LaunchDims::linear(1, 64), &mut []).unwrap_err();
    match &err {
        InterpError::WarpDivergence {
            warp,
            active,
            missing,
            collective,
            ..
        } => {
            assert_eq!((*warp, *collective), (0, "warp_shfl_xor"));
            assert_eq!(active.to_vec(), (0..8).collect::<Vec<u32>>());
            assert_eq!(missing.to_vec(), (8..32).collect::<Vec<u32>>());
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err
        .to_string()
        .contains("warp_shfl_xor in warp 0 of block (0,0,0)"));
}

#[test]
fn shuffles_and_votes_follow_ptx_lane_rules() {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let t = tid(Dim::X);
    let sh = |i, d| intr(i, vec![t.clone(), u32(d)], Type::U32);
    let even = bin(BinOp::Eq, bin(BinOp::BitAnd, t.clone(), u32(1)), u32(0));
    let vote = |i| {
        intr(
            i,
            vec![even.clone()],
            if i == Intrinsic::VoteBallot {
                Type::U32
            } else {
                Type::BOOL
            },
        )
    };
    let idx = |k: u32| add(mul(t.clone(), u32(6)), u32(k));
    let body = vec![
        out.store(idx(0), sh(Intrinsic::ShflDown, 4)),
        out.store(idx(1), sh(Intrinsic::ShflUp, 4)),
        out.store(idx(2), sh(Intrinsic::ShflIdx, 35)),
        out.store(idx(3), sh(Intrinsic::ShflXor, 3)),
        out.store(idx(4), vote(Intrinsic::VoteBallot)),
        out.store(
            idx(5),
            cast(vote(Intrinsic::VoteAny), crate::types::ScalarType::U32),
        ),
    ];
    let k = kernel(f_finish(&mut f, "lanes", body), vec![]);
    let mut b = buffer(&[0u32; 64 * 6]);
    launch(&k, LaunchDims::linear(1, 64), &mut [Arg::SliceMut(&mut b)]).unwrap();
    let o = read::<u32>(&b);
    for t in 0..64u32 {
        let (lane, base) = (t % 32, t - t % 32);
        let row = &o[t as usize * 6..][..6];
        assert_eq!(row[0], if lane + 4 < 32 { t + 4 } else { t }, "down {t}");
        assert_eq!(row[1], if lane >= 4 { t - 4 } else { t }, "up {t}");
        assert_eq!(row[2], base + 3, "idx {t}");
        assert_eq!(row[3], base + (lane ^ 3), "xor {t}");
        assert_eq!(row[4], 0x5555_5555, "ballot {t}");
        assert_eq!(row[5], 1);
    }
}

/// PTX reads only the low 5 bits of a shuffle's lane operand: a delta of 36 is a delta of
/// 4, a xor mask of 35 is 3 (the interpreter took the whole value until the host harness
/// disagreed).
#[test]
fn shuffle_lane_operands_use_their_low_five_bits() {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let t = tid(Dim::X);
    let sh = |i, d| intr(i, vec![t.clone(), u32(d)], Type::U32);
    let idx = |k: u32| add(mul(t.clone(), u32(3)), u32(k));
    let body = vec![
        out.store(idx(0), sh(Intrinsic::ShflDown, 36)),
        out.store(idx(1), sh(Intrinsic::ShflUp, 0xffff_ffe4)),
        out.store(idx(2), sh(Intrinsic::ShflXor, 35)),
    ];
    let k = kernel(f_finish(&mut f, "lanes5", body), vec![]);
    let mut b = buffer(&[0u32; 32 * 3]);
    launch(&k, LaunchDims::linear(1, 32), &mut [Arg::SliceMut(&mut b)]).unwrap();
    let o = read::<u32>(&b);
    for t in 0..32u32 {
        let row = &o[t as usize * 3..][..3];
        assert_eq!(
            row[0],
            if t + 4 < 32 { t + 4 } else { t },
            "down 36, lane {t}"
        );
        assert_eq!(
            row[1],
            if t >= 4 { t - 4 } else { t },
            "up 0xffffffe4, lane {t}"
        );
        assert_eq!(row[2], t ^ 3, "xor 35, lane {t}");
    }
}

#[test]
fn shuffle_from_an_exited_lane_is_reported() {
    let mut f = FnBuilder::default();
    let v = f.var_mut("v", Type::U32);
    let body = vec![
        if_(
            bin(BinOp::Ge, tid(Dim::X), u32(20)),
            vec![ret(None)],
            vec![],
        ),
        let_(
            v,
            intr(Intrinsic::ShflDown, vec![tid(Dim::X), u32(4)], Type::U32),
        ),
    ];
    let k = kernel(f_finish(&mut f, "exited_src", body), vec![]);
    let err = launch(&k, LaunchDims::linear(1, 32), &mut []).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel exited_src: warp_shfl_down by thread (16,0,0) of block (0,0,0) reads lane 20 of \
         its warp, which has exited or does not exist"
    );
}

fn atomics_kernel() -> Kernel {
    let mut f = FnBuilder::default();
    let fs = f.slice_param("fsum", Type::F32, true);
    let is = f.slice_param("isum", Type::I32, true);
    let us = f.slice_param("ustats", Type::U32, true);
    let claim = f.slice_param("claim", Type::U32, true);
    let g = f.var_mut("g", Type::U32);
    let gi = cast(g.e(), crate::types::ScalarType::I32);
    let body = vec![
        let_(g, global_x()),
        eval(fs.atomic(AtomicOp::Add, u32(0), vec![lit(0.5f32)])),
        eval(is.atomic(AtomicOp::Add, u32(0), vec![bin(BinOp::Sub, lit(0i32), gi)])),
        eval(us.atomic(AtomicOp::Add, u32(0), vec![g.e()])),
        eval(us.atomic(AtomicOp::Min, u32(1), vec![add(g.e(), u32(5))])),
        eval(us.atomic(AtomicOp::Max, u32(2), vec![g.e()])),
        // Exactly one thread wins the compare-and-swap from u32::MAX.
        if_(
            bin(
                BinOp::Eq,
                claim.atomic(AtomicOp::Cas, u32(0), vec![u32(u32::MAX), g.e()]),
                u32(u32::MAX),
            ),
            vec![eval(us.atomic(AtomicOp::Add, u32(3), vec![u32(1)]))],
            vec![],
        ),
    ];
    kernel(f.finish("atomics", None, body), vec![])
}

#[test]
fn atomics_give_exact_totals_across_parallel_blocks() {
    let (blocks, threads) = (64u32, 128u32);
    let n = (blocks * threads) as u64;
    let (mut f, mut i) = (buffer(&[0f32]), buffer(&[0i32]));
    let (mut u, mut c) = (buffer(&[0u32, u32::MAX, 0, 0]), buffer(&[u32::MAX]));
    let mut args = [
        Arg::SliceMut(&mut f),
        Arg::SliceMut(&mut i),
        Arg::SliceMut(&mut u),
        Arg::SliceMut(&mut c),
    ];
    launch(
        &atomics_kernel(),
        LaunchDims::linear(blocks, threads),
        &mut args,
    )
    .unwrap();
    assert_eq!(read::<f32>(&f)[0], 0.5 * n as f32);
    assert_eq!(read::<i32>(&i)[0], -((n * (n - 1) / 2) as i64 as i32));
    let stats = read::<u32>(&u);
    assert_eq!(stats, vec![(n * (n - 1) / 2) as u32, 5, n as u32 - 1, 1]);
    assert!(read::<u32>(&c)[0] < n as u32);
}

fn gemm_reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).fold(0f32, |acc, p| a[i * k + p].mul_add(b[p * n + j], acc));
        }
    }
    c
}

#[test]
fn tiled_gemm_matches_reference_bit_for_bit_on_ragged_shapes() {
    for (m, n, k) in [(70usize, 50usize, 40usize), (64, 64, 16), (1, 3, 1)] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 16.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 8.0)
            .collect();
        let (ba, bb, mut bc) = (buffer(&a), buffer(&b), buffer(&vec![0f32; m * n]));
        let mut args = [
            Arg::Slice(&ba),
            Arg::Slice(&bb),
            Arg::SliceMut(&mut bc),
            Arg::value(m as u32),
            Arg::value(n as u32),
            Arg::value(k as u32),
        ];
        launch(
            &tiled_gemm(),
            tiled_gemm_dims(m as u32, n as u32),
            &mut args,
        )
        .unwrap();
        assert_eq!(
            read::<f32>(&bc),
            gemm_reference(&a, &b, m, n, k),
            "{m}x{n}x{k}"
        );
    }
}

#[test]
fn declared_block_shape_is_enforced() {
    let (ba, bb, mut bc) = (buffer(&[0f32; 4]), buffer(&[0f32; 4]), buffer(&[0f32; 4]));
    let mut args = [
        Arg::Slice(&ba),
        Arg::Slice(&bb),
        Arg::SliceMut(&mut bc),
        Arg::value(2u32),
        Arg::value(2u32),
        Arg::value(2u32),
    ];
    let err = launch(&tiled_gemm(), LaunchDims::linear(1, 256), &mut args).unwrap_err();
    assert!(matches!(err, InterpError::BadLaunch { .. }), "{err}");
}

/// A cp.async into a global buffer (which the resolver rejects; hand-built here) is an
/// error at the copy, not a copy silently dropped at the wait.
#[test]
fn cp_async_into_global_memory_is_reported() {
    let mut f = FnBuilder::default();
    let src = f.slice_param("src", Type::F32, false);
    let dst = f.slice_param("dst", Type::F32, true);
    let copy = crate::typed::ExprKind::CopyAsync {
        dst: dst.mem,
        dst_index: Box::new(u32(0)),
        src: src.mem,
        src_index: Box::new(u32(0)),
        bytes: 16,
        src_bytes: None,
        evict_first: false,
    };
    let copy = Expr {
        kind: copy,
        ty: Type::BOOL,
    };
    let body = vec![
        eval(copy),
        eval(intr(Intrinsic::CpAsyncCommit, vec![], Type::BOOL)),
    ];
    let k = kernel(f.finish("copy_to_global", None, body), vec![]);
    let (bs, mut bd) = (buffer(&[1f32; 4]), buffer(&[0f32; 4]));
    let mut args = [Arg::Slice(&bs), Arg::SliceMut(&mut bd)];
    let err = launch(&k, LaunchDims::linear(1, 1), &mut args).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cp_async_16 into `dst`"), "{msg}");
    assert!(msg.contains("not shared memory"), "{msg}");
}
