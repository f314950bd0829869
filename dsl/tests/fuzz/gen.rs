//! A seeded generator of random well-typed typed-IR kernels for the fuzz test.
//!
//! Every kernel respects the typed IR's invariants (`dsl/src/typed.rs`): unique variable
//! names, declared before use, in scope; binary operands of one type; arrays declared once
//! at the top. It is also free of races and undefined behaviour, so its result is a
//! function of the inputs alone:
//! - each thread writes only its own output slot (`out[gid]`); shared memory is written at
//!   `sh[tid]` and read after a barrier, with a second barrier before the next write;
//! - barriers, shuffles and ballots appear only at block-uniform points: the top level, in
//!   constant-bound loops, and under conditions on `blockIdx` (the block is a whole number
//!   of warps, so uniform in the block means every lane of every warp is present);
//! - `break`/`continue` only in loops entered at a non-uniform point;
//! - indices are taken `% len`; integer `/` and `%` divide by a positive literal.

use std::collections::HashSet;
use warpforge_dsl::ir::{BinOp, Span};
use warpforge_dsl::space::Config;
use warpforge_dsl::typed::*;
use warpforge_dsl::types::Type;

/// SplitMix64: small, seedable, good enough to pick shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next() % n as u64) as u32
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

/// Parameters of every generated kernel, in order.
pub const IN_I32: u32 = 0;
pub const IN_F32: u32 = 1;
pub const OUT_I32: u32 = 2;
pub const OUT_F32: u32 = 3;

pub(crate) const I32: Type = Type::I32;
pub(crate) const U32: Type = Type::U32;
pub(crate) const F32: Type = Type::F32;
pub(crate) const BOOL: Type = Type::BOOL;
pub(crate) const NUMERIC: [Type; 3] = [I32, U32, F32];

/// One generated kernel and its launch shape.
pub struct Case {
    pub kernel: Kernel,
    pub grid: u32,
    pub block: u32,
}

/// Where a statement is generated.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// Every thread of the block reaches this point together.
    pub(crate) uniform: bool,
    /// Inside a loop that may be left early (entered at a non-uniform point).
    pub(crate) breakable: bool,
    pub(crate) depth: u32,
}

pub(crate) struct Gen {
    pub(crate) rng: Rng,
    pub(crate) vars: Vec<VarInfo>,
    /// Visible variables, innermost scope last.
    pub(crate) scopes: Vec<Vec<VarId>>,
    /// Loop variables: readable, never assigned.
    pub(crate) readonly: HashSet<VarId>,
    pub(crate) block: u32,
    pub(crate) shared: ArrayId,
    pub(crate) local: ArrayId,
    pub(crate) gid: VarId,
    pub(crate) tid: VarId,
}

pub fn generate(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let block = 32 * (1 + rng.below(3));
    let grid = 1 + rng.below(3);
    let mut g = Gen {
        rng,
        vars: Vec::new(),
        scopes: vec![Vec::new()],
        readonly: HashSet::new(),
        block,
        shared: ArrayId(0),
        local: ArrayId(1),
        gid: VarId(0),
        tid: VarId(0),
    };
    let body = g.body();
    let arrays = vec![
        ArrayInfo {
            name: "sh".into(),
            elem: F32,
            len: block,
            space: ArraySpace::Shared,
        },
        ArrayInfo {
            name: "loc".into(),
            elem: I32,
            len: 4,
            space: ArraySpace::Local,
        },
    ];
    let slice = |name: &str, elem, mutable| Param {
        name: name.into(),
        kind: ParamKind::Slice { elem, mutable },
    };
    let symbol = format!("fuzz_{seed:x}");
    let kernel = Kernel {
        name: "fuzz".into(),
        symbol: symbol.clone(),
        file: "dsl/tests/fuzz/gen.rs".into(),
        line: 1,
        config: Config::new().with("SEED", seed as i64),
        block_dim: Some([block, 1, 1]),
        body: Function {
            name: symbol,
            params: vec![
                slice("in_i", I32, false),
                slice("in_f", F32, false),
                slice("out_i", I32, true),
                slice("out_f", F32, true),
            ],
            ret: None,
            vars: g.vars,
            arrays,
            body,
            line: 1,
        },
        device_fns: vec![],
    };
    Case {
        kernel,
        grid,
        block,
    }
}

