//! Resolver tests on hand-built surface IR.

use super::*;
use crate::ir::{BinOp, Block, ConstDecl, Expr, ExprKind, ParamDecl, ParamType, Stmt, StmtKind};
use crate::space::{TuneParam, TuneSpace};
use crate::typed::{self, ExprKind as T};
use crate::types::{ScalarType as S, Type};

fn sp(line: u32) -> Span {
    Span::new(line, 4)
}
fn e(kind: ExprKind) -> Expr {
    Expr::new(kind, sp(1))
}
fn at(line: u32, kind: ExprKind) -> Expr {
    Expr::new(kind, sp(line))
}
fn path(n: &str) -> Expr {
    e(ExprKind::Path(n.into()))
}
fn int(v: i128) -> Expr {
    e(ExprKind::Int(v, None))
}
fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    e(ExprKind::Binary(op, Box::new(a), Box::new(b)))
}
fn call(f: &str, args: Vec<Expr>) -> Expr {
    e(ExprKind::Call {
        func: f.into(),
        generics: vec![],
        args,
    })
}
fn index(b: &str, i: Expr) -> Expr {
    e(ExprKind::Index(Box::new(path(b)), Box::new(i)))
}
fn stmt(line: u32, kind: StmtKind) -> Stmt {
    Stmt::new(kind, sp(line))
}
fn let_(line: u32, name: &str, init: Expr) -> Stmt {
    stmt(
        line,
        StmtKind::Let {
            name: name.into(),
            mutable: true,
            ty: None,
            init: Some(init),
        },
    )
}
fn block(stmts: Vec<Stmt>) -> Block {
    Block { stmts, tail: None }
}
fn slice(name: &str, elem: S, mutable: bool) -> ParamDecl {
    ParamDecl {
        name: name.into(),
        ty: ParamType::Slice {
            elem: Type::Scalar(elem),
            mutable,
        },
        span: sp(1),
    }
}
fn value(name: &str, s: S) -> ParamDecl {
    ParamDecl {
        name: name.into(),
        ty: ParamType::Value(Type::Scalar(s)),
        span: sp(1),
    }
}

/// `vector_add<BLOCK>(a, b, c, n)` with `block = (BLOCK)`.
fn vector_add() -> KernelDef {
    let i = bin(
        BinOp::Add,
        bin(
            BinOp::Mul,
            call("block_idx_x", vec![]),
            call("block_dim_x", vec![]),
        ),
        call("thread_idx_x", vec![]),
    );
    let store = stmt(
        4,
        StmtKind::Assign {
            place: index("c", path("i")),
            op: None,
            value: bin(BinOp::Add, index("a", path("i")), index("b", path("i"))),
        },
    );
    KernelDef {
        name: "vector_add".into(),
        file: "kernels/src/add.rs".into(),
        line: 10,
        consts: vec![ConstDecl {
            name: "BLOCK".into(),
            ty: S::U32,
            span: sp(1),
        }],
        params: vec![
            slice("a", S::F32, false),
            slice("b", S::F32, false),
            slice("c", S::F32, true),
            value("n", S::U32),
        ],
        block_dim: Some(vec![path("BLOCK")]),
        body: block(vec![
            let_(2, "i", i),
            stmt(
                3,
                StmtKind::If {
                    cond: bin(BinOp::Lt, path("i"), path("n")),
                    then: block(vec![store]),
                    els: None,
                },
            ),
        ]),
        space: TuneSpace {
            params: vec![TuneParam {
                name: "BLOCK".into(),
                values: vec![128, 256],
                default: 256,
            }],
            constraints: vec![],
        },
    }
}

#[test]
fn vector_add_specializes_and_folds_the_block_size() {
    let k = specialize(&vector_add(), &Config::new().with("BLOCK", 128)).unwrap();
    assert_eq!(k.symbol, "vector_add__BLOCK128");
    assert_eq!(k.block_dim, Some([128, 1, 1]));
    assert_eq!(k.body.vars[1].name, "i");
    assert_eq!(k.body.vars[1].ty, Type::U32);
    // `block_dim_x()` became the constant 128.
    let typed::StmtKind::Let {
        init: Some(init), ..
    } = &k.body.body[0].kind
    else {
        panic!("{:?}", k.body.body)
    };
    let T::Binary(BinOp::Add, mul, _) = &init.kind else {
        panic!()
    };
    let T::Binary(BinOp::Mul, _, c) = &mul.kind else {
        panic!()
    };
    assert!(matches!(c.kind, T::Lit(128)));
}

#[test]
fn config_outside_the_space_is_refused() {
    let err = specialize(&vector_add(), &Config::new().with("BLOCK", 64)).unwrap_err();
    assert!(
        err.to_string()
            .contains("BLOCK=64 is outside the declared space [128, 256]"),
        "{err}"
    );
    let err = specialize(&vector_add(), &Config::new()).unwrap_err();
    assert!(err.to_string().contains("does not give BLOCK"), "{err}");
}

