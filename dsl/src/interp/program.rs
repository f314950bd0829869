//! The compiled form of one launch: the typed IR flattened into register operations under
//! structured control flow, with device functions inlined.
//!
//! A register is a column of one `u64` bit pattern per thread of the block (the encoding of
//! `typed::ExprKind::Lit`). A vector value of n lanes occupies n consecutive registers.
//! Registers are permanent (variables, constants, hardware indices) or temporaries; a
//! temporary carries [`TEMP`] and lives after all permanent registers in the register file,
//! so that temporaries can be reused statement by statement while variables are still being
//! allocated.

pub(super) use super::mma::MmaKind;
use crate::ir::{BinOp, UnOp};
use crate::typed::{AtomicOp, Half2Op, Intrinsic};
use crate::types::ScalarType;

pub(super) type Reg = u32;

/// Marks a temporary register.
pub(super) const TEMP: Reg = 1 << 31;

/// A compiled statement: an operation, or structured control flow over nested blocks.
#[derive(Debug)]
pub(super) enum Node {
    Op(Op),
    /// Lanes with `cond != 0` run `then`, the others `els`.
    If {
        cond: Reg,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Loop(Box<LoopNode>),
    /// An inlined device function call; `depth` is the callee's call depth.
    Call {
        depth: u32,
        body: Vec<Node>,
    },
    Break,
    Continue,
    /// Return from the function at `depth` (0: the kernel, the thread exits), with the
    /// result copied from `value.0` to `value.1` (`value.2` registers).
    Return {
        depth: u32,
        value: Option<(Reg, Reg, u8)>,
    },
    /// `sync_threads()`, issued by the statement at `site`.
    SyncThreads {
        site: SiteId,
    },
}

/// `while cond { body; step }`: the condition is computed by `cond` into `cond_reg`.
#[derive(Debug)]
pub(super) struct LoopNode {
    pub cond: Vec<Node>,
    pub cond_reg: Reg,
    pub body: Vec<Node>,
    /// The increment of a `for` loop, run after the body (also by `continue`d lanes).
    pub step: Option<Step>,
    /// Call depth of the function the loop is in (its returned lanes leave the loop).
    pub depth: u32,
    /// The loop statement (named when the step budget runs out).
    pub site: SiteId,
}

/// `var += step` with overflow ending the loop for that lane (as `step_by` does).
#[derive(Debug)]
pub(super) struct Step {
    pub var: Reg,
    pub step: Reg,
    pub ty: ScalarType,
}

/// Float math of one operand type (integers for Min, Max, Abs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MathFn {
    Exp,
    Exp2,
    Ln,
    Sqrt,
    Rsqrt,
    Tanh,
    Abs,
    Floor,
    Fma,
    Min,
    Max,
    /// `ex2.approx.f32`.
    Ex2Approx,
}

impl MathFn {
    pub fn of(intrinsic: Intrinsic) -> Option<MathFn> {
        Some(match intrinsic {
            Intrinsic::Exp => MathFn::Exp,
            Intrinsic::Exp2 => MathFn::Exp2,
            Intrinsic::Ln => MathFn::Ln,
            Intrinsic::Sqrt => MathFn::Sqrt,
            Intrinsic::Rsqrt => MathFn::Rsqrt,
            Intrinsic::Tanh => MathFn::Tanh,
            Intrinsic::Abs => MathFn::Abs,
            Intrinsic::Floor => MathFn::Floor,
            Intrinsic::Fma => MathFn::Fma,
            Intrinsic::Min => MathFn::Min,
            Intrinsic::Max => MathFn::Max,
            Intrinsic::Ex2Approx => MathFn::Ex2Approx,
            _ => return None,
        })
    }