pub(crate) fn stmt(kind: StmtKind) -> Stmt {
    Stmt {
        kind,
        span: Span::new(2, 0),
    }
}

pub(crate) fn ex(kind: ExprKind, ty: Type) -> Expr {
    Expr { kind, ty }
}

pub(crate) fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    let ty = if op.is_comparison() || op.is_logical() {
        BOOL
    } else {
        a.ty
    };
    ex(ExprKind::Binary(op, Box::new(a), Box::new(b)), ty)
}

pub(crate) fn lit_u32(v: u32) -> Expr {
    Expr::lit(U32, v as u64)
}

pub(crate) fn builtin(b: Builtin) -> Expr {
    ex(ExprKind::Builtin(b), U32)
}

impl Gen {
    fn declare(&mut self, ty: Type, mutable: bool) -> VarId {
        let id = VarId(self.vars.len() as u32);
        self.vars.push(VarInfo {
            name: format!("v{}", id.0),
            ty,
            mutable,
        });
        self.scopes.last_mut().expect("a scope").push(id);
        id
    }

    pub(crate) fn var(&self, id: VarId) -> Expr {
        ex(ExprKind::Var(id), self.vars[id.0 as usize].ty)
    }

    pub(crate) fn visible(&self, ty: Type, assignable: bool) -> Vec<VarId> {
        self.scopes
            .iter()
            .flatten()
            .copied()
            .filter(|v| self.vars[v.0 as usize].ty == ty)
            .filter(|v| {
                !assignable || (self.vars[v.0 as usize].mutable && !self.readonly.contains(v))
            })
            .collect()
    }

    fn body(&mut self) -> Vec<Stmt> {
        let mut out = vec![
            stmt(StmtKind::DeclareArray(self.shared)),
            stmt(StmtKind::DeclareArray(self.local)),
        ];
        self.tid = self.declare(U32, false);
        out.push(stmt(StmtKind::Let {
            var: self.tid,
            init: Some(builtin(Builtin::ThreadIdx(Dim::X))),
        }));
        let gid = bin(
            BinOp::Add,
            bin(
                BinOp::Mul,
                builtin(Builtin::BlockIdx(Dim::X)),
                builtin(Builtin::BlockDim(Dim::X)),
            ),
            self.var(self.tid),
        );
        self.gid = self.declare(U32, false);
        out.push(stmt(StmtKind::Let {
            var: self.gid,
            init: Some(gid),
        }));
        let ctx = Ctx {
            uniform: true,
            breakable: false,
            depth: 0,
        };
        let count = 3 + self.rng.below(6);
        for _ in 0..count {
            out.extend(self.stmts(ctx));
        }
        out.extend(self.outputs());
        out
    }

    /// `out_i[gid] = <all i32/u32 vars mixed>; out_f[gid] = <all f32 vars summed>`.
    fn outputs(&mut self) -> Vec<Stmt> {
        let mut acc_i = Expr::lit(I32, 0);
        for v in self.visible(I32, false) {
            acc_i = bin(
                BinOp::BitXor,
                bin(BinOp::Mul, acc_i, Expr::lit(I32, 31)),
                self.var(v),
            );
        }
        for v in self.visible(U32, false) {
            let as_i = ex(ExprKind::Cast(Box::new(self.var(v))), I32);
            acc_i = bin(BinOp::Add, bin(BinOp::Mul, acc_i, Expr::lit(I32, 17)), as_i);
        }
        let mut acc_f = Expr::lit(F32, 0f32.to_bits() as u64);
        for v in self.visible(F32, false) {
            acc_f = bin(BinOp::Add, acc_f, self.var(v));
        }
        let store = |mem, value| {
            stmt(StmtKind::Store {
                mem: MemRef::Param(mem),
                index: ex(ExprKind::Var(self.gid), U32),
                op: None,
                value,
            })
        };
        vec![store(OUT_I32, acc_i), store(OUT_F32, acc_f)]
    }

