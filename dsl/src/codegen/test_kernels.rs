//! Test-only kernels in typed IR, one per generator feature; each is snapshotted and
//! compiled with NVRTC by `tests`.

use crate::ir::{BinOp, UnOp};
use crate::space::Config;
use crate::test_ir::*;
use crate::typed::{
    ArraySpace, AtomicOp, Builtin, Dim, Expr, Function, Intrinsic, Kernel, StmtKind,
};
use crate::types::{ScalarType, Type};

pub fn vector_add() -> Kernel {
    let mut f = FnBuilder::default();
    let a = f.slice_param("a", Type::F32, false);
    let b = f.slice_param("b", Type::F32, false);
    let out = f.slice_param("out", Type::F32, true);
    let n = f.value_param("n", Type::U32);
    let i = f.var("i", Type::U32);
    let body = vec![
        let_(i, add(mul(bid(Dim::X), u32(256)), tid(Dim::X))),
        if_(
            lt(i.e(), n.e()),
            vec![out.store(i.e(), add(a.at(i.e()), b.at(i.e())))],
            vec![],
        ),
    ];
    Kernel {
        symbol: "vector_add__BLOCK256".into(),
        config: Config::new().with("BLOCK", 256),
        block_dim: Some([256, 1, 1]),
        ..kernel(f.finish("vector_add", None, body), vec![])
    }
}

/// `warp_sum(v)`: a butterfly reduction over the warp with an unrolled loop.
fn warp_sum() -> Function {
    let mut f = FnBuilder::default();
    let v = f.value_param("v", Type::F32);
    let sum = f.var_mut("sum", Type::F32);
    let k = f.var("k", Type::U32);
    let partner = intr(
        Intrinsic::ShflXor,
        vec![sum.e(), bin(BinOp::Shr, u32(16), k.e())],
        Type::F32,
    );
    let body = vec![
        let_(sum, v.e()),
        for_(
            k,
            [u32(0), u32(5), u32(1)],
            Some(0),
            vec![set_op(sum, BinOp::Add, partner)],
        ),
        ret(Some(sum.e())),
    ];
    f.finish("warp_sum__f32", Some(Type::F32), body)
}

pub fn block_reduce() -> Kernel {
    let mut f = FnBuilder::default();
    let x = f.slice_param("x", Type::F32, false);
    let out = f.slice_param("out", Type::F32, true);
    let (partial, decl) = f.array("partial", Type::F32, 8, ArraySpace::Shared);
    let t = f.var("t", Type::U32);
    let i = f.var("i", Type::U32);
    let v = f.var_mut("v", Type::F32);
    let w = f.var_mut("w", Type::F32);
    let lane_id = builtin(Builtin::LaneId);
    let warp_total = vec![
        let_(w, select(lt(t.e(), u32(8)), partial.at(t.e()), lit(0.0f32))),
        set(w, call(0, vec![val(w.e())], Type::F32)),
        if_(
            eq(t.e(), u32(0)),
            vec![eval(out.atomic(AtomicOp::Add, u32(0), vec![w.e()]))],
            vec![],
        ),
    ];
    let body = vec![
        decl,
        let_(t, tid(Dim::X)),
        let_(i, add(mul(bid(Dim::X), u32(256)), t.e())),
        let_zero(v),
        if_(lt(i.e(), x.len()), vec![set(v, x.at(i.e()))], vec![]),
        set(v, call(0, vec![val(v.e())], Type::F32)),
        if_(
            eq(lane_id, u32(0)),
            vec![partial.store(bin(BinOp::Shr, t.e(), u32(5)), v.e())],
            vec![],
        ),
        sync(),
        if_(lt(t.e(), u32(32)), warp_total, vec![]),
    ];
    let body = f.finish("block_reduce", None, body);
    Kernel {
        symbol: "block_reduce__BLOCK256".into(),
        config: Config::new().with("BLOCK", 256),
        block_dim: Some([256, 1, 1]),
        ..kernel(body, vec![warp_sum()])
    }
}