    pub fn arity(self) -> usize {
        match self {
            MathFn::Fma => 3,
            MathFn::Min | MathFn::Max => 2,
            _ => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShflKind {
    Xor,
    Down,
    Up,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VoteKind {
    Any,
    All,
    Ballot,
}

/// Index of a source statement in [`Program::sites`].
pub(super) type SiteId = u32;

/// The source statement an operation comes from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Site {
    pub line: u32,
    /// The device function the statement is in (inlined); `None` in the kernel body.
    /// Device functions may live in another file, which the typed IR does not record.
    pub device_fn: Option<String>,
}

/// Index of a memory region in [`Program::mems`].
pub(super) type MemId = u32;

/// An operation over the active lanes. Scalar except memory operations, which move all
/// lanes of the memory's element type.
#[derive(Debug)]
pub(super) enum Op {
    Copy {
        dst: Reg,
        src: Reg,
    },
    /// `dst = a op b` on operands of type `ty` (comparisons give bool).
    Bin {
        op: BinOp,
        ty: ScalarType,
        dst: Reg,
        a: Reg,
        b: Reg,
    },
    Un {
        op: UnOp,
        ty: ScalarType,
        dst: Reg,
        a: Reg,
    },
    Cast {
        from: ScalarType,
        to: ScalarType,
        dst: Reg,
        src: Reg,
    },
    Math {
        f: MathFn,
        ty: ScalarType,
        dst: Reg,
        args: [Reg; 3],
    },
    Load {
        mem: MemId,
        index: Reg,
        dst: Reg,
        site: SiteId,
    },
    Store {
        mem: MemId,
        index: Reg,
        src: Reg,
        site: SiteId,
    },
    Atomic {
        op: AtomicOp,
        mem: MemId,
        index: Reg,
        args: [Reg; 2],
        dst: Reg,
        site: SiteId,
    },
    Shfl {
        kind: ShflKind,
        dst: Reg,
        src: Reg,
        lane: Reg,
        site: SiteId,
    },
    Vote {
        kind: VoteKind,
        dst: Reg,
        src: Reg,
        site: SiteId,
    },
    /// `mma.sync` of `kind`: reads the fragments `a` (4 registers), `b` (2), `c` (4, or 2
    /// for f16 accumulators) of every lane of the warp, writes `dst` (as many as `c`).
    Mma {
        kind: MmaKind,
        dst: Reg,
        a: Reg,
        b: Reg,
        c: Reg,
        site: SiteId,
    },
    /// `lop3.b32` / `prmt.b32` on u32 registers.
    Bits {
        op: BitsOp,
        dst: Reg,
        args: [Reg; 3],
    },
    /// Packed 16-bit-pair arithmetic on u32 registers (`half` F16 or BF16; `args[2]` used
    /// by `Fma` only).
    Half2 {
        op: Half2Op,
        half: ScalarType,
        dst: Reg,
        args: [Reg; 3],
    },
    /// `ldmatrix`: see [`MatrixLoad`].
    LdMatrix(MatrixLoad),
    /// `cp.async`: see [`AsyncCopy`].
    CopyAsync(AsyncCopy),
    /// `cp.async.commit_group`.
    CpAsyncCommit,
    /// `cp.async.wait_group n`.
    CpAsyncWait {
        n: u32,
    },
    /// Zero a local array (its declaration).
    ZeroLocal {
        mem: MemId,
    },
}

/// `ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16` from shared `mem`: lane
/// `8m + r` holds in `offset` the element offset of row `r` of matrix `m`; `dst` gets
/// `count` registers.
#[derive(Clone, Copy, Debug)]
pub(super) struct MatrixLoad {
    pub mem: MemId,
    pub offset: Reg,
    pub dst: Reg,
    pub count: u8,
    pub trans: bool,
    pub site: SiteId,
}

/// `cp.async` of `bytes` from global `src[src_index..]` to shared `dst[dst_index..]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct AsyncCopy {
    pub dst: MemId,
    pub dst_index: Reg,
    pub src: MemId,
    pub src_index: Reg,
    pub bytes: u8,
    /// The bytes read from the source (`_zfill` forms); the rest are zeroed.
    pub src_bytes: Option<Reg>,
    pub site: SiteId,
}

/// Bit-manipulation instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BitsOp {
    /// With its truth table.
    Lop3(u8),
    Prmt,
}

/// Where a memory region lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MemKind {
    /// Launch argument `arg` (a global buffer).
    Global { arg: usize },
    /// Shared array at `offset` (in scalar slots) of the block's shared memory.
    Shared { offset: usize },
    /// Local array at `offset` (in scalar slots) of each thread's local memory.
    Local { offset: usize },
}

/// A memory region the kernel can access: a global buffer, a shared or a local array.
#[derive(Clone, Debug)]
pub(super) struct MemInfo {
    pub kind: MemKind,
    /// The name for error messages (the parameter or array name).
    pub name: String,
    pub elem: ScalarType,
    pub lanes: u8,
    /// Length in elements.
    pub len: u64,
    pub writable: bool,
}

/// Registers holding the hardware indices, filled when a block starts.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BuiltinRegs {
    pub thread_idx: [Reg; 3],
    pub lane_id: Reg,
    pub block_idx: [Reg; 3],
}

/// A kernel compiled for one launch.
#[derive(Debug)]
pub(super) struct Program {
    pub kernel: String,
    /// The kernel's source file.
    pub file: String,
    /// Source statements, indexed by [`SiteId`].
    pub sites: Vec<Site>,
    pub body: Vec<Node>,
    pub mems: Vec<MemInfo>,
    pub perm_regs: u32,
    pub temp_regs: u32,
    /// Constant registers (literals, lengths, dimensions, value arguments).
    pub consts: Vec<(Reg, u64)>,
    pub builtins: BuiltinRegs,
    /// Scalar slots of shared memory per block and of local memory per thread.
    pub shared_slots: usize,
    pub local_slots: usize,
    /// The deepest call depth (0: the kernel entry only).
    pub max_depth: u32,
    pub block_dim: [u32; 3],
}

impl Program {
    /// The poisoned contents of a block's shared memory: each slot with every bit of its
    /// scalar type set (`bool`: 1, the only other value a `bool` slot holds).
    pub fn shared_poison(&self) -> Vec<u64> {
        let mut slots = vec![0; self.shared_slots];
        for m in &self.mems {
            if let MemKind::Shared { offset } = m.kind {
                let bits = match m.elem {
                    ScalarType::Bool => 1,
                    ty => u64::MAX >> (64 - 8 * ty.size_bytes()),
                };
                let n = m.len as usize * m.lanes as usize;
                slots[offset..offset + n].fill(bits);
            }
        }
        slots
    }

    /// Threads per block.
    pub fn threads(&self) -> usize {
        self.block_dim.iter().map(|&d| d as usize).product()
    }

    /// Position of `reg` in the register file (in columns).
    #[inline]
    pub fn column(&self, reg: Reg) -> usize {
        if reg & TEMP != 0 {
            (self.perm_regs + (reg & !TEMP)) as usize
        } else {
            reg as usize
        }
    }

    pub fn total_regs(&self) -> usize {
        (self.perm_regs + self.temp_regs) as usize
    }

    /// Where statement `site` is: `file:line` in the kernel body, or the line and the
    /// device function's name.
    pub fn site(&self, site: SiteId) -> String {
        match self.sites.get(site as usize) {
            Some(Site {
                line,
                device_fn: None,
            }) => format!("{}:{line}", self.file),
            Some(Site {
                line,
                device_fn: Some(name),
            }) => format!("line {line} in device function {name}"),
            None => format!("{} (unknown line)", self.file),
        }
    }
}
