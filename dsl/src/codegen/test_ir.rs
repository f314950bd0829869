//! Test-only shorthand for building typed IR by hand.

use crate::ir::{BinOp, Span, UnOp};
use crate::space::Config;
use crate::typed::*;
use crate::types::{ScalarType, Type};

/// A variable with its type, so that reading it needs no lookup.
#[derive(Clone, Copy)]
pub struct V {
    pub id: VarId,
    pub ty: Type,
}

impl V {
    pub fn e(self) -> Expr {
        Expr {
            kind: ExprKind::Var(self.id),
            ty: self.ty,
        }
    }
}

/// Memory (a slice parameter or an array) with its element type.
#[derive(Clone, Copy)]
pub struct M {
    pub mem: MemRef,
    pub elem: Type,
}

impl M {
    pub fn at(self, index: Expr) -> Expr {
        Expr {
            kind: ExprKind::Load {
                mem: self.mem,
                index: Box::new(index),
            },
            ty: self.elem,
        }
    }

    pub fn len(self) -> Expr {
        Expr {
            kind: ExprKind::Len(self.mem),
            ty: Type::U32,
        }
    }

    pub fn store(self, index: Expr, value: Expr) -> Stmt {
        s(StmtKind::Store {
            mem: self.mem,
            index,
            op: None,
            value,
        })
    }

    pub fn store_op(self, index: Expr, op: BinOp, value: Expr) -> Stmt {
        s(StmtKind::Store {
            mem: self.mem,
            index,
            op: Some(op),
            value,
        })
    }

    pub fn atomic(self, op: AtomicOp, index: Expr, args: Vec<Expr>) -> Expr {
        let kind = ExprKind::Atomic {
            op,
            mem: self.mem,
            index: Box::new(index),
            args,
        };
        Expr {
            kind,
            ty: self.elem,
        }
    }

    pub fn arg(self) -> CallArg {
        CallArg::Mem(self.mem)
    }
}

#[derive(Default)]
pub struct FnBuilder {
    params: Vec<Param>,
    vars: Vec<VarInfo>,
    arrays: Vec<ArrayInfo>,
}

impl FnBuilder {
    fn add_var(&mut self, name: &str, ty: Type, mutable: bool) -> V {
        self.vars.push(VarInfo {
            name: name.into(),
            ty,
            mutable,
        });
        V {
            id: VarId(self.vars.len() as u32 - 1),
            ty,
        }
    }

    pub fn var(&mut self, name: &str, ty: Type) -> V {
        self.add_var(name, ty, false)
    }

    pub fn var_mut(&mut self, name: &str, ty: Type) -> V {
        self.add_var(name, ty, true)
    }

    pub fn value(&mut self, name: &str, ty: Type) -> V {
        let v = self.add_var(name, ty, false);
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Value { ty, var: v.id },
        });
        v
    }

    pub fn slice(&mut self, name: &str, elem: Type, mutable: bool) -> M {
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Slice { elem, mutable },
        });
        M {
            mem: MemRef::Param(self.params.len() as u32 - 1),
            elem,
        }
    }

    /// An array and the statement declaring it.
    pub fn array(&mut self, name: &str, elem: Type, len: u32, space: ArraySpace) -> (M, Stmt) {
        self.arrays.push(ArrayInfo {
            name: name.into(),
            elem,
            len,
            space,
        });
        let id = ArrayId(self.arrays.len() as u32 - 1);
        (
            M {
                mem: MemRef::Array(id),
                elem,
            },
            s(StmtKind::DeclareArray(id)),
        )
    }

    pub fn finish(self, name: &str, ret: Option<Type>, body: Vec<Stmt>) -> Function {
        Function {
            name: name.into(),
            params: self.params,
            ret,
            vars: self.vars,
            arrays: self.arrays,
            body,
            line: 3,
        }
    }
}

pub fn kernel(
    symbol: &str,
    config: Config,
    block: Option<[u32; 3]>,
    body: Function,
    device_fns: Vec<Function>,
) -> Kernel {
    Kernel {
        name: symbol.split("__").next().unwrap_or(symbol).into(),
        symbol: symbol.into(),
        file: "kernels/src/example.rs".into(),
        line: 12,
        config,
        block_dim: block,
        body,
        device_fns,
    }
}

pub fn s(kind: StmtKind) -> Stmt {
    Stmt {
        kind,
        span: Span::new(1, 0),
    }
}