pub fn unrolled_loops() -> Kernel {
    let mut f = FnBuilder::default();
    let x = f.slice_param("x", Type::I32, false);
    let out = f.slice_param("out", Type::I32, true);
    let n = f.value_param("n", Type::U32);
    let (acc, decl) = f.array("acc", Type::I32, 4, ArraySpace::Local);
    let j = f.var("j", Type::U32);
    let k = f.var_mut("k", Type::U32);
    let total = f.var_mut("total", Type::I32);
    let stride = gridded_stride();
    let body = vec![
        decl,
        for_(
            j,
            [u32(0), u32(4), u32(1)],
            Some(0),
            vec![acc.store_op(j.e(), BinOp::Add, x.at(j.e()))],
        ),
        let_(total, lit(0i32)),
        for_(
            k,
            [tid(Dim::X), mul(n.e(), u32(2)), stride],
            Some(4),
            vec![
                if_(
                    eq(bin(BinOp::BitAnd, k.e(), u32(1)), u32(1)),
                    vec![stmt(StmtKind::Continue)],
                    vec![if_(
                        lt(n.e(), k.e()),
                        vec![stmt(StmtKind::Break)],
                        vec![set_op(
                            total,
                            BinOp::Sub,
                            x.at(bin(BinOp::Rem, k.e(), n.e())),
                        )],
                    )],
                ),
                set_op(k, BinOp::Add, u32(1)),
            ],
        ),
        while_(
            lt(total.e(), lit(-100i32)),
            vec![set_op(total, BinOp::Shl, u32(1))],
        ),
        out.store_op(tid(Dim::X), BinOp::Mul, add(total.e(), acc.at(u32(3)))),
    ];
    let body = f.finish("unrolled", None, body);
    kernel(body, vec![])
}

fn gridded_stride() -> Expr {
    mul(
        builtin(Builtin::BlockDim(Dim::X)),
        builtin(Builtin::GridDim(Dim::X)),
    )
}

const NUMERIC: [ScalarType; 9] = [
    ScalarType::I32,
    ScalarType::U32,
    ScalarType::I64,
    ScalarType::U64,
    ScalarType::F32,
    ScalarType::F16,
    ScalarType::BF16,
    ScalarType::F8E4M3,
    ScalarType::F8E5M2,
];

/// Every cast between two scalar types, and the bitcasts between same-size types.
pub fn casts() -> Kernel {
    let mut f = FnBuilder::default();
    let inputs: Vec<Var> = ScalarType::ALL
        .iter()
        .map(|&t| f.value_param(&format!("x_{t}"), ty(t)))
        .collect();
    let mut body = Vec::new();
    for (from, input) in ScalarType::ALL.iter().zip(&inputs) {
        for to in ScalarType::ALL {
            if to != *from && !(to == ScalarType::Bool && from.is_float()) {
                let v = f.var(&format!("{from}_to_{to}"), ty(to));
                body.push(let_(v, cast(input.e(), to)));
            }
        }
    }
    let pairs = [
        (ScalarType::F32, ScalarType::U32),
        (ScalarType::F32, ScalarType::I32),
        (ScalarType::U32, ScalarType::F32),
        (ScalarType::I32, ScalarType::U32),
        (ScalarType::I64, ScalarType::U64),
        (ScalarType::F16, ScalarType::BF16),
        (ScalarType::BF16, ScalarType::F16),
        (ScalarType::F8E4M3, ScalarType::F8E5M2),
    ];
    for (from, to) in pairs {
        let v = f.var(&format!("bits_{from}_{to}"), ty(to));
        let input = inputs[ScalarType::ALL.iter().position(|&t| t == from).unwrap_or(0)];
        body.push(let_(v, bitcast(input.e(), to)));
    }
    let out = f.slice_param("out", Type::U64, true);
    body.push(out.store(u32(0), cast(inputs[9].e(), ScalarType::U64)));
    kernel(f.finish("casts", None, body), vec![])
}

