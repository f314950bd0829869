//! Expansion tests: kernels and device fns defined with the macros, checked through the
//! `KernelDef` / `DeviceFnDef` they build. Generated code must not warn in user crates.
#![deny(warnings)]

use warpforge_dsl::ir::{BinOp, ExprKind, KernelDef, ParamType, Span, StmtKind};
use warpforge_dsl::prelude::*;
use warpforge_dsl::types::{ScalarType, Type};
use warpforge_macros::{device, kernel};

const VECTOR_ADD_LINE: u32 = line!() + 2;
#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512]))]
pub fn vector_add<const BLOCK: u32>(a: &[f32], b: &[f32], c: &mut [f32], n: u32) {
    let i = block_idx_x() * BLOCK + thread_idx_x();
    if i < n {
        c[i] = a[i] + b[i];
    }
}

/// Sum over the warp by butterfly shuffles.
#[device]
fn warp_sum(v: f32) -> f32 {
    let mut x = v;
    #[unroll]
    for k in 0..5 {
        let s = 16u32 >> k;
        x += warp_shfl_xor(x, s);
    }
    x
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256]))]
pub fn block_sum<const BLOCK: u32>(x: &[f32], out: &mut [f32], n: u32) {
    let mut partial = shared_array::<f32>(BLOCK / 32);
    let i = block_idx_x() * BLOCK + thread_idx_x();
    let v = if i < n { x[i] } else { 0.0 };
    let w = warp_sum(v);
    if lane_id() == 0 {
        partial[thread_idx_x() / 32] = w;
    }
    sync_threads();
    if thread_idx_x() < 32 {
        let mut t = if thread_idx_x() < BLOCK / 32 {
            partial[thread_idx_x()]
        } else {
            0.0f32
        };
        t = warp_sum(t);
        if thread_idx_x() == 0 {
            atomic_add(out, 0, t);
        }
    }
}

const GEMM_LINE: u32 = line!() + 9;
#[kernel(
    block = (TX, TY),
    tune(TX = [8, 16], TY = [8, 16], TM = [1, 2, 4]),
    default(TX = 16, TM = 2),
    constraint = TX * TY >= 128,
    constraint = TM <= TX / 4
)]
#[allow(clippy::too_many_arguments)]
pub fn gemm<const TX: u32, const TY: u32, const TM: u32>(
    a: &[f16],
    b: &[f16],
    c: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
) {
    let row0 = (block_idx_y() * TY + thread_idx_y()) * TM;
    let col = block_idx_x() * TX + thread_idx_x();
    let mut acc = local_array::<f32>(TM);
    for kk in 0..k {
        let bv = b[kk * n + col].to_f32();
        #[unroll]
        for r in 0..TM {
            acc[r] = a[(row0 + r) * k + kk].to_f32().mul_add(bv, acc[r]);
        }
    }
    #[unroll(2)]
    for r in (0..TM).step_by(1) {
        if row0 + r < m && col < n {
            c[(row0 + r) * n + col] = acc[r];
        } else if row0 + r < m {
            continue;
        } else {
            break;
        }
    }
}

#[device]
fn clamp_index<const LIMIT: u32>(i: u32) -> u32 {
    if i >= LIMIT {
        return LIMIT - 1;
    }
    i
}

#[device]
fn fill(buf: &mut [f32], len: u32, value: f32) {
    let mut j = 0u32;
    while j < len {
        buf[j] = value;
        j += 1;
    }
}

mod helpers {
    use warpforge_macros::device;

    #[device]
    pub fn scale_store(out: &mut [f32], i: u32, v: f32) {
        out[i] = v * 2.0;
    }
}

const GATHER_LINE: u32 = line!() + 2;
#[kernel(block = (64), default(LIMIT = 1024))]
pub fn gather<const LIMIT: u32>(src: &[f32], idx: &[u32], dst: &mut [f32], n: u32) {
    let i = block_idx_x() * 64 + thread_idx_x();
    if i >= n {
        return;
    }
    let mut tile = shared_array::<f32>(64);
    fill(&mut tile, 64, 0.0);
    let j = clamp_index::<LIMIT>(idx[i]);
    tile[thread_idx_x()] = src[j];
    helpers::scale_store(dst, i, tile[thread_idx_x()]);
}

