//! Test-only shorthand for building typed IR by hand: what the code generator's snapshot
//! kernels, the interpreter's tests and its sample kernels are written with. Real kernels
//! come from `#[kernel]` and the resolver; this is no stable API, and misuse panics.

use crate::backend::Element;
use crate::ir::{BinOp, Span, UnOp};
use crate::space::Config;
use crate::typed::*;
use crate::types::{ScalarType, Type};

/// A variable with its type, so that reading it needs no lookup.
#[derive(Clone, Copy)]
pub struct Var {
    pub id: VarId,
    pub ty: Type,
}

impl Var {
    /// The variable read as an expression.
    pub fn e(self) -> Expr {
        e(ExprKind::Var(self.id), self.ty)
    }
}

/// Memory (a slice parameter or an array) with its element type.
#[derive(Clone, Copy)]
pub struct Mem {
    pub mem: MemRef,
    pub elem: Type,
}

impl Mem {
    pub fn at(self, index: Expr) -> Expr {
        let kind = ExprKind::Load {
            mem: self.mem,
            index: Box::new(index),
        };
        e(kind, self.elem)
    }

    pub fn len(self) -> Expr {
        e(ExprKind::Len(self.mem), Type::U32)
    }

    pub fn store(self, index: Expr, value: Expr) -> Stmt {
        self.store_with(index, None, value)
    }

    pub fn store_op(self, index: Expr, op: BinOp, value: Expr) -> Stmt {
        self.store_with(index, Some(op), value)
    }

    fn store_with(self, index: Expr, op: Option<BinOp>, value: Expr) -> Stmt {
        stmt(StmtKind::Store {
            mem: self.mem,
            index,
            op,
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
        e(kind, self.elem)
    }

    /// The memory passed to a device function.
    pub fn arg(self) -> CallArg {
        CallArg::Mem(self.mem)
    }
}

/// Builds one function: its parameters, variables and arrays.
#[derive(Default)]
pub struct FnBuilder {
    params: Vec<Param>,
    vars: Vec<VarInfo>,
    arrays: Vec<ArrayInfo>,
}

impl FnBuilder {
    fn add_var(&mut self, name: &str, ty: Type, mutable: bool) -> Var {
        self.vars.push(VarInfo {
            name: name.into(),
            ty,
            mutable,
        });
        Var {
            id: VarId(self.vars.len() as u32 - 1),
            ty,
        }
    }

    /// A variable bound once (`let`).
    pub fn var(&mut self, name: &str, ty: Type) -> Var {
        self.add_var(name, ty, false)
    }

    /// A variable that may be assigned (`let mut`).
    pub fn var_mut(&mut self, name: &str, ty: Type) -> Var {
        self.add_var(name, ty, true)
    }

    pub fn value_param(&mut self, name: &str, ty: Type) -> Var {
        let v = self.add_var(name, ty, false);
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Value { ty, var: v.id },
        });
        v
    }

    pub fn slice_param(&mut self, name: &str, elem: Type, mutable: bool) -> Mem {
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Slice { elem, mutable },
        });
        Mem {
            mem: MemRef::Param(self.params.len() as u32 - 1),
            elem,
        }
    }

    /// An array and the statement declaring it.
    pub fn array(&mut self, name: &str, elem: Type, len: u32, space: ArraySpace) -> (Mem, Stmt) {
        self.arrays.push(ArrayInfo {
            name: name.into(),
            elem,
            len,
            space,
        });
        let id = ArrayId(self.arrays.len() as u32 - 1);
        let mem = Mem {
            mem: MemRef::Array(id),
            elem,
        };
        (mem, stmt(StmtKind::DeclareArray(id)))
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

/// A kernel named after its body, with no config and no declared block shape; set the
/// other fields with struct update syntax where a test needs them.
pub fn kernel(body: Function, device_fns: Vec<Function>) -> Kernel {
    Kernel {
        name: body.name.clone(),
        symbol: body.name.clone(),
        file: "kernels/src/example.rs".into(),
        line: 12,
        config: Config::new(),
        block_dim: None,
        body,
        device_fns,
    }
}

pub fn stmt(kind: StmtKind) -> Stmt {
    Stmt {
        kind,
        span: Span::new(1, 0),
    }
}

fn e(kind: ExprKind, ty: Type) -> Expr {
    Expr { kind, ty }
}

/// A literal of the value's own type (for raw bits, use [`Expr::lit`]).
pub fn lit<T: Element>(v: T) -> Expr {
    Expr::lit(T::TYPE, v.to_bits())
}

pub fn u32(v: u32) -> Expr {
    lit(v)
}

pub fn ty(s: ScalarType) -> Type {
    Type::Scalar(s)
}

pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    let ty = if op.is_comparison() || op.is_logical() {
        Type::BOOL
    } else {
        a.ty
    };
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

pub fn tid(d: Dim) -> Expr {
    builtin(Builtin::ThreadIdx(d))
}

pub fn bid(d: Dim) -> Expr {
    builtin(Builtin::BlockIdx(d))
}

/// `block_idx_x() * block_dim_x() + thread_idx_x()`
pub fn global_x() -> Expr {
    let block_dim = builtin(Builtin::BlockDim(Dim::X));
    add(mul(bid(Dim::X), block_dim), tid(Dim::X))
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
    let kind = ExprKind::Call {
        func: FnId(func),
        args,
    };
    e(kind, ty)
}

/// A value passed to a device function.
pub fn val(a: Expr) -> CallArg {
    CallArg::Value(a)
}

pub fn let_(v: Var, init: Expr) -> Stmt {
    stmt(StmtKind::Let {
        var: v.id,
        init: Some(init),
    })
}

/// `let v;`: zero-initialized.
pub fn let_zero(v: Var) -> Stmt {
    stmt(StmtKind::Let {
        var: v.id,
        init: None,
    })
}

pub fn set(v: Var, value: Expr) -> Stmt {
    stmt(StmtKind::AssignVar {
        var: v.id,
        op: None,
        value,
    })
}

pub fn set_op(v: Var, op: BinOp, value: Expr) -> Stmt {
    stmt(StmtKind::AssignVar {
        var: v.id,
        op: Some(op),
        value,
    })
}

pub fn if_(cond: Expr, then: Vec<Stmt>, els: Vec<Stmt>) -> Stmt {
    stmt(StmtKind::If { cond, then, els })
}

/// `for v in (start..end).step_by(step)`, unrolled by `unroll` (`Some(0)`: fully).
pub fn for_(v: Var, range: [Expr; 3], unroll: Option<u32>, body: Vec<Stmt>) -> Stmt {
    let [start, end, step] = range;
    stmt(StmtKind::For {
        var: v.id,
        start,
        end,
        step,
        unroll,
        body,
    })
}

pub fn while_(cond: Expr, body: Vec<Stmt>) -> Stmt {
    stmt(StmtKind::While { cond, body })
}

pub fn ret(value: Option<Expr>) -> Stmt {
    stmt(StmtKind::Return(value))
}

pub fn eval(a: Expr) -> Stmt {
    stmt(StmtKind::Eval(a))
}

pub fn sync() -> Stmt {
    eval(intr(Intrinsic::SyncThreads, vec![], Type::BOOL))
}