/// Arithmetic, comparisons and math on every numeric type.
pub fn ops_every_type() -> Kernel {
    let mut f = FnBuilder::default();
    let mut body = Vec::new();
    for t in NUMERIC {
        let a = f.value_param(&format!("a_{t}"), ty(t));
        let b = f.value_param(&format!("b_{t}"), ty(t));
        let mut ops = vec![
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Rem,
            BinOp::Lt,
            BinOp::Eq,
        ];
        if t.is_int() {
            ops.extend([BinOp::BitAnd, BinOp::BitXor, BinOp::Shl, BinOp::Shr]);
        }
        for op in ops {
            let v = f.var(
                &format!("{}_{t}", super::ops::binop_name(op)),
                if op.is_comparison() {
                    Type::BOOL
                } else {
                    ty(t)
                },
            );
            body.push(let_(v, bin(op, a.e(), b.e())));
        }
        let v = f.var(&format!("neg_{t}"), ty(t));
        body.push(let_(
            v,
            un(if t.is_int() { UnOp::Not } else { UnOp::Neg }, a.e()),
        ));
        let mut math_ops = vec![Intrinsic::Min, Intrinsic::Max, Intrinsic::Abs];
        if t.is_float() {
            math_ops.extend([Intrinsic::Exp, Intrinsic::Sqrt, Intrinsic::Fma]);
        }
        for m in math_ops {
            let args = if m == Intrinsic::Fma {
                vec![a.e(), b.e(), a.e()]
            } else if matches!(m, Intrinsic::Min | Intrinsic::Max) {
                vec![a.e(), b.e()]
            } else {
                vec![a.e()]
            };
            let v = f.var(&format!("{}_{t}", format!("{m:?}").to_lowercase()), ty(t));
            body.push(let_(v, math(m, args)));
        }
        if t.is_signed_int() {
            let v = f.var_mut(&format!("neg2_{t}"), ty(t));
            body.push(let_(v, un(UnOp::Neg, a.e())));
            body.push(set_op(v, BinOp::Shl, u32(33)));
            body.push(set_op(v, BinOp::Mul, Expr::lit(ty(t), u64::MAX)));
        }
    }
    kernel(f.finish("ops_every_type", None, body), vec![])
}

/// FP8 quantization of `Vec4<f32>` loads, f16/bf16 math and conversions.
pub fn half_and_fp8() -> Kernel {
    let v4 = Type::Vector(ScalarType::F32, 4);
    let q4 = Type::Vector(ScalarType::F8E4M3, 4);
    let f16 = ty(ScalarType::F16);
    let bf16 = ty(ScalarType::BF16);
    let mut f = FnBuilder::default();
    let x = f.slice_param("x", v4, false);
    let q = f.slice_param("q", q4, true);
    let h = f.slice_param("h", f16, true);
    let scale = f.value_param("scale", Type::F32);
    let bias = f.value_param("bias", bf16);
    let i = f.var("i", Type::U32);
    let v = f.var_mut("v", v4);
    let y = f.var("y", f16);
    let z = f.var("z", bf16);
    let w = f.var("w", ty(ScalarType::F8E5M2));
    let one_f16 = Expr::lit(f16, 0x3c00);
    let body = vec![
        let_(i, global_x()),
        if_(lt(i.e(), x.len()), vec![ret(None)], vec![]),
        let_(
            v,
            mul(
                x.at(i.e()),
                make_vec(vec![scale.e(), scale.e(), scale.e(), scale.e()]),
            ),
        ),
        stmt(StmtKind::AssignLane {
            var: v.id,
            lane: 3,
            value: lit(f32::NAN),
        }),
        q.store(i.e(), cast(v.e(), q4)),
        let_(
            y,
            add(
                math(Intrinsic::Exp, vec![cast(lane(v.e(), 0), f16)]),
                one_f16,
            ),
        ),
        let_(
            z,
            math(Intrinsic::Fma, vec![bias.e(), bias.e(), cast(y.e(), bf16)]),
        ),
        let_(w, cast(lane(q.at(i.e()), 1), ScalarType::F8E5M2)),
        h.store_op(i.e(), BinOp::Add, cast(w.e(), f16)),
        h.store_op(q.len(), BinOp::Mul, cast(z.e(), f16)),
    ];
    let body = f.finish("quantize", None, body);
    kernel(body, vec![])
}