#[kernel]
fn copy_vec4(src: &[Vec4<f32>], dst: &mut [Vec4<f32>], half_out: &mut [f16], n: u32) {
    let i = block_idx_x() * block_dim_x() + thread_idx_x();
    if i < n {
        let v = src[i];
        dst[i] = Vec4::new(v.x * 2.0, v.y, v.z, f32::INFINITY.min(v.w));
        half_out[i] = f16::from_f32(v.x);
        let _ = warp_ballot(i as f32 > -1.5e3);
    }
}

/// Never used: generated items must not warn about dead code.
#[kernel(tune(STEP = [32, 64]))]
fn unused_kernel<const STEP: u32>(x: &[f32], y: &mut [f32], n: u32) {
    let i = thread_idx_x() as i32;
    if i == 0 {
        y[0] = x[0] + x[1u32] + x[i as u32];
    }
    for k in (0..n).step_by(STEP) {
        y[k] = unused_device(x[k]);
    }
}

#[device]
fn unused_device(v: f32) -> f32 {
    let t = { v * v };
    rsqrt(t)
}

fn kernel(def: &KernelDef) -> &KernelDef {
    def
}

#[test]
fn vector_add_signature_and_space() {
    let def = kernel(vector_add::def());
    assert_eq!(def.name, "vector_add");
    assert!(def.file.ends_with("kernels.rs"), "{}", def.file);
    assert_eq!(def.line, VECTOR_ADD_LINE);
    assert_eq!(def.consts.len(), 1);
    assert_eq!(def.consts[0].name, "BLOCK");
    assert_eq!(def.consts[0].ty, ScalarType::U32);
    assert_eq!(def.consts[0].span.line, VECTOR_ADD_LINE);
    let params: Vec<(&str, ParamType)> =
        def.params.iter().map(|p| (p.name.as_str(), p.ty)).collect();
    assert_eq!(
        params,
        [
            (
                "a",
                ParamType::Slice {
                    elem: Type::F32,
                    mutable: false
                }
            ),
            (
                "b",
                ParamType::Slice {
                    elem: Type::F32,
                    mutable: false
                }
            ),
            (
                "c",
                ParamType::Slice {
                    elem: Type::F32,
                    mutable: true
                }
            ),
            ("n", ParamType::Value(Type::U32)),
        ]
    );
    let block = def.block_dim.as_ref().expect("block = (BLOCK)");
    assert!(matches!(&block[..], [e] if matches!(&e.kind, ExprKind::Path(p) if p == "BLOCK")));
    let configs = vector_add::space().configs();
    let blocks: Vec<i64> = configs.iter().map(|c| c.get("BLOCK").unwrap()).collect();
    assert_eq!(blocks, [128, 256, 512]);
    assert_eq!(
        vector_add::default_config(),
        Config::new().with("BLOCK", 128)
    );
    // Same value, built once.
    assert!(std::ptr::eq(vector_add::def(), vector_add::def()));
}

#[test]
fn vector_add_body_shape_and_spans() {
    let body = &vector_add::def().body;
    assert!(body.tail.is_none());
    assert_eq!(body.stmts.len(), 2);
    let let_i = &body.stmts[0];
    assert_eq!(let_i.span, Span::new(VECTOR_ADD_LINE + 1, 4));
    let StmtKind::Let {
        name,
        mutable: false,
        ty: None,
        init: Some(init),
    } = &let_i.kind
    else {
        panic!("expected `let i = ..`, got {:?}", let_i.kind);
    };
    assert_eq!(name, "i");
    let ExprKind::Binary(BinOp::Add, lhs, rhs) = &init.kind else {
        panic!("{:?}", init.kind)
    };
    assert!(
        matches!(&rhs.kind, ExprKind::Call { func, args, .. } if func == "thread_idx_x" && args.is_empty())
    );
    let ExprKind::Binary(BinOp::Mul, call, block) = &lhs.kind else {
        panic!("{:?}", lhs.kind)
    };
    assert!(matches!(&call.kind, ExprKind::Call { func, .. } if func == "block_idx_x"));
    assert!(matches!(&block.kind, ExprKind::Path(p) if p == "BLOCK"));
    // Columns are 0-based: `block_idx_x()` starts after `    let i = `.
    assert_eq!(init.span, Span::new(VECTOR_ADD_LINE + 1, 12));

    let if_stmt = &body.stmts[1];
    assert_eq!(if_stmt.span.line, VECTOR_ADD_LINE + 2);
    let StmtKind::If {
        cond,
        then,
        els: None,
    } = &if_stmt.kind
    else {
        panic!("{:?}", if_stmt.kind)
    };
    assert!(matches!(&cond.kind, ExprKind::Binary(BinOp::Lt, ..)));
    let StmtKind::Assign {
        place,
        op: None,
        value,
    } = &then.stmts[0].kind
    else {
        panic!()
    };
    assert_eq!(then.stmts[0].span.line, VECTOR_ADD_LINE + 3);
    assert!(
        matches!(&place.kind, ExprKind::Index(base, _) if matches!(&base.kind, ExprKind::Path(p) if p == "c"))
    );
    assert!(matches!(&value.kind, ExprKind::Binary(BinOp::Add, ..)));
}

