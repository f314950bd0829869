//! The surface IR: what `#[kernel]` and `#[device]` build from the Rust syntax of a kernel.
//!
//! It mirrors the Rust source closely: names are the user's names, literals may be untyped
//! (`1` or `1.0` without a suffix), const generics appear as paths, intrinsics appear as
//! calls by name. [`crate::resolve`] turns it, for one [`Config`](crate::space::Config), into
//! the typed IR ([`crate::typed`]) that the code generator and the interpreter consume.
//!
//! Every node carries a [`Span`] (line and column in the user's file) so that errors point
//! at the user's own line.

use crate::space::TuneSpace;
use crate::types::{ScalarType, Type};

/// A position in the kernel's Rust source file (1-based line, 0-based column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub const fn new(line: u32, col: u32) -> Span {
        Span { line, col }
    }
}

/// A kernel as written: `#[kernel] fn name<const A: u32, ...>(params) { body }`.
#[derive(Clone, Debug)]
pub struct KernelDef {
    pub name: String,
    /// Source file of the kernel, as `file!()` gives it.
    pub file: String,
    /// Line of the `fn` keyword.
    pub line: u32,
    /// Const generic parameters, in declaration order. Tunables are a subset of these.
    pub consts: Vec<ConstDecl>,
    pub params: Vec<ParamDecl>,
    /// `#[kernel(block = (X, Y, Z))]`: the block shape the kernel is written for, as
    /// expressions over the const generics (missing dimensions are 1). When present, the
    /// block size is a constant of each specialization: `__launch_bounds__` is emitted,
    /// `block_dim_*()` fold to constants, and a launch with another block shape is refused.
    pub block_dim: Option<Vec<Expr>>,
    pub body: Block,
    /// The declared tunable space (`tune(...)` and `constraint = ...`).
    pub space: TuneSpace,
}

/// A `#[device]` function: callable from kernels and other device functions.
#[derive(Clone, Debug)]
pub struct DeviceFnDef {
    pub name: String,
    pub file: String,
    pub line: u32,
    pub consts: Vec<ConstDecl>,
    pub params: Vec<ParamDecl>,
    /// `None` for a function returning `()`.
    pub ret: Option<Type>,
    pub body: Block,
}

/// A const generic parameter: `const BLOCK: u32`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstDecl {
    pub name: String,
    /// `u32`, `i32`, `u64`, `i64` or `bool`.
    pub ty: ScalarType,
    pub span: Span,
}

/// A runtime parameter of a kernel or device function.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// A scalar or vector passed by value (`n: u32`).
    Value(Type),
    /// `&[T]` (`mutable: false`) or `&mut [T]` (`mutable: true`). In a kernel this is a
    /// global-memory buffer; a device function may also be given a shared or local array.
    Slice { elem: Type, mutable: bool },
}

/// A `{ ... }` block: statements and an optional tail expression (its value).
#[derive(Clone, Debug, Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub tail: Option<Box<Expr>>,
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    /// `let [mut] name[: ty] [= init];`
    ///
    /// Arrays are declared with an init call: `let mut tile = shared_array::<f32>(LEN);`
    /// (block-shared memory) or `let mut acc = local_array::<f32>(LEN);` (per-thread,
    /// zero-initialized); `LEN` must be a constant expression over the const generics.
    Let {
        name: String,
        mutable: bool,
        ty: Option<Type>,
        init: Option<Expr>,
    },
    /// `place = value;` or, with `op`, `place op= value;`.
    Assign {
        place: Expr,
        op: Option<BinOp>,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Block,
        els: Option<Block>,
    },
    /// `for var in start..end`, `start..=end`, or `(start..end).step_by(step)`.
    For {
        var: String,
        start: Expr,
        end: Expr,
        inclusive: bool,
        step: Option<Expr>,
        /// `#[unroll]` on the loop (or `#[unroll(N)]` → `Some(N)`; `#[unroll]` → `Some(0)`,
        /// meaning "fully").
        unroll: Option<u32>,
        body: Block,
    },
    While {
        cond: Expr,
        body: Block,
    },
    /// `loop { ... }`
    Loop {
        body: Block,
    },
    Break,
    Continue,
    Return(Option<Expr>),
    /// An expression evaluated for its effect (`sync_threads();`, `atomic_add(...)`).
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    /// An integer literal; the suffix type when written (`1u32`).
    Int(i128, Option<ScalarType>),
    /// A float literal; the suffix type when written (`1.0f32`).
    Float(f64, Option<ScalarType>),
    Bool(bool),
    /// A variable, parameter or const generic by name.
    Path(String),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnOp, Box<Expr>),
    /// `expr as ty`
    Cast(Box<Expr>, Type),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `v.x`, `v.y`, `v.z`, `v.w` on a vector.
    Field(Box<Expr>, String),
    /// `receiver.method::<generics>(args)`: math (`x.exp()`, `x.max(y)`, `x.mul_add(a, b)`),
    /// `buf.len()`, conversions (`x.to_f32()`), wrapping ops, ...
    MethodCall {
        receiver: Box<Expr>,
        method: String,
        generics: Vec<Type>,
        args: Vec<Expr>,
    },
    /// A call of an intrinsic by its path: `thread_idx_x()`, `sync_threads()`,
    /// `f16::from_f32(x)`, `warp_shfl_xor(v, 16)`, `atomic_add(buf, i, v)`, `Vec4::new(..)`.
    /// Type arguments (`shared_array::<f32>(N)`) are in `generics`.
    Call {
        func: String,
        generics: Vec<Type>,
        args: Vec<Expr>,
    },
    /// A call of a `#[device]` function. `consts` are its const generic arguments.
    CallDevice {
        def: fn() -> DeviceFnDef,
        consts: Vec<Expr>,
        args: Vec<Expr>,
    },
    /// `if cond { a } else { b }` used as a value.
    If {
        cond: Box<Expr>,
        then: Block,
        els: Block,
    },
    /// A parenthesized or block expression `{ stmts; tail }` used as a value.
    Block(Block),
}

/// Binary operators. Integer `+ - *` wrap (two's complement), as CUDA's do; shifts take the
/// amount modulo the bit width (Rust's `wrapping_shl`), which the CUDA C makes explicit;
/// integer `/` and `%` by zero are errors in the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `&&` (short-circuit)
    And,
    /// `||` (short-circuit)
    Or,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// `-x` (wrapping for integers)
    Neg,
    /// `!x`: logical not on bool, bitwise not on integers
    Not,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }
}

impl Stmt {
    pub fn new(kind: StmtKind, span: Span) -> Stmt {
        Stmt { kind, span }
    }
}