    /// One statement, or a short group that belongs together (a barrier phase).
    fn stmts(&mut self, ctx: Ctx) -> Vec<Stmt> {
        let nested = ctx.depth < 3;
        loop {
            return match self.rng.below(13) {
                0..=2 => vec![self.let_stmt(ctx)],
                3 | 4 => match self.assign(ctx) {
                    Some(s) => vec![s],
                    None => continue,
                },
                5 if nested => vec![self.if_stmt(ctx)],
                6 if nested => vec![self.for_stmt(ctx)],
                7 if ctx.uniform => self.barrier_phase(ctx),
                8 if ctx.uniform => vec![self.warp_op(ctx)],
                9 => vec![self.local_store(ctx)],
                10 => vec![self.own_slot_store(ctx)],
                11 if ctx.breakable => {
                    vec![stmt(if self.rng.chance(50) {
                        StmtKind::Break
                    } else {
                        StmtKind::Continue
                    })]
                }
                12 if nested => self.counted_while(ctx),
                _ => continue,
            };
        }
    }

    fn block_in_scope(&mut self, ctx: Ctx, count: u32) -> Vec<Stmt> {
        self.scopes.push(Vec::new());
        let mut out = Vec::new();
        for _ in 0..count {
            out.extend(self.stmts(ctx));
        }
        self.scopes.pop();
        out
    }

    fn let_stmt(&mut self, ctx: Ctx) -> Stmt {
        let ty = NUMERIC[self.rng.below(3) as usize];
        let init = {
            let depth = 2 + self.rng.below(2);
            self.expr(ty, depth, ctx)
        };
        let var = self.declare(ty, true);
        stmt(StmtKind::Let {
            var,
            init: Some(init),
        })
    }

    fn assign(&mut self, ctx: Ctx) -> Option<Stmt> {
        let ty = NUMERIC[self.rng.below(3) as usize];
        let vars = self.visible(ty, true);
        let var = *vars.get(self.rng.below(vars.len().max(1) as u32) as usize)?;
        let value = self.expr(ty, 2, ctx);
        let ops: &[BinOp] = if ty == F32 {
            &[BinOp::Add, BinOp::Mul, BinOp::Sub]
        } else {
            &[
                BinOp::Add,
                BinOp::Mul,
                BinOp::BitXor,
                BinOp::Sub,
                BinOp::Shl,
            ]
        };
        let op = self
            .rng
            .chance(60)
            .then(|| ops[self.rng.below(ops.len() as u32) as usize]);
        let value = match op {
            // Shift amounts are taken modulo the width by the IR; keep them u32 like Rust.
            Some(BinOp::Shl) => self.expr(U32, 1, ctx),
            _ => value,
        };
        Some(stmt(StmtKind::AssignVar { var, op, value }))
    }

    fn if_stmt(&mut self, ctx: Ctx) -> Stmt {
        // A condition on the block index keeps the body block-uniform.
        let uniform_cond = ctx.uniform && self.rng.chance(40);
        let cond = if uniform_cond {
            let limit = lit_u32(self.rng.below(3));
            bin(BinOp::Le, builtin(Builtin::BlockIdx(Dim::X)), limit)
        } else {
            self.expr(BOOL, 2, ctx)
        };
        let inner = Ctx {
            uniform: uniform_cond,
            depth: ctx.depth + 1,
            ..ctx
        };
        let then = {
            let n = 1 + self.rng.below(3);
            self.block_in_scope(inner, n)
        };
        let n_else = self.rng.below(3);
        let els = self.block_in_scope(inner, n_else);
        stmt(StmtKind::If { cond, then, els })
    }

    fn for_stmt(&mut self, ctx: Ctx) -> Stmt {
        let ty = if self.rng.chance(50) { U32 } else { I32 };
        let start = self.rng.below(3) as u64;
        let end = start + self.rng.below(4) as u64;
        let step = 1 + self.rng.below(2) as u64;
        let unroll = [None, Some(0), Some(2)][self.rng.below(3) as usize];
        self.scopes.push(Vec::new());
        let var = self.declare(ty, false);
        self.readonly.insert(var);
        let inner = Ctx {
            breakable: !ctx.uniform,
            depth: ctx.depth + 1,
            ..ctx
        };
        let body = {
            let n = 1 + self.rng.below(3);
            self.block_in_scope(inner, n)
        };
        self.scopes.pop();
        stmt(StmtKind::For {
            var,
            start: Expr::lit(ty, start),
            end: Expr::lit(ty, end),
            step: Expr::lit(ty, step),
            unroll,
            body,
        })
    }