#[test]
fn launcher_has_the_typed_signature() {
    type Launch = fn(
        &Device,
        &Config,
        LaunchDims,
        &Buffer<f32>,
        &Buffer<f32>,
        &mut Buffer<f32>,
        u32,
    ) -> Result<(), warpforge_dsl::Error>;
    let _: Launch = vector_add::launch;
    type Vec4Launch = fn(
        &Device,
        &Config,
        LaunchDims,
        &Buffer<f32>,
        &mut Buffer<f32>,
        &mut Buffer<f16>,
        u32,
    ) -> Result<(), warpforge_dsl::Error>;
    let _: Vec4Launch = copy_vec4::launch;
}

#[test]
fn device_fn_with_unrolled_shuffle_loop() {
    let def = warp_sum::def();
    assert_eq!(def.name, "warp_sum");
    assert_eq!(def.ret, Some(Type::F32));
    assert_eq!(def.params[0].ty, ParamType::Value(Type::F32));
    let body = &def.body;
    assert!(matches!(&body.tail.as_deref().unwrap().kind, ExprKind::Path(p) if p == "x"));
    let StmtKind::For {
        var,
        inclusive: false,
        step: None,
        unroll: Some(0),
        body: inner,
        start,
        end,
    } = &body.stmts[1].kind
    else {
        panic!("{:?}", body.stmts[1].kind)
    };
    assert_eq!(var, "k");
    assert!(matches!(start.kind, ExprKind::Int(0, None)));
    assert!(matches!(end.kind, ExprKind::Int(5, None)));
    let StmtKind::Let {
        init: Some(shift), ..
    } = &inner.stmts[0].kind
    else {
        panic!()
    };
    let ExprKind::Binary(BinOp::Shr, sixteen, _) = &shift.kind else {
        panic!("{:?}", shift.kind)
    };
    assert!(matches!(
        sixteen.kind,
        ExprKind::Int(16, Some(ScalarType::U32))
    ));
    let StmtKind::Assign {
        op: Some(BinOp::Add),
        value,
        ..
    } = &inner.stmts[1].kind
    else {
        panic!()
    };
    assert!(
        matches!(&value.kind, ExprKind::Call { func, args, .. } if func == "warp_shfl_xor" && args.len() == 2)
    );
}

#[test]
fn reduction_calls_device_fns_and_intrinsics() {
    let def = block_sum::def();
    let body = &def.body;
    let StmtKind::Let {
        name,
        mutable: true,
        init: Some(init),
        ..
    } = &body.stmts[0].kind
    else {
        panic!()
    };
    assert_eq!(name, "partial");
    let ExprKind::Call {
        func,
        generics,
        args,
    } = &init.kind
    else {
        panic!()
    };
    assert_eq!(
        (func.as_str(), generics.as_slice(), args.len()),
        ("shared_array", &[Type::F32][..], 1)
    );
    // `let v = if i < n { x[i] } else { 0.0 };`
    let StmtKind::Let { init: Some(v), .. } = &body.stmts[2].kind else {
        panic!()
    };
    let ExprKind::If { then, els, .. } = &v.kind else {
        panic!("{:?}", v.kind)
    };
    assert!(matches!(
        then.tail.as_deref().unwrap().kind,
        ExprKind::Index(..)
    ));
    assert!(matches!(els.tail.as_deref().unwrap().kind, ExprKind::Float(f, None) if f == 0.0));
    // `let w = warp_sum(v);`
    let StmtKind::Let { init: Some(w), .. } = &body.stmts[3].kind else {
        panic!()
    };
    let ExprKind::CallDevice {
        def: callee,
        consts,
        args,
    } = &w.kind
    else {
        panic!("{:?}", w.kind)
    };
    assert_eq!(callee().name, "warp_sum");
    assert!(consts.is_empty());
    assert_eq!(args.len(), 1);
    assert!(
        matches!(&body.stmts[5].kind, StmtKind::Expr(e) if matches!(&e.kind, ExprKind::Call { func, .. } if func == "sync_threads"))
    );
}

