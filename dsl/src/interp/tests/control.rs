//! Divergent control flow: break, continue, return, device calls, lazy selects.

use crate::backend::{Arg, LaunchDims};
use crate::interp::build::{buffer, launch, read};
use crate::interp::{run, InterpOptions};
use crate::ir::BinOp;
use crate::test_ir::*;
use crate::typed::{Dim, Expr};
use crate::types::Type;

/// Per thread t: sum of j in 0..100 skipping multiples of 3, stopping when j == t
/// (a `while true` loop with continue and break), then `+ 1000` unless t is odd, in which
/// case the thread returns before the store of the extra value.
#[test]
fn break_continue_and_return_in_loops() {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let extra = f.slice_param("extra", Type::U32, true);
    let (t, j, s) = (
        f.var_mut("t", Type::U32),
        f.var_mut("j", Type::U32),
        f.var_mut("s", Type::U32),
    );
    let rem = |x: Expr, m| bin(BinOp::Rem, x, u32(m));
    let body = vec![
        let_(t, tid(Dim::X)),
        let_(s, u32(0)),
        let_(j, u32(0)),
        while_(
            lit(true),
            vec![
                if_(
                    bin(BinOp::Eq, j.e(), t.e()),
                    vec![stmt(crate::typed::StmtKind::Break)],
                    vec![],
                ),
                set_op(j, BinOp::Add, u32(1)),
                if_(
                    bin(BinOp::Eq, rem(j.e(), 3), u32(0)),
                    vec![stmt(crate::typed::StmtKind::Continue)],
                    vec![],
                ),
                set_op(s, BinOp::Add, j.e()),
            ],
        ),
        out.store(t.e(), s.e()),
        // A for loop whose body returns for odd threads at i == 2.
        for_(
            j,
            [u32(0), u32(5), u32(1)],
            None,
            vec![
                if_(
                    bin(
                        BinOp::BitAnd,
                        bin(BinOp::Eq, rem(t.e(), 2), u32(1)),
                        bin(BinOp::Eq, j.e(), u32(2)),
                    ),
                    vec![ret(None)],
                    vec![],
                ),
                extra.store_op(t.e(), BinOp::Add, u32(1)),
            ],
        ),
        extra.store_op(t.e(), BinOp::Add, u32(1000)),
    ];
    let k = kernel(f.finish("loops", None, body), vec![]);
    let (mut bo, mut be) = (buffer(&[0u32; 40]), buffer(&[0u32; 40]));
    launch(
        &k,
        LaunchDims::linear(1, 40),
        &mut [Arg::SliceMut(&mut bo), Arg::SliceMut(&mut be)],
    )
    .unwrap();
    let (o, e) = (read::<u32>(&bo), read::<u32>(&be));
    for t in 0..40u32 {
        let want: u32 = (1..=t).filter(|j| j % 3 != 0).sum();
        assert_eq!(o[t as usize], want, "thread {t}");
        assert_eq!(
            e[t as usize],
            if t % 2 == 1 { 2 } else { 1005 },
            "thread {t}"
        );
    }
}