/// Atomics of every supported kind, warp votes, and shuffles of awkward types.
pub fn atomics_and_warps() -> Kernel {
    let mut f = FnBuilder::default();
    let counts = f.slice_param("counts", Type::U32, true);
    let ints = f.slice_param("ints", Type::I32, true);
    let floats = f.slice_param("floats", Type::F32, true);
    let big = f.slice_param("big", Type::U64, true);
    let sbig = f.slice_param("sbig", Type::I64, true);
    let flag = f.value_param("flag", Type::BOOL);
    let h = f.value_param("h", ty(ScalarType::F16));
    let e = f.value_param("e", ty(ScalarType::F8E5M2));
    let pair = f.value_param("pair", Type::Vector(ScalarType::F32, 2));
    let old = f.var("old", Type::U32);
    let lane_id = builtin(Builtin::LaneId);
    let mut body = vec![
        let_(old, counts.atomic(AtomicOp::Add, u32(0), vec![u32(1)])),
        eval(ints.atomic(AtomicOp::Min, u32(1), vec![lit(i32::MIN)])),
        eval(ints.atomic(
            AtomicOp::Max,
            lane_id.clone(),
            vec![cast(old.e(), Type::I32)],
        )),
        eval(counts.atomic(AtomicOp::Cas, u32(2), vec![u32(0), old.e()])),
        eval(big.atomic(AtomicOp::Cas, u32(0), vec![lit(0u64), lit(u64::MAX)])),
        eval(sbig.atomic(AtomicOp::Cas, u32(0), vec![lit(0i64), lit(1i64)])),
        eval(sbig.atomic(AtomicOp::Add, u32(1), vec![lit(-1i64)])),
        eval(floats.atomic(AtomicOp::Add, u32(0), vec![lit(0.5f32)])),
        eval(floats.atomic(AtomicOp::Cas, u32(1), vec![lit(0.0f32), lit(-1.0f32)])),
    ];
    let shuffles = [
        ("any", intr(Intrinsic::VoteAny, vec![flag.e()], Type::BOOL)),
        ("all", intr(Intrinsic::VoteAll, vec![flag.e()], Type::BOOL)),
        (
            "ballot",
            intr(Intrinsic::VoteBallot, vec![flag.e()], Type::U32),
        ),
        (
            "flag_x",
            intr(Intrinsic::ShflXor, vec![flag.e(), u32(1)], Type::BOOL),
        ),
        (
            "h_down",
            intr(
                Intrinsic::ShflDown,
                vec![h.e(), u32(2)],
                ty(ScalarType::F16),
            ),
        ),
        (
            "e_up",
            intr(
                Intrinsic::ShflUp,
                vec![e.e(), u32(4)],
                ty(ScalarType::F8E5M2),
            ),
        ),
        (
            "big_idx",
            intr(
                Intrinsic::ShflIdx,
                vec![cast(old.e(), Type::I64), u32(0)],
                Type::I64,
            ),
        ),
        (
            "pair_x",
            intr(Intrinsic::ShflXor, vec![pair.e(), u32(16)], pair.ty),
        ),
    ];
    for (name, value) in shuffles {
        let v = f.var(name, value.ty);
        body.push(let_(v, value));
    }
    let body = f.finish("atomics_and_warps", None, body);
    kernel(body, vec![])
}

/// Device functions taking slices (a kernel buffer and a shared array), one returning
/// nothing; and names that C would not accept as they are.
pub fn device_calls() -> Kernel {
    let mut d = FnBuilder::default();
    let a = d.slice_param("a", Type::F32, false);
    let b = d.slice_param("b", Type::F32, false);
    let acc = d.var_mut("acc", Type::F32);
    let i = d.var("i", Type::U32);
    let dot = d.finish(
        "dot",
        Some(Type::F32),
        vec![
            let_(acc, lit(0.0f32)),
            for_(
                i,
                [u32(0), a.len(), u32(1)],
                None,
                vec![set(
                    acc,
                    math(Intrinsic::Fma, vec![a.at(i.e()), b.at(i.e()), acc.e()]),
                )],
            ),
            ret(Some(acc.e())),
        ],
    );
    let mut d = FnBuilder::default();
    let out = d.slice_param("out", Type::F32, true);
    let value = d.value_param("value", Type::F32);
    let fill = d.finish("fill", None, vec![out.store(tid(Dim::X), value.e())]);

    let mut f = FnBuilder::default();
    let x = f.slice_param("x", Type::F32, false);
    let x_len = f.value_param("x_len", Type::U32);
    let out = f.slice_param("out", Type::F32, true);
    let (tile, decl) = f.array("tile", Type::F32, 32, ArraySpace::Shared);
    let int = f.var("int", Type::F32);
    let min = f.var("min", Type::U32);
    let body = vec![
        decl,
        eval(call(1, vec![tile.arg(), val(lit(1.0f32))], Type::BOOL)),
        sync(),
        let_(int, call(0, vec![x.arg(), tile.arg()], Type::F32)),
        let_(min, math(Intrinsic::Min, vec![x_len.e(), x.len()])),
        out.store(min.e(), int.e()),
    ];
    let body = f.finish("device_calls", None, body);
    Kernel {
        block_dim: Some([32, 1, 1]),
        ..kernel(body, vec![dot, fill])
    }
}

pub fn all_kernels() -> Vec<Kernel> {
    vec![
        vector_add(),
        block_reduce(),
        unrolled_loops(),
        casts(),
        ops_every_type(),
        half_and_fp8(),
        atomics_and_warps(),
        device_calls(),
    ]
}