#[test]
fn untyped_literals_take_the_type_rust_would_infer() {
    // let mut j = 0; while j < n { j += 1; }  → j: u32
    let mut k = vector_add();
    k.body = block(vec![
        let_(2, "j", int(0)),
        stmt(
            3,
            StmtKind::While {
                cond: bin(BinOp::Lt, path("j"), path("n")),
                body: block(vec![stmt(
                    4,
                    StmtKind::Assign {
                        place: path("j"),
                        op: Some(BinOp::Add),
                        value: int(1),
                    },
                )]),
            },
        ),
        let_(5, "x", e(ExprKind::Float(0.5, None))),
        let_(6, "y", int(7)),
    ]);
    let t = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap();
    let tys: Vec<_> = t
        .body
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.ty))
        .collect();
    assert_eq!(
        tys,
        vec![
            ("n", Type::U32),
            ("j", Type::U32),
            ("x", Type::F32),
            ("y", Type::I32)
        ]
    );
}

#[test]
fn errors_point_at_the_users_line() {
    let mut k = vector_add();
    k.body = block(vec![let_(7, "q", at(7, ExprKind::Path("nope".into())))]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert_eq!(err.span.line, 7);
    assert_eq!(
        err.to_string(),
        "kernel `vector_add` at kernels/src/add.rs:7:5: cannot find `nope` in this kernel"
    );

    k.body = block(vec![let_(
        3,
        "q",
        at(
            3,
            ExprKind::Binary(
                BinOp::Add,
                Box::new(path("n")),
                Box::new(e(ExprKind::Float(1.0, Some(S::F32)))),
            ),
        ),
    )]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert!(
        err.message.contains("mismatched types: `u32` and `f32`"),
        "{err}"
    );
    assert_eq!(err.span.line, 3);

    k.body = block(vec![stmt(
        9,
        StmtKind::Assign {
            place: index("a", int(0)),
            op: None,
            value: e(ExprKind::Float(1.0, None)),
        },
    )]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert!(err.message.contains("cannot write to `a`"), "{err}");
}

#[test]
fn fp8_arithmetic_is_refused_with_a_hint() {
    let mut k = vector_add();
    k.params = vec![slice("a", S::F8E4M3, false)];
    k.body = block(vec![let_(
        2,
        "s",
        bin(BinOp::Add, index("a", int(0)), index("a", int(1))),
    )]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert!(
        err.message.contains("convert with `.to_f32()` first"),
        "{err}"
    );
}

#[test]
fn branches_on_consts_keep_only_the_taken_side_and_arrays_get_constant_lengths() {
    let mut k = vector_add();
    let arr = Expr::new(
        ExprKind::Call {
            func: "shared_array".into(),
            generics: vec![Type::F32],
            args: vec![bin(BinOp::Mul, path("BLOCK"), int(2))],
        },
        sp(2),
    );
    k.body = block(vec![
        let_(2, "tile", arr),
        stmt(
            3,
            StmtKind::If {
                cond: bin(BinOp::Gt, path("BLOCK"), int(128)),
                then: block(vec![let_(4, "big", int(1))]),
                els: Some(block(vec![let_(5, "small", int(1))])),
            },
        ),
    ]);
    let t = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap();
    assert_eq!(t.body.arrays[0].len, 512);
    assert!(t.body.vars.iter().any(|v| v.name == "big"));
    assert!(!t.body.vars.iter().any(|v| v.name == "small"));
    assert!(!t
        .body
        .body
        .iter()
        .any(|s| matches!(s.kind, typed::StmtKind::If { .. })));
}

fn twice_def() -> DeviceFnDef {
    DeviceFnDef {
        name: "scale".into(),
        file: "k.rs".into(),
        line: 1,
        consts: vec![ConstDecl {
            name: "F".into(),
            ty: S::U32,
            span: sp(1),
        }],
        params: vec![value("x", S::U32)],
        ret: Some(Type::U32),
        body: Block {
            stmts: vec![],
            tail: Some(Box::new(bin(BinOp::Mul, path("x"), path("F")))),
        },
    }
}

fn recursive_def() -> DeviceFnDef {
    let again = e(ExprKind::CallDevice {
        def: recursive_def,
        consts: vec![],
        args: vec![path("x")],
    });
    DeviceFnDef {
        name: "again".into(),
        file: "k.rs".into(),
        line: 2,
        consts: vec![],
        params: vec![value("x", S::U32)],
        ret: Some(Type::U32),
        body: Block {
            stmts: vec![],
            tail: Some(Box::new(again)),
        },
    }
}

#[test]
fn device_functions_are_specialized_once_per_const_and_recursion_is_an_error() {
    let mut k = vector_add();
    let c = |f: i128| {
        e(ExprKind::CallDevice {
            def: twice_def,
            consts: vec![int(f)],
            args: vec![path("n")],
        })
    };
    k.body = block(vec![
        let_(2, "p", c(2)),
        let_(3, "q", c(2)),
        let_(4, "r", c(3)),
    ]);
    let t = specialize(&k, &Config::new().with("BLOCK", 128)).unwrap();
    let names: Vec<_> = t.device_fns.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["scale_2", "scale_3"]);
    assert_eq!(t.device_fns[0].ret, Some(Type::U32));

    k.body = block(vec![let_(
        2,
        "p",
        e(ExprKind::CallDevice {
            def: recursive_def,
            consts: vec![],
            args: vec![path("n")],
        }),
    )]);
    let err = specialize(&k, &Config::new().with("BLOCK", 128)).unwrap_err();
    assert!(err.message.contains("recursion is not supported"), "{err}");
}

#[test]
fn short_circuit_with_a_load_becomes_a_select() {
    let mut k = vector_add();
    let cond = bin(
        BinOp::And,
        bin(BinOp::Lt, path("n"), int(4)),
        bin(
            BinOp::Gt,
            index("a", path("n")),
            e(ExprKind::Float(0.0, None)),
        ),
    );
    k.body = block(vec![let_(2, "ok", cond)]);
    let t = specialize(&k, &Config::new().with("BLOCK", 128)).unwrap();
    let typed::StmtKind::Let {
        init: Some(init), ..
    } = &t.body.body[0].kind
    else {
        panic!()
    };
    assert!(matches!(init.kind, T::Select(..)), "{init:?}");
}

#[test]
fn shadowed_and_reserved_names_get_unique_c_names() {
    let mut k = vector_add();
    k.body = block(vec![
        let_(2, "x", int(1)),
        let_(3, "x", int(2)),
        let_(4, "float", int(3)),
    ]);
    let t = specialize(&k, &Config::new().with("BLOCK", 128)).unwrap();
    let names: Vec<_> = t.body.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["n", "x", "x_1", "float_"]);
}

fn log2f_def() -> DeviceFnDef {
    DeviceFnDef {
        name: "log2f".into(),
        file: "k.rs".into(),
        line: 3,
        consts: vec![],
        params: vec![value("x", S::U32)],
        ret: Some(Type::U32),
        body: Block {
            stmts: vec![],
            tail: Some(Box::new(path("x"))),
        },
    }
}

#[test]
fn device_functions_named_like_cuda_math_functions_are_renamed() {
    let mut k = vector_add();
    k.body = block(vec![let_(
        2,
        "p",
        e(ExprKind::CallDevice {
            def: log2f_def,
            consts: vec![],
            args: vec![path("n")],
        }),
    )]);
    let t = specialize(&k, &Config::new().with("BLOCK", 128)).unwrap();
    assert_eq!(t.device_fns[0].name, "log2f_");
}

/// The `let` initializers of a specialized kernel, in order.
fn let_inits(k: &typed::Kernel) -> Vec<&typed::Expr> {
    k.body
        .body
        .iter()
        .filter_map(|s| match &s.kind {
            typed::StmtKind::Let { init, .. } => init.as_ref(),
            _ => None,
        })
        .collect()
}

fn method(receiver: Expr, name: &str) -> Expr {
    e(ExprKind::MethodCall {
        receiver: Box::new(receiver),
        method: name.into(),
        generics: vec![],
        args: vec![],
    })
}

#[test]
fn element_type_conversions_are_uniform_and_identity_on_f32() {
    // What a generic body instantiated at T = f32 and Q = F8E4M3 asks for.
    let mut k = vector_add();
    k.body = block(vec![
        let_(2, "x", method(index("a", int(0)), "to_f32")),
        let_(3, "y", call("f32::from_f32", vec![path("x")])),
        let_(4, "q", call("F8E4M3::from_f32", vec![path("y")])),
        let_(5, "m", call("F8E4M3::max_finite", vec![])),
        let_(6, "h", call("bf16::max_finite", vec![])),
    ]);
    let t = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap();
    let inits = let_inits(&t);
    // f32 → f32 converts nothing: the load and the variable come through without a cast.
    assert!(matches!(inits[0].kind, T::Load { .. }), "{:?}", inits[0]);
    assert!(matches!(inits[1].kind, T::Var(_)), "{:?}", inits[1]);
    assert!(matches!(inits[2].kind, T::Cast(_)) && inits[2].ty == Type::Scalar(S::F8E4M3));
    let lit = |x: &typed::Expr| match x.kind {
        T::Lit(bits) if x.ty == Type::F32 => f32::from_bits(bits as u32),
        _ => panic!("not an f32 literal: {x:?}"),
    };
    assert_eq!(lit(inits[3]), 448.0);
    assert_eq!(lit(inits[4]), f32::from_bits(0x7f7f_0000));
}

#[test]
fn max_finite_of_an_integer_type_is_an_error() {
    let mut k = vector_add();
    k.body = block(vec![let_(
        2,
        "m",
        at(2, call("u32::max_finite", vec![]).kind),
    )]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert!(
        err.message.contains("defined for the float formats") && err.message.contains("`u32`"),
        "{err}"
    );
    assert_eq!(err.span.line, 2);

    k.body = block(vec![let_(3, "x", method(path("n"), "to_f32"))]);
    let err = specialize(&k, &Config::new().with("BLOCK", 256)).unwrap_err();
    assert!(err.message.contains("use `as f32`"), "{err}");
}
