//! Small constructors for typed IR, host buffers and launches: what the interpreter's tests
//! and its sample kernels are built with. Not a stable API (kernels come from
//! `#[kernel]` and the resolver); misuse panics.

use crate::backend::{Arg, Element, LaunchDims, RawBuffer, Storage};
use crate::interp::{run, InterpError, InterpOptions};
use crate::ir::{BinOp, Span, UnOp};
use crate::space::Config;
use crate::typed::*;
use crate::types::{ScalarType, Type};

/// Builds one function: its variables, arrays and parameters.
#[derive(Default)]
pub struct Fb {
    vars: Vec<VarInfo>,
    arrays: Vec<ArrayInfo>,
    params: Vec<Param>,
}

impl Fb {
    pub fn var(&mut self, name: &str, ty: Type) -> Expr {
        self.vars.push(VarInfo {
            name: name.into(),
            ty,
            mutable: true,
        });
        Expr {
            kind: ExprKind::Var(VarId(self.vars.len() as u32 - 1)),
            ty,
        }
    }

    pub fn value_param(&mut self, name: &str, ty: Type) -> Expr {
        let v = self.var(name, ty);
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Value { ty, var: id(&v) },
        });
        v
    }

    pub fn slice_param(&mut self, name: &str, elem: Type, mutable: bool) -> Mem {
        self.params.push(Param {
            name: name.into(),
            kind: ParamKind::Slice { elem, mutable },
        });
        Mem {
            r: MemRef::Param(self.params.len() as u32 - 1),
            elem,
        }
    }

    pub fn array(&mut self, name: &str, elem: Type, len: u32, space: ArraySpace) -> Mem {
        self.arrays.push(ArrayInfo {
            name: name.into(),
            elem,
            len,
            space,
        });
        Mem {
            r: MemRef::Array(ArrayId(self.arrays.len() as u32 - 1)),
            elem,
        }
    }

    pub fn finish(self, name: &str, ret: Option<Type>, body: Vec<Stmt>) -> Function {
        Function {
            name: name.into(),
            params: self.params,
            ret,
            vars: self.vars,
            arrays: self.arrays,
            body,
            line: 1,
        }
    }
}

/// A memory reference with its element type.
#[derive(Clone, Copy)]
pub struct Mem {
    pub r: MemRef,
    pub elem: Type,
}

impl Mem {
    pub fn at(self, index: Expr) -> Expr {
        Expr {
            kind: ExprKind::Load {
                mem: self.r,
                index: Box::new(index),
            },
            ty: self.elem,
        }
    }

    pub fn store(self, index: Expr, value: Expr) -> Stmt {
        st(StmtKind::Store {
            mem: self.r,
            index,
            op: None,
            value,
        })
    }

    pub fn store_op(self, index: Expr, op: BinOp, value: Expr) -> Stmt {
        st(StmtKind::Store {
            mem: self.r,
            index,
            op: Some(op),
            value,
        })
    }

    pub fn len(self) -> Expr {
        Expr {
            kind: ExprKind::Len(self.r),
            ty: Type::U32,
        }
    }

    pub fn declare(self) -> Stmt {
        match self.r {
            MemRef::Array(a) => st(StmtKind::DeclareArray(a)),
            MemRef::Param(_) => panic!("parameters are not declared"),
        }
    }

    pub fn atomic(self, op: AtomicOp, index: Expr, args: Vec<Expr>) -> Expr {
        let kind = ExprKind::Atomic {
            op,
            mem: self.r,
            index: Box::new(index),
            args,
        };
        Expr {
            kind,
            ty: self.elem,
        }
    }
}

pub fn id(v: &Expr) -> VarId {
    match v.kind {
        ExprKind::Var(id) => id,
        _ => panic!("not a variable"),
    }
}

pub fn st(kind: StmtKind) -> Stmt {
    Stmt {
        kind,
        span: Span::new(1, 0),
    }
}

pub fn lit<T: Element>(v: T) -> Expr {
    Expr::lit(T::TYPE, v.to_bits())
}

pub fn u(v: u32) -> Expr {
    lit(v)
}

pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    let ty = if op.is_comparison() || op.is_logical() {
        Type::BOOL
    } else {
        a.ty
    };
    Expr {
        kind: ExprKind::Binary(op, Box::new(a), Box::new(b)),
        ty,
    }
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

