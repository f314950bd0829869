//! The typed IR: one specialization of a kernel, every name resolved and every expression
//! typed. Built by [`crate::resolve`]; consumed by the CUDA C generator ([`crate::codegen`])
//! and the CPU interpreter ([`crate::interp`]).
//!
//! Invariants the resolver guarantees (consumers may rely on them):
//! - const generics are gone (folded into literals); `block_dim_*()` is a literal when the
//!   kernel declares its block shape;
//! - every `Expr` has its final `ty`; binary operands have the same type (comparisons give
//!   `bool`, shifts may have an amount of another integer type); no implicit conversions;
//! - variables are declared (`Stmt::Let`) before use, and each `VarId` is declared once;
//!   variable names are unique within a function, so they can be used as C names directly;
//! - arrays (shared and local) are declared once in the function that owns them, with a
//!   constant length;
//! - `Break`/`Continue` appear only inside loops; device functions are not recursive.

use crate::ir::{BinOp, Span, UnOp};
use crate::space::Config;
use crate::types::{ScalarType, Type};

/// Index of a variable in [`Function::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// Index of an array in [`Function::arrays`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArrayId(pub u32);

/// Index of a device function in [`Kernel::device_fns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnId(pub u32);

/// A specialized, typed kernel.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The Rust name of the kernel (`vector_add`).
    pub name: String,
    /// A C symbol unique to this specialization (`vector_add__BLOCK256`).
    pub symbol: String,
    pub file: String,
    pub line: u32,
    /// The const generic values this specialization was made with.
    pub config: Config,
    /// The block shape when the kernel declares it (`#[kernel(block = ...)]`).
    pub block_dim: Option<[u32; 3]>,
    /// The kernel body. Its `params` are the launch arguments, in order.
    pub body: Function,
    /// Device functions called (transitively), specialized; callees come before callers.
    pub device_fns: Vec<Function>,
}