#[test]
fn gemm_space_defaults_and_constraints() {
    let def = gemm::def();
    assert_eq!(def.line, GEMM_LINE);
    let names: Vec<&str> = def.consts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["TX", "TY", "TM"]);
    assert_eq!(def.block_dim.as_ref().map(Vec::len), Some(2));
    let space = gemm::space();
    assert_eq!(space.constraints.len(), 2);
    assert_eq!(space.constraints[0].text, "TX * TY >= 128");
    assert_eq!(space.constraints[1].text, "TM <= TX / 4");
    let configs = space.configs();
    assert_eq!(configs.len(), 8, "{configs:?}");
    for c in &configs {
        let (tx, ty, tm) = (
            c.get("TX").unwrap(),
            c.get("TY").unwrap(),
            c.get("TM").unwrap(),
        );
        assert!(tx * ty >= 128 && tm <= tx / 4, "{c}");
    }
    let default = gemm::default_config();
    assert_eq!(
        default,
        Config::new().with("TX", 16).with("TY", 8).with("TM", 2)
    );
    assert!(space.check_member(&default).is_ok());
    let bad = Config::new().with("TX", 8).with("TY", 8).with("TM", 1);
    assert_eq!(space.satisfies(&bad), Err("TX * TY >= 128".to_string()));
}

#[test]
fn gemm_loops_record_unroll_and_step() {
    let body = &gemm::def().body;
    let StmtKind::For {
        unroll: None,
        body: outer,
        ..
    } = &body.stmts[3].kind
    else {
        panic!()
    };
    assert_eq!(body.stmts[3].span.line, GEMM_LINE + 11);
    let StmtKind::For {
        var,
        unroll: Some(0),
        end,
        body: inner,
        ..
    } = &outer.stmts[1].kind
    else {
        panic!()
    };
    assert_eq!(var, "r");
    assert!(matches!(&end.kind, ExprKind::Path(p) if p == "TM"));
    let StmtKind::Assign { value, .. } = &inner.stmts[0].kind else {
        panic!()
    };
    let ExprKind::MethodCall {
        receiver,
        method,
        args,
        ..
    } = &value.kind
    else {
        panic!()
    };
    assert_eq!((method.as_str(), args.len()), ("mul_add", 2));
    assert!(matches!(&receiver.kind, ExprKind::MethodCall { method, .. } if method == "to_f32"));
    let StmtKind::For {
        step: Some(step),
        unroll: Some(2),
        body: last,
        ..
    } = &body.stmts[4].kind
    else {
        panic!()
    };
    assert!(matches!(step.kind, ExprKind::Int(1, None)));
    // `if .. {} else if .. { continue; } else { break; }`
    let StmtKind::If { els: Some(els), .. } = &last.stmts[0].kind else {
        panic!()
    };
    let StmtKind::If {
        then,
        els: Some(final_els),
        ..
    } = &els.stmts[0].kind
    else {
        panic!()
    };
    assert!(matches!(then.stmts[0].kind, StmtKind::Continue));
    assert!(matches!(final_els.stmts[0].kind, StmtKind::Break));
    assert_eq!(
        gemm::def().params[0].ty,
        ParamType::Slice {
            elem: Type::Scalar(ScalarType::F16),
            mutable: false
        }
    );
}