pub fn e(kind: ExprKind, ty: Type) -> Expr {
    Expr { kind, ty }
}

pub fn lit(ty: impl Into<Type>, bits: u64) -> Expr {
    Expr::lit(ty.into(), bits)
}

pub fn u32(v: u32) -> Expr {
    lit(Type::U32, v as u64)
}

pub fn i32(v: i32) -> Expr {
    lit(Type::I32, v as u32 as u64)
}

pub fn f32(v: f32) -> Expr {
    lit(Type::F32, v.to_bits() as u64)
}

pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    let ty = if op.is_comparison() { Type::BOOL } else { a.ty };
    e(ExprKind::Binary(op, Box::new(a), Box::new(b)), ty)
}

pub fn add(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Add, a, b)
}

pub fn mul(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Mul, a, b)
}

pub fn lt(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Lt, a, b)
}

pub fn eq(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Eq, a, b)
}

pub fn un(op: UnOp, a: Expr) -> Expr {
    let ty = a.ty;
    e(ExprKind::Unary(op, Box::new(a)), ty)
}

pub fn cast(a: Expr, ty: impl Into<Type>) -> Expr {
    e(ExprKind::Cast(Box::new(a)), ty.into())
}

pub fn bitcast(a: Expr, ty: impl Into<Type>) -> Expr {
    e(ExprKind::Bitcast(Box::new(a)), ty.into())
}

pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
    let ty = a.ty;
    e(ExprKind::Select(Box::new(c), Box::new(a), Box::new(b)), ty)
}

pub fn lane(v: Expr, i: u8) -> Expr {
    let ty = Type::Scalar(v.ty.elem());
    e(ExprKind::Lane(Box::new(v), i), ty)
}

pub fn make_vec(lanes: Vec<Expr>) -> Expr {
    let ty = Type::Vector(lanes[0].ty.elem(), lanes.len() as u8);
    e(ExprKind::MakeVector(lanes), ty)
}

pub fn builtin(b: Builtin) -> Expr {
    e(ExprKind::Builtin(b), Type::U32)
}

pub fn tid() -> Expr {
    builtin(Builtin::ThreadIdx(Dim::X))
}

pub fn bid() -> Expr {
    builtin(Builtin::BlockIdx(Dim::X))
}

pub fn intr(i: Intrinsic, args: Vec<Expr>, ty: impl Into<Type>) -> Expr {
    e(ExprKind::Intrinsic(i, args), ty.into())
}

/// A math intrinsic whose result has the type of its first argument.
pub fn math(i: Intrinsic, args: Vec<Expr>) -> Expr {
    let ty = args[0].ty;
    intr(i, args, ty)
}

pub fn call(func: u32, args: Vec<CallArg>, ty: Type) -> Expr {
    e(
        ExprKind::Call {
            func: FnId(func),
            args,
        },
        ty,
    )
}

pub fn val(a: Expr) -> CallArg {
    CallArg::Value(a)
}

pub fn let_(v: V, init: Expr) -> Stmt {
    s(StmtKind::Let {
        var: v.id,
        init: Some(init),
    })
}

pub fn let_zero(v: V) -> Stmt {
    s(StmtKind::Let {
        var: v.id,
        init: None,
    })
}

pub fn set(v: V, value: Expr) -> Stmt {
    s(StmtKind::AssignVar {
        var: v.id,
        op: None,
        value,
    })
}

pub fn set_op(v: V, op: BinOp, value: Expr) -> Stmt {
    s(StmtKind::AssignVar {
        var: v.id,
        op: Some(op),
        value,
    })
}

pub fn if_(cond: Expr, then: Vec<Stmt>, els: Vec<Stmt>) -> Stmt {
    s(StmtKind::If { cond, then, els })
}

pub fn for_(v: V, range: [Expr; 3], unroll: Option<u32>, body: Vec<Stmt>) -> Stmt {
    let [start, end, step] = range;
    s(StmtKind::For {
        var: v.id,
        start,
        end,
        step,
        unroll,
        body,
    })
}

pub fn eval(a: Expr) -> Stmt {
    s(StmtKind::Eval(a))
}

pub fn ret(a: Expr) -> Stmt {
    s(StmtKind::Return(Some(a)))
}

pub fn sync() -> Stmt {
    eval(intr(Intrinsic::SyncThreads, vec![], Type::BOOL))
}

pub fn ty(s: ScalarType) -> Type {
    Type::Scalar(s)
}