/// `fn clamp_index(x: u32, len: u32, buf: &[u32]) -> u32 { if x >= len { return 0; } buf[x] * 2 }`
#[test]
fn device_function_with_early_return_and_memory_argument() {
    let mut d = FnBuilder::default();
    let x = d.value_param("x", Type::U32);
    let len = d.value_param("len", Type::U32);
    let buf = d.slice_param("buf", Type::U32, false);
    let device = d.finish(
        "clamp_index",
        Some(Type::U32),
        vec![
            if_(
                bin(BinOp::Ge, x.e(), len.e()),
                vec![ret(Some(u32(0)))],
                vec![],
            ),
            ret(Some(mul(buf.at(x.e()), u32(2)))),
        ],
    );
    let mut f = FnBuilder::default();
    let input = f.slice_param("input", Type::U32, false);
    let out = f.slice_param("out", Type::U32, true);
    let r = f.var_mut("r", Type::U32);
    let callv = |arg: Expr| call(0, vec![val(arg), val(input.len()), input.arg()], Type::U32);
    let body = vec![
        let_(r, callv(tid(Dim::X))),
        // A second call site of the same function, nested in an expression.
        out.store(tid(Dim::X), add(r.e(), callv(add(tid(Dim::X), u32(1))))),
    ];
    let k = kernel(f.finish("caller", None, body), vec![device]);
    let inb = buffer(&(0..10u32).map(|i| i * i).collect::<Vec<_>>());
    let mut ob = buffer(&[0u32; 16]);
    launch(
        &k,
        LaunchDims::linear(1, 16),
        &mut [Arg::Slice(&inb), Arg::SliceMut(&mut ob)],
    )
    .unwrap();
    let o = read::<u32>(&ob);
    let g = |x: u32| if x >= 10 { 0 } else { 2 * x * x };
    for t in 0..16u32 {
        assert_eq!(o[t as usize], g(t) + g(t + 1), "thread {t}");
    }
}

/// `i < n && buf[i] > 0` and `select(i < n, buf[i], 0)` read only in bounds.
#[test]
fn short_circuit_and_select_evaluate_only_selected_lanes() {
    let mut f = FnBuilder::default();
    let buf = f.slice_param("buf", Type::I32, false);
    let out = f.slice_param("out", Type::I32, true);
    let i = f.var_mut("i", Type::U32);
    let inb = || lt(i.e(), buf.len());
    let positive = bin(BinOp::And, inb(), bin(BinOp::Gt, buf.at(i.e()), lit(0i32)));
    let body = vec![
        let_(i, tid(Dim::X)),
        out.store(
            i.e(),
            add(
                select(inb(), buf.at(i.e()), lit(-100i32)),
                select(positive, lit(1000i32), lit(0i32)),
            ),
        ),
    ];
    let k = kernel(f.finish("guarded", None, body), vec![]);
    let inb_ = buffer(&[5i32, -3, 0, 7]);
    let mut ob = buffer(&[0i32; 8]);
    let mut args = [Arg::Slice(&inb_), Arg::SliceMut(&mut ob)];
    run(
        &k,
        &LaunchDims::linear(1, 8),
        &mut args,
        &InterpOptions::sequential(),
    )
    .unwrap();
    assert_eq!(
        read::<i32>(&ob),
        vec![1005, -3, 0, 1007, -100, -100, -100, -100]
    );
}

/// A loop whose trip count differs per thread, with a shared-memory handoff after it:
/// every thread must be back in lockstep at the barrier.
#[test]
fn divergent_loop_reconverges_before_barrier() {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let (tile, tile_decl) = f.array("tile", Type::U32, 64, crate::typed::ArraySpace::Shared);
    let (i, acc) = (f.var_mut("i", Type::U32), f.var_mut("acc", Type::U32));
    let body = vec![
        tile_decl,
        let_(acc, u32(0)),
        for_(
            i,
            [u32(0), tid(Dim::X), u32(1)],
            None,
            vec![set_op(acc, BinOp::Add, i.e())],
        ),
        tile.store(tid(Dim::X), acc.e()),
        sync(),
        out.store(
            tid(Dim::X),
            tile.at(bin(BinOp::BitXor, tid(Dim::X), u32(63))),
        ),
    ];
    let k = kernel(f.finish("reconverge", None, body), vec![]);
    let mut ob = buffer(&[0u32; 64]);
    launch(&k, LaunchDims::linear(1, 64), &mut [Arg::SliceMut(&mut ob)]).unwrap();
    let o = read::<u32>(&ob);
    for t in 0..64u32 {
        let src = t ^ 63;
        assert_eq!(o[t as usize], src * (src.max(1) - 1) / 2);
    }
}