#[test]
fn device_calls_with_consts_early_return_and_arrays() {
    let def = gather::def();
    assert_eq!(def.line, GATHER_LINE);
    // `default(LIMIT = 1024)` without a list: a one-value tunable.
    assert_eq!(gather::default_config(), Config::new().with("LIMIT", 1024));
    assert_eq!(gather::space().configs().len(), 1);
    let body = &def.body;
    let StmtKind::If { then, .. } = &body.stmts[1].kind else {
        panic!()
    };
    assert!(matches!(then.stmts[0].kind, StmtKind::Return(None)));
    assert_eq!(then.stmts[0].span, Span::new(GATHER_LINE + 3, 8));
    // `fill(&mut tile, 64, 0.0)`: the array is passed by name.
    let StmtKind::Expr(fill_call) = &body.stmts[3].kind else {
        panic!()
    };
    let ExprKind::CallDevice {
        def: fill_def,
        args,
        ..
    } = &fill_call.kind
    else {
        panic!()
    };
    assert!(matches!(&args[0].kind, ExprKind::Path(p) if p == "tile"));
    let fill_def = fill_def();
    assert_eq!(
        fill_def.params[0].ty,
        ParamType::Slice {
            elem: Type::F32,
            mutable: true
        }
    );
    assert!(matches!(
        fill_def.body.stmts[1].kind,
        StmtKind::While { .. }
    ));
    // `clamp_index::<LIMIT>(idx[i])`
    let StmtKind::Let { init: Some(j), .. } = &body.stmts[4].kind else {
        panic!()
    };
    let ExprKind::CallDevice {
        def: clamp, consts, ..
    } = &j.kind
    else {
        panic!()
    };
    assert!(matches!(&consts[..], [c] if matches!(&c.kind, ExprKind::Path(p) if p == "LIMIT")));
    let clamp = clamp();
    assert_eq!(clamp.consts[0].name, "LIMIT");
    assert_eq!(clamp.ret, Some(Type::U32));
    let StmtKind::If { then, .. } = &clamp.body.stmts[0].kind else {
        panic!()
    };
    assert!(
        matches!(&then.stmts[0].kind, StmtKind::Return(Some(e)) if matches!(e.kind, ExprKind::Binary(BinOp::Sub, ..)))
    );
    assert!(matches!(&clamp.body.tail.as_deref().unwrap().kind, ExprKind::Path(p) if p == "i"));
    // `helpers::scale_store(..)` resolves to `helpers::scale_store::def`.
    let StmtKind::Expr(store) = &body.stmts[6].kind else {
        panic!()
    };
    let ExprKind::CallDevice { def: store, .. } = &store.kind else {
        panic!()
    };
    assert_eq!(store().name, "scale_store");
}

#[test]
fn vectors_casts_and_type_constants() {
    let def = copy_vec4::def();
    assert!(def.block_dim.is_none());
    assert!(def.space.params.is_empty());
    let vec4 = Type::Vector(ScalarType::F32, 4);
    assert_eq!(
        def.params[0].ty,
        ParamType::Slice {
            elem: vec4,
            mutable: false
        }
    );
    let StmtKind::If { then, .. } = &def.body.stmts[1].kind else {
        panic!()
    };
    let StmtKind::Assign { value, .. } = &then.stmts[1].kind else {
        panic!()
    };
    let ExprKind::Call { func, args, .. } = &value.kind else {
        panic!()
    };
    assert_eq!(func, "Vec4::new");
    assert!(
        matches!(&args[0].kind, ExprKind::Binary(BinOp::Mul, v, _) if matches!(&v.kind, ExprKind::Field(_, f) if f == "x"))
    );
    let ExprKind::MethodCall { receiver, .. } = &args[3].kind else {
        panic!()
    };
    assert!(matches!(&receiver.kind, ExprKind::Path(p) if p == "f32::INFINITY"));
    let StmtKind::Assign { value, .. } = &then.stmts[2].kind else {
        panic!()
    };
    assert!(matches!(&value.kind, ExprKind::Call { func, .. } if func == "f16::from_f32"));
    // `let _ = warp_ballot(i as f32 > -1.5e3);` is an expression statement.
    let StmtKind::Expr(ballot) = &then.stmts[3].kind else {
        panic!("{:?}", then.stmts[3].kind)
    };
    let ExprKind::Call { args, .. } = &ballot.kind else {
        panic!()
    };
    let ExprKind::Binary(BinOp::Gt, cast, neg) = &args[0].kind else {
        panic!()
    };
    assert!(matches!(cast.kind, ExprKind::Cast(_, Type::F32)));
    assert!(
        matches!(&neg.kind, ExprKind::Unary(_, lit) if matches!(lit.kind, ExprKind::Float(f, None) if f == 1.5e3))
    );
}