pub fn un(op: UnOp, a: Expr) -> Expr {
    let ty = a.ty;
    Expr {
        kind: ExprKind::Unary(op, Box::new(a)),
        ty,
    }
}

pub fn cast(a: Expr, ty: ScalarType) -> Expr {
    Expr {
        kind: ExprKind::Cast(Box::new(a)),
        ty: Type::Scalar(ty),
    }
}

pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
    let ty = a.ty;
    Expr {
        kind: ExprKind::Select(Box::new(c), Box::new(a), Box::new(b)),
        ty,
    }
}

pub fn intr(i: Intrinsic, args: Vec<Expr>, ty: Type) -> Expr {
    Expr {
        kind: ExprKind::Intrinsic(i, args),
        ty,
    }
}

pub fn builtin(b: Builtin) -> Expr {
    Expr {
        kind: ExprKind::Builtin(b),
        ty: Type::U32,
    }
}

pub fn tid(d: Dim) -> Expr {
    builtin(Builtin::ThreadIdx(d))
}

/// `block_idx_x() * block_dim_x() + thread_idx_x()`
pub fn global_x() -> Expr {
    add(
        mul(
            builtin(Builtin::BlockIdx(Dim::X)),
            builtin(Builtin::BlockDim(Dim::X)),
        ),
        tid(Dim::X),
    )
}

pub fn call(func: u32, args: Vec<CallArg>, ty: Type) -> Expr {
    Expr {
        kind: ExprKind::Call {
            func: FnId(func),
            args,
        },
        ty,
    }
}

pub fn let_(v: &Expr, init: Expr) -> Stmt {
    st(StmtKind::Let {
        var: id(v),
        init: Some(init),
    })
}

pub fn set(v: &Expr, value: Expr) -> Stmt {
    st(StmtKind::AssignVar {
        var: id(v),
        op: None,
        value,
    })
}

pub fn set_op(v: &Expr, op: BinOp, value: Expr) -> Stmt {
    st(StmtKind::AssignVar {
        var: id(v),
        op: Some(op),
        value,
    })
}

pub fn if_(cond: Expr, then: Vec<Stmt>, els: Vec<Stmt>) -> Stmt {
    st(StmtKind::If { cond, then, els })
}

/// `for v in (start..end).step_by(step)` with u32 bounds.
pub fn for_(v: &Expr, start: Expr, end: Expr, step: u32, body: Vec<Stmt>) -> Stmt {
    let step = Expr::lit(v.ty, step as u64);
    st(StmtKind::For {
        var: id(v),
        start,
        end,
        step,
        unroll: None,
        body,
    })
}

pub fn while_(cond: Expr, body: Vec<Stmt>) -> Stmt {
    st(StmtKind::While { cond, body })
}

pub fn ret(v: Option<Expr>) -> Stmt {
    st(StmtKind::Return(v))
}

pub fn eval(e: Expr) -> Stmt {
    st(StmtKind::Eval(e))
}

pub fn sync() -> Stmt {
    eval(intr(Intrinsic::SyncThreads, vec![], Type::BOOL))
}

pub fn kernel(body: Function, device_fns: Vec<Function>) -> Kernel {
    Kernel {
        name: body.name.clone(),
        symbol: body.name.clone(),
        file: "test.rs".into(),
        line: 1,
        config: Config::default(),
        block_dim: None,
        body,
        device_fns,
    }
}

pub fn buffer<T: Element>(data: &[T]) -> RawBuffer {
    let size = T::SCALAR.size_bytes();
    let mut bytes = Vec::with_capacity(data.len() * size);
    for v in data {
        bytes.extend_from_slice(&v.to_bits().to_le_bytes()[..size]);
    }
    RawBuffer {
        elem: T::TYPE,
        len: data.len(),
        storage: Storage::Host(bytes),
    }
}

pub fn read<T: Element>(b: &RawBuffer) -> Vec<T> {
    let size = T::SCALAR.size_bytes();
    let bytes = b.host_bytes().expect("host buffer");
    bytes
        .chunks_exact(size)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..size].copy_from_slice(c);
            T::from_bits(u64::from_le_bytes(w))
        })
        .collect()
}

pub fn launch(k: &Kernel, dims: LaunchDims, args: &mut [Arg]) -> Result<(), InterpError> {
    run(k, &dims, args, &InterpOptions::default()).map(|_| ())
}