    /// `let c = 0; while c < K { c += 1; ... }`: the count goes first so `continue` cannot
    /// skip it.
    fn counted_while(&mut self, ctx: Ctx) -> Vec<Stmt> {
        let c = self.declare(U32, true);
        self.readonly.insert(c);
        let k = lit_u32(self.rng.below(4));
        let inner = Ctx {
            breakable: !ctx.uniform,
            depth: ctx.depth + 1,
            ..ctx
        };
        let mut body = vec![stmt(StmtKind::AssignVar {
            var: c,
            op: Some(BinOp::Add),
            value: lit_u32(1),
        })];
        body.extend({
            let n = 1 + self.rng.below(2);
            self.block_in_scope(inner, n)
        });
        vec![
            stmt(StmtKind::Let {
                var: c,
                init: Some(lit_u32(0)),
            }),
            stmt(StmtKind::While {
                cond: bin(BinOp::Lt, self.var(c), k),
                body,
            }),
        ]
    }

    /// `sh[tid] = x; sync; let v = sh[(tid + k) % len]; sync;`
    fn barrier_phase(&mut self, ctx: Ctx) -> Vec<Stmt> {
        let sync = || {
            stmt(StmtKind::Eval(ex(
                ExprKind::Intrinsic(Intrinsic::SyncThreads, vec![]),
                BOOL,
            )))
        };
        let value = self.expr(F32, 2, ctx);
        let shift = lit_u32(self.rng.below(self.block * 2));
        let index = bin(
            BinOp::Rem,
            bin(BinOp::Add, self.var(self.tid), shift),
            ex(ExprKind::Len(MemRef::Array(self.shared)), U32),
        );
        let load = ex(
            ExprKind::Load {
                mem: MemRef::Array(self.shared),
                index: Box::new(index),
            },
            F32,
        );
        let var = self.declare(F32, true);
        vec![
            stmt(StmtKind::Store {
                mem: MemRef::Array(self.shared),
                index: self.var(self.tid),
                op: None,
                value,
            }),
            sync(),
            stmt(StmtKind::Let {
                var,
                init: Some(load),
            }),
            sync(),
        ]
    }

    /// A shuffle or ballot into a new variable.
    fn warp_op(&mut self, ctx: Ctx) -> Stmt {
        let (init, ty) = if self.rng.chance(20) {
            let p = self.expr(BOOL, 2, ctx);
            (
                ex(ExprKind::Intrinsic(Intrinsic::VoteBallot, vec![p]), U32),
                U32,
            )
        } else {
            let ty = NUMERIC[self.rng.below(3) as usize];
            let ops = [
                Intrinsic::ShflXor,
                Intrinsic::ShflDown,
                Intrinsic::ShflUp,
                Intrinsic::ShflIdx,
            ];
            let op = ops[self.rng.below(4) as usize];
            let v = self.expr(ty, 2, ctx);
            let lane = if self.rng.chance(70) {
                lit_u32(self.rng.below(32))
            } else {
                self.expr(U32, 1, ctx)
            };
            (ex(ExprKind::Intrinsic(op, vec![v, lane]), ty), ty)
        };
        let var = self.declare(ty, true);
        stmt(StmtKind::Let {
            var,
            init: Some(init),
        })
    }

    fn local_store(&mut self, ctx: Ctx) -> Stmt {
        let index = self.index_into(MemRef::Array(self.local), ctx);
        let value = self.expr(I32, 2, ctx);
        let op = self.rng.chance(40).then_some(BinOp::Add);
        stmt(StmtKind::Store {
            mem: MemRef::Array(self.local),
            index,
            op,
            value,
        })
    }

    /// `out_i[gid] op= x`: each thread owns its slot, so no race.
    fn own_slot_store(&mut self, ctx: Ctx) -> Stmt {
        let value = self.expr(I32, 2, ctx);
        let op = self.rng.chance(50).then_some(BinOp::BitXor);
        stmt(StmtKind::Store {
            mem: MemRef::Param(OUT_I32),
            index: self.var(self.gid),
            op,
            value,
        })
    }
}