/// A function body: the kernel entry or one specialized device function.
#[derive(Clone, Debug)]
pub struct Function {
    /// C name (`warp_sum__f32` for a device function specialization).
    pub name: String,
    pub params: Vec<Param>,
    /// `None` for `()`.
    pub ret: Option<Type>,
    pub vars: Vec<VarInfo>,
    pub arrays: Vec<ArrayInfo>,
    pub body: Vec<Stmt>,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A value parameter; bound to `var` on entry (so the body reads it as a variable).
    Value { ty: Type, var: VarId },
    /// A pointer parameter (`&[T]` / `&mut [T]`). In a kernel: a global buffer. In a device
    /// function: global, shared or local memory (generic addressing).
    Slice { elem: Type, mutable: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct VarInfo {
    pub name: String,
    pub ty: Type,
    pub mutable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArrayInfo {
    pub name: String,
    pub elem: Type,
    pub len: u32,
    pub space: ArraySpace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArraySpace {
    /// `__shared__`, one per block.
    Shared,
    /// Per-thread, zero-initialized.
    Local,
}

/// A reference to memory: a slice parameter of the current function, or one of its arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemRef {
    Param(u32),
    Array(ArrayId),
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    /// Declares `var`; without `init` the value is zero.
    Let {
        var: VarId,
        init: Option<Expr>,
    },
    /// Declares an array (shared or local); see [`Function::arrays`].
    DeclareArray(ArrayId),
    /// `var = value` or `var op= value`.
    AssignVar {
        var: VarId,
        op: Option<BinOp>,
        value: Expr,
    },
    /// `var.lane = value` on a vector variable (lane 0..4).
    AssignLane {
        var: VarId,
        lane: u8,
        value: Expr,
    },
    /// `mem[index] = value` or `mem[index] op= value`; `index` is u32.
    Store {
        mem: MemRef,
        index: Expr,
        op: Option<BinOp>,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
    /// `for var in (start..end).step_by(step)`: `var` (declared by the loop, integer type)
    /// takes start, start+step, ... while `var < end`. `step` is a positive expression of the
    /// same type; `end` is evaluated once before the loop. (`a..=b` is turned into
    /// `a..b+1` by the resolver only when that cannot overflow; otherwise into `While`.)
    For {
        var: VarId,
        start: Expr,
        end: Expr,
        step: Expr,
        unroll: Option<u32>,
        body: Vec<Stmt>,
    },
    /// `while cond { body }` (`loop` is `while true`).
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    Break,
    Continue,
    /// Return from the function; `Some` in a device function with a return type.
    Return(Option<Expr>),
    /// An expression evaluated for its effect (an intrinsic call, a device call).
    Eval(Expr),
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Type,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    /// A constant: the value's bit pattern in the low bits of a u64, zero above the type's
    /// width (f16/bf16/f8 as their storage bits, bool as 0/1, signed integers in two's
    /// complement masked to their width: `-1i32` is `0xffff_ffff`).
    Lit(u64),
    Var(VarId),
    /// `mem[index]`, index u32.
    Load {
        mem: MemRef,
        index: Box<Expr>,
    },
    /// Length of a slice parameter or array, in elements (u32).
    Len(MemRef),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnOp, Box<Expr>),
    /// Conversion to `self.ty`: `as` semantics for numeric types (float→int saturates and
    /// NaN→0, as Rust and PTX `cvt.rzi.sat` do), round-to-nearest-even for float→float
    /// narrowing, with saturation to the finite range for the FP8 types (`satfinite`).
    Cast(Box<Expr>),
    /// Reinterpret the bits as `self.ty` (same size): `f32::from_bits`, `x.to_bits()`.
    Bitcast(Box<Expr>),
    /// `if c { a } else { b }` as a value; both sides are evaluated only when selected.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Lane `i` of a vector.
    Lane(Box<Expr>, u8),
    /// A vector from its lanes.
    MakeVector(Vec<Expr>),
    Builtin(Builtin),
    Intrinsic(Intrinsic, Vec<Expr>),
    /// Atomic read-modify-write of `mem[index]`; returns the old value.
    Atomic {
        op: AtomicOp,
        mem: MemRef,
        index: Box<Expr>,
        args: Vec<Expr>,
    },
    /// `ldmatrix_x{count}[_trans](&tile, offset)`: PTX `ldmatrix.sync.aligned.m8n8.x{count}
    /// [.trans].shared.b16`, a warp collective. Lane `8m + r` gives the element offset in
    /// `mem` (a shared array of 16-bit elements) of row `r` of 8×8 matrix `m`; every lane
    /// receives one u32 per matrix (`ty` is u32, `Vec2<u32>` or `Vec4<u32>`).
    LoadMatrix {
        mem: MemRef,
        offset: Box<Expr>,
        count: u8,
        trans: bool,
    },
    /// `cp_async_{4,8,16}(&mut tile, dst_index, src, src_index)`: PTX `cp.async` of `bytes`
    /// from the global buffer `src` at element `src_index` to the shared array `dst` at
    /// element `dst_index` (both aligned to `bytes`). The data is visible to the issuing
    /// thread only after the `cp_async_wait(n)` that completes its group. `ty` is bool
    /// (no value). With `src_bytes` (the `_zfill` forms, PTX's `src-size` operand) only the
    /// first `src_bytes` bytes are read and the rest of the `bytes` are zero-filled.
    /// `evict_first` (`cp_async_16_zfill_evict_first`) adds an L2 cache policy of
    /// `evict_first` (PTX `createpolicy` + `.L2::cache_hint`): a hint only, the copy's
    /// result is the same.
    CopyAsync {
        dst: MemRef,
        dst_index: Box<Expr>,
        src: MemRef,
        src_index: Box<Expr>,
        bytes: u8,
        src_bytes: Option<Box<Expr>>,
        evict_first: bool,
    },
    /// A call of a device function.
    Call {
        func: FnId,
        args: Vec<CallArg>,
    },
}

#[derive(Clone, Debug)]
pub enum CallArg {
    Value(Expr),
    Mem(MemRef),
}

/// Hardware indices and sizes (all u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    ThreadIdx(Dim),
    BlockIdx(Dim),
    BlockDim(Dim),
    GridDim(Dim),
    /// `thread_idx` linearized within the warp: `lane_id()` (0..32).
    LaneId,
    /// `warp_size()`: 32.
    WarpSize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    X,
    Y,
    Z,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    // math on floats (f32; f16/bf16 are computed in f32 and rounded back)
    Exp,
    Exp2,
    Ln,
    Sqrt,
    Rsqrt,
    Tanh,
    Abs,
    Floor,
    /// `a.mul_add(b, c)` = fma(a, b, c), one rounding.
    Fma,
    /// min/max: on floats with IEEE minNum/maxNum semantics (NaN loses, like `fminf`,
    /// which is also Rust's `f32::min`); on integers the usual.
    Min,
    Max,
    /// `__syncthreads()`: every thread of the block must reach the same one.
    SyncThreads,
    /// `warp_shfl_xor(v, lane_mask)`: the value of lane `lane ^ mask` (full warp).
    ShflXor,
    /// `warp_shfl_down(v, delta)`: lane `lane + delta`, or own value past the warp's end.
    ShflDown,
    /// `warp_shfl_up(v, delta)`: lane `lane - delta`, or own value below 0.
    ShflUp,
    /// `warp_shfl_idx(v, src_lane)`: lane `src_lane % 32`.
    ShflIdx,
    /// `warp_any(p)`, `warp_all(p)`: over the whole warp.
    VoteAny,
    VoteAll,
    /// `warp_ballot(p)`: u32 with bit i set when lane i's predicate holds.
    VoteBallot,
    /// `mma_m16n8k16_f16_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32>`:
    /// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`, D = A·B + C over the full warp;
    /// each u32 of `a`/`b` packs two f16 (low half first). Needs sm_80.
    MmaF16F32,
    /// As [`Intrinsic::MmaF16F32`] with bf16 inputs (`...f32.bf16.bf16.f32`).
    MmaBf16F32,
    /// `mma_m16n8k16_f16_f16(a: Vec4<u32>, b: Vec2<u32>, c: Vec2<u32>) -> Vec2<u32>`:
    /// `mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16`, f16 accumulators packed two per
    /// u32 (the `.f16x2` layout). Needs sm_80.
    MmaF16F16,
    /// `mma_m16n8k32_e4m3_f32(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32>`:
    /// `mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32`; each u32 of `a`/`b` packs four
    /// FP8 values (lowest k in bits 0..8). Needs sm_89.
    MmaE4m3F32,
    /// As [`Intrinsic::MmaE4m3F32`] with E5M2 inputs (`...f32.e5m2.e5m2.f32`). Needs sm_89.
    MmaE5m2F32,
    /// `{add,sub,mul,fma,max,min}_{f16x2,bf16x2}` on u32 registers holding two 16-bit floats
    /// (the `pack_f16x2` layout), lane-wise; the scalar type (F16 or BF16) says which.
    Half2(Half2Op, ScalarType),
    /// `pack_f16x2(lo, hi)` / `pack_bf16x2(lo, hi)` → u32: `lo` in bits 0..16, `hi` in
    /// 16..32 (the register layout of `.f16x2`); the operand type says which.
    Pack2x16,
    /// `unpack_f16x2(x)` / `unpack_bf16x2(x)` → `Vec2<f16|bf16>`: `.x` from bits 0..16,
    /// `.y` from 16..32; the result type says which.
    Unpack2x16,
    /// `cp_async_commit()`: `cp.async.commit_group`, closing this thread's group of
    /// `cp_async_*` copies issued since the last commit.
    CpAsyncCommit,
    /// `cp_async_wait(n)`: `cp.async.wait_group n`; waits until at most `n` (a literal u32)
    /// of this thread's committed groups are pending, making the others' data visible.
    CpAsyncWait,
    /// `lop3(a, b, c, lut)` → u32: `lop3.b32`, bit i of the result is bit
    /// `4·a_i + 2·b_i + c_i` of `lut` (a literal 0..=255; write it as `F(0xF0, 0xCC, 0xAA)`).
    Lop3,
    /// `prmt(a, b, selector)` → u32: `prmt.b32` default mode; byte i of the result is byte
    /// `s & 7` of the 8 bytes `b:a` (a in bytes 0..4), or its sign bit replicated when
    /// `s & 8`, with `s` = nibble i of `selector`.
    Prmt,
    /// `ex2_approx(x)` (f32): `ex2.approx.f32`, 2^x.
    Ex2Approx,
}

/// Packed 16-bit-pair arithmetic (PTX ISA 9.7.4, "Half Precision Floating-Point
/// Instructions"): round to nearest even, subnormals kept, lane by lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Half2Op {
    Add,
    Sub,
    Mul,
    /// `a * b + c`, one rounding.
    Fma,
    /// IEEE maxNum / minNum: a NaN operand loses to a number.
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// f32, i32, u32
    Add,
    /// i32, u32
    Min,
    Max,
    /// `args = [compare, value]`: stores `value` when the old value equals `compare`
    /// (i32, u32, u64 by bits).
    Cas,
}

impl Expr {
    pub fn lit(ty: Type, bits: u64) -> Expr {
        Expr {
            kind: ExprKind::Lit(bits),
            ty,
        }
    }

    pub fn scalar_ty(&self) -> ScalarType {
        self.ty.elem()
    }
}

impl Kernel {
    /// Threads per block when the kernel declares its block shape.
    pub fn threads_per_block(&self) -> Option<u32> {
        self.block_dim.map(|d| d[0] * d[1] * d[2])
    }

    /// Global buffer parameters of the entry, with their index among all parameters.
    pub fn slice_params(&self) -> impl Iterator<Item = (usize, &Param)> {
        self.body
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, ParamKind::Slice { .. }))
    }
}
