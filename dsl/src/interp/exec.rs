//! Runs a compiled [`Program`] for one block, all threads in lockstep (SIMT).
//!
//! Statements run over an active mask: the sorted list of the block's threads executing
//! them. `If` splits the mask; a loop runs while any lane is left; `break`, `continue` and
//! `return` drop lanes from the mask (continued lanes come back for the next iteration,
//! broken ones after the loop, returned ones after the call; a thread returning from the
//! kernel has exited). Only active lanes compute, so only they can fault.

use std::cell::Cell;

use super::compile::checked_step;
use super::cp_async::ThreadCopies;
use super::error::{Coord, InterpError};
use super::half2;
use super::memory::GlobalBuf;
use super::program::*;
use super::sanitize::Sanitizer;
use super::scalar;
use super::InterpOptions;
use crate::ir::BinOp;
use crate::types::ScalarType;

pub(super) type Result<T> = std::result::Result<T, InterpError>;

/// The state of one block; created once per worker and reused for the blocks it runs.
pub(super) struct BlockState<'p> {
    pub(super) prog: &'p Program,
    pub(super) globals: &'p [GlobalBuf],
    /// Threads per block.
    pub(super) n: usize,
    /// The register file: column `c` is `regs[c * n..(c + 1) * n]`. Cells let an operation
    /// read its operands and write its destination, which may be the same column.
    pub(super) regs: Vec<Cell<u64>>,
    pub(super) shared: Vec<u64>,
    /// What `shared` holds when a block starts (poison or zeros).
    shared_start: Vec<u64>,
    /// Local memory: `local_slots` per thread, thread-major.
    pub(super) local: Vec<u64>,
    /// Per call depth, the lanes that returned from the function running at that depth;
    /// depth 0 (the kernel) holds the exited threads.
    pub(super) returned: Vec<Vec<bool>>,
    pub(super) exited: usize,
    pool: Vec<Vec<u32>>,
    continues: Vec<Vec<u32>>,
    pub(super) block: [u32; 3],
    /// Per-thread scratch for collectives.
    pub(super) active: Vec<bool>,
    /// Register-level instructions executed, summed over the threads that executed them.
    pub(super) thread_instructions: u64,
    /// Thread-steps (instructions and loop iterations) this block may still run.
    steps_left: u64,
    step_budget: u64,
    /// `thread_instructions` when steps were last charged.
    charged: u64,
    pub(super) san: Sanitizer,
    /// Per thread, its `cp.async` copies not yet waited for.
    pub(super) async_copies: Vec<ThreadCopies>,
}

/// Runs `f` for every active lane, with a tight loop when the mask is full.
#[inline(always)]
pub(super) fn for_lanes(mask: &[u32], n: usize, mut f: impl FnMut(usize)) {
    if mask.len() == n {
        (0..n).for_each(&mut f);
    } else {
        mask.iter().for_each(|&i| f(i as usize));
    }
}

impl<'p> BlockState<'p> {
    pub fn new(
        prog: &'p Program,
        globals: &'p [GlobalBuf],
        options: &InterpOptions,
    ) -> BlockState<'p> {
        let n = prog.threads();
        BlockState {
            prog,
            globals,
            n,
            regs: vec![Cell::new(0); prog.total_regs() * n],
            shared: vec![0; prog.shared_slots],
            shared_start: if options.poison_shared {
                prog.shared_poison()
            } else {
                vec![0; prog.shared_slots]
            },
            local: vec![0; prog.local_slots * n],
            returned: vec![vec![false; n]; prog.max_depth as usize + 1],
            exited: 0,
            pool: Vec::new(),
            continues: Vec::new(),
            block: [0; 3],
            active: vec![false; n],
            thread_instructions: 0,
            steps_left: 0,
            charged: 0,
            step_budget: options.step_budget,
            async_copies: (0..n).map(|_| ThreadCopies::default()).collect(),
            san: Sanitizer::new(
                options.races,
                options.uninit_shared_reads,
                prog.shared_slots,
            ),
        }
    }

    pub(super) fn col(&self, r: Reg) -> &[Cell<u64>] {
        let c = self.prog.column(r);
        &self.regs[c * self.n..(c + 1) * self.n]
    }

    pub(super) fn thread(&self, i: usize) -> Coord {
        let [bx, by, _] = self.prog.block_dim.map(|d| d as usize);
        Coord([
            (i % bx) as u32,
            ((i / bx) % by) as u32,
            (i / (bx * by)) as u32,
        ])
    }

    pub(super) fn take(&mut self) -> Vec<u32> {
        let mut v = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.n));
        v.clear();
        v
    }

    pub(super) fn give(&mut self, v: Vec<u32>) {
        self.pool.push(v);
    }

    /// Runs the kernel for the block `block`.
    pub fn run(&mut self, block: [u32; 3]) -> Result<()> {
        self.reset(block);
        let mut mask = self.take();
        mask.extend(0..self.n as u32);
        let prog = self.prog;
        let result = self.exec(&prog.body, &mut mask);
        self.give(mask);
        result
    }

    fn reset(&mut self, block: [u32; 3]) {
        self.block = block;
        self.shared.copy_from_slice(&self.shared_start);
        self.san.begin_block();
        self.steps_left = self.step_budget;
        self.charged = self.thread_instructions;
        self.exited = 0;
        self.continues.clear();
        // Copies never waited for land in the finished block's shared memory: dropped.
        self.async_copies.iter_mut().for_each(ThreadCopies::clear);
        for r in &mut self.returned {
            r.fill(false);
        }
        let prog = self.prog;
        for &(reg, bits) in &prog.consts {
            self.col(reg).iter().for_each(|c| c.set(bits));
        }
        let b = prog.builtins;
        for i in 0..self.n {
            let t = self.thread(i).0;
            for d in 0..3 {
                self.col(b.thread_idx[d])[i].set(t[d] as u64);
                self.col(b.block_idx[d])[i].set(block[d] as u64);
            }
            self.col(b.lane_id)[i].set((i % 32) as u64);
        }
    }

    fn exec(&mut self, nodes: &'p [Node], mask: &mut Vec<u32>) -> Result<()> {
        for node in nodes {
            if mask.is_empty() {
                break;
            }
            match node {
                Node::Op(op) => {
                    self.thread_instructions += mask.len() as u64;
                    self.op(op, mask)?
                }
                Node::If { cond, then, els } => self.exec_if(*cond, then, els, mask)?,
                Node::Loop(l) => self.exec_loop(l, mask)?,
                Node::Call { depth, body } => {
                    let mut entry = self.take();
                    entry.extend_from_slice(mask);
                    let returned = &mut self.returned[*depth as usize];
                    mask.iter().for_each(|&i| returned[i as usize] = false);
                    self.exec(body, mask)?;
                    std::mem::swap(mask, &mut entry);
                    self.give(entry);
                }
                Node::Break => mask.clear(),
                Node::Continue => {
                    if let Some(c) = self.continues.last_mut() {
                        c.extend_from_slice(mask);
                    }
                    mask.clear();
                }
                Node::Return { depth, value } => self.exec_return(*depth, *value, mask),
                Node::SyncThreads { site } => self.sync_threads(mask, *site)?,
            }
        }
        Ok(())
    }

    fn exec_return(&mut self, depth: u32, value: Option<(Reg, Reg, u8)>, mask: &mut Vec<u32>) {
        if let Some((src, dst, lanes)) = value {
            for l in 0..lanes as u32 {
                self.copy(dst + l, src + l, mask);
            }
        }
        let returned = &mut self.returned[depth as usize];
        mask.iter().for_each(|&i| returned[i as usize] = true);
        if depth == 0 {
            self.exited += mask.len();
        }
        mask.clear();
    }

    fn exec_if(
        &mut self,
        cond: Reg,
        then: &'p [Node],
        els: &'p [Node],
        mask: &mut Vec<u32>,
    ) -> Result<()> {
        let (mut t, mut e) = (self.take(), self.take());
        let c = self.col(cond);
        for &i in mask.iter() {
            if c[i as usize].get() != 0 {
                t.push(i);
            } else {
                e.push(i);
            }
        }
        if !t.is_empty() {
            self.exec(then, &mut t)?;
        }
        if !e.is_empty() {
            self.exec(els, &mut e)?;
        }
        // Lanes only leave a branch; when none left, the mask is unchanged.
        if t.len() + e.len() != mask.len() {
            merge_sorted(&t, &e, mask);
        }
        self.give(t);
        self.give(e);
        Ok(())
    }

    fn exec_loop(&mut self, l: &'p LoopNode, mask: &mut Vec<u32>) -> Result<()> {
        let mut entry = self.take();
        entry.extend_from_slice(mask);
        let cont = self.take();
        self.continues.push(cont);
        loop {
            self.spend_steps(l, mask)?;
            self.exec(&l.cond, mask)?;
            let c = self.col(l.cond_reg);
            mask.retain(|&i| c[i as usize].get() != 0);
            if mask.is_empty() {
                break;
            }
            self.exec(&l.body, mask)?;
            let mut cont = self.continues.pop().unwrap_or_default();
            if !cont.is_empty() {
                cont.sort_unstable();
                let mut merged = self.take();
                merge_sorted(mask, &cont, &mut merged);
                std::mem::swap(mask, &mut merged);
                self.give(merged);
                cont.clear();
            }
            self.continues.push(cont);
            if let Some(s) = &l.step {
                let (v, step) = (self.col(s.var), self.col(s.step));
                mask.retain(|&i| {
                    match checked_step(s.ty, v[i as usize].get(), step[i as usize].get()) {
                        Some(next) => {
                            v[i as usize].set(next);
                            true
                        }
                        None => false,
                    }
                });
            }
        }
        if let Some(cont) = self.continues.pop() {
            self.give(cont);
        }
        let returned = &self.returned[l.depth as usize];
        mask.clear();
        mask.extend(entry.iter().filter(|&&i| !returned[i as usize]));
        self.give(entry);
        Ok(())
    }

    /// Charges one loop iteration of the active lanes, plus the instructions executed since
    /// the last charge, against the block's step budget.
    fn spend_steps(&mut self, l: &LoopNode, mask: &[u32]) -> Result<()> {
        let spent = self.thread_instructions - self.charged + mask.len() as u64;
        self.charged = self.thread_instructions;
        match self.steps_left.checked_sub(spent) {
            Some(left) => {
                self.steps_left = left;
                Ok(())
            }
            None => Err(InterpError::StepBudgetExceeded {
                kernel: self.prog.kernel.clone(),
                block: Coord(self.block),
                thread: self.thread(mask.first().copied().unwrap_or(0) as usize),
                budget: self.step_budget,
                site: self.prog.site(l.site),
            }),
        }
    }

    fn copy(&self, dst: Reg, src: Reg, mask: &[u32]) {
        let (d, s) = (self.col(dst), self.col(src));
        for_lanes(mask, self.n, |i| d[i].set(s[i].get()));
    }

    #[inline(always)]
    fn map1(&self, dst: Reg, a: Reg, mask: &[u32], f: impl Fn(u64) -> u64) {
        let (d, a) = (self.col(dst), self.col(a));
        for_lanes(mask, self.n, |i| d[i].set(f(a[i].get())));
    }

    #[inline(always)]
    fn map2(&self, dst: Reg, a: Reg, b: Reg, mask: &[u32], f: impl Fn(u64, u64) -> u64) {
        let (d, a, b) = (self.col(dst), self.col(a), self.col(b));
        for_lanes(mask, self.n, |i| d[i].set(f(a[i].get(), b[i].get())));
    }

    fn op(&mut self, op: &Op, mask: &[u32]) -> Result<()> {
        match *op {
            Op::Copy { dst, src } => self.copy(dst, src, mask),
            Op::Bin { op, ty, dst, a, b } => self.binary(op, ty, dst, a, b, mask)?,
            Op::Un { op, ty, dst, a } => self.map1(dst, a, mask, |x| scalar::unary(op, ty, x)),
            Op::Cast { from, to, dst, src } => self.cast(from, to, dst, src, mask),
            Op::Math { f, ty, dst, args } => self.math(f, ty, dst, args, mask),
            Op::Load {
                mem,
                index,
                dst,
                site,
            } => self.load(mem, index, dst, site, mask)?,
            Op::Store {
                mem,
                index,
                src,
                site,
            } => self.store(mem, index, src, site, mask)?,
            Op::Atomic {
                op,
                mem,
                index,
                args,
                dst,
                site,
            } => self.atomic(op, mem, index, args, dst, site, mask)?,
            Op::Shfl {
                kind,
                dst,
                src,
                lane,
                site,
            } => self.shuffle(kind, dst, src, lane, site, mask)?,
            Op::Vote {
                kind,
                dst,
                src,
                site,
            } => self.vote(kind, dst, src, site, mask)?,
            Op::Mma {
                kind,
                dst,
                a,
                b,
                c,
                site,
            } => self.mma(kind, [dst, a, b, c], site, mask)?,
            Op::Half2 {
                op,
                half,
                dst,
                args,
            } => {
                let [a, b, c] = args.map(|r| self.col(r));
                let d = self.col(dst);
                for_lanes(mask, self.n, |i| {
                    let v = |x: &[Cell<u64>]| x[i].get() as u32;
                    d[i].set(half2::packed(op, half, v(a), v(b), v(c)) as u64);
                });
            }
            Op::LdMatrix(load) => self.ldmatrix(load, mask)?,
            Op::Bits { op, dst, args } => {
                let (d, a, b, c) = (
                    self.col(dst),
                    self.col(args[0]),
                    self.col(args[1]),
                    self.col(args[2]),
                );
                let v = |c: &Cell<u64>| c.get() as u32;
                for_lanes(mask, self.n, |i| {
                    let r = match op {
                        BitsOp::Lop3(lut) => scalar::lop3(v(&a[i]), v(&b[i]), v(&c[i]), lut),
                        BitsOp::Prmt => scalar::prmt(v(&a[i]), v(&b[i]), v(&c[i])),
                    };
                    d[i].set(r as u64);
                });
            }
            Op::CopyAsync(copy) => self.copy_async(copy, mask)?,
            Op::CpAsyncCommit => self.cp_async_commit(mask),
            Op::CpAsyncWait { n } => self.cp_async_wait(n, mask)?,
            Op::ZeroLocal { mem } => {
                let info = &self.prog.mems[mem as usize];
                if let MemKind::Local { offset } = info.kind {
                    let len = info.len as usize * info.lanes as usize;
                    let stride = self.prog.local_slots;
                    for &i in mask {
                        let at = i as usize * stride + offset;
                        self.local[at..at + len].fill(0);
                    }
                }
            }
        }
        Ok(())
    }

    /// Binary operations, with tight loops for the common f32 and 32-bit integer cases.
    fn binary(
        &self,
        op: BinOp,
        ty: ScalarType,
        dst: Reg,
        a: Reg,
        b: Reg,
        mask: &[u32],
    ) -> Result<()> {
        use BinOp as B;
        use ScalarType as S;
        let f = |x: u64| f32::from_bits(x as u32);
        let fb = |x: f32| x.to_bits() as u64;
        match (op, ty) {
            (B::Div | B::Rem, t) if t.is_int() => {
                let d = self.col(b);
                if let Some(&i) = mask.iter().find(|&&i| d[i as usize].get() == 0) {
                    let (thread, block) = (self.thread(i as usize), Coord(self.block));
                    let kernel = self.prog.kernel.clone();
                    return Err(InterpError::DivisionByZero {
                        kernel,
                        thread,
                        block,
                    });
                }
                self.map2(dst, a, b, mask, |x, y| scalar::binary(op, ty, x, y));
            }
            (B::Add, S::F32) => self.map2(dst, a, b, mask, |x, y| fb(f(x) + f(y))),
            (B::Sub, S::F32) => self.map2(dst, a, b, mask, |x, y| fb(f(x) - f(y))),
            (B::Mul, S::F32) => self.map2(dst, a, b, mask, |x, y| fb(f(x) * f(y))),
            (B::Lt, S::F32) => self.map2(dst, a, b, mask, |x, y| (f(x) < f(y)) as u64),
            (B::Add, S::U32 | S::I32) => self.map2(dst, a, b, mask, |x, y| {
                (x as u32).wrapping_add(y as u32) as u64
            }),
            (B::Sub, S::U32 | S::I32) => self.map2(dst, a, b, mask, |x, y| {
                (x as u32).wrapping_sub(y as u32) as u64
            }),
            (B::Mul, S::U32 | S::I32) => self.map2(dst, a, b, mask, |x, y| {
                (x as u32).wrapping_mul(y as u32) as u64
            }),
            (B::Lt, S::U32) => self.map2(dst, a, b, mask, |x, y| (x < y) as u64),
            (B::Lt, S::I32) => self.map2(dst, a, b, mask, |x, y| {
                ((x as u32 as i32) < (y as u32 as i32)) as u64
            }),
            _ => self.map2(dst, a, b, mask, |x, y| scalar::binary(op, ty, x, y)),
        }
        Ok(())
    }

    fn cast(&self, from: ScalarType, to: ScalarType, dst: Reg, src: Reg, mask: &[u32]) {
        use ScalarType as S;
        match (from, to) {
            (S::U32, S::F32) => self.map1(dst, src, mask, |x| (x as u32 as f32).to_bits() as u64),
            (S::I32, S::F32) => self.map1(dst, src, mask, |x| {
                (x as u32 as i32 as f32).to_bits() as u64
            }),
            _ => self.map1(dst, src, mask, |x| scalar::cast(from, to, x)),
        }
    }

    fn math(&self, f: MathFn, ty: ScalarType, dst: Reg, args: [Reg; 3], mask: &[u32]) {
        if (f, ty) == (MathFn::Fma, ScalarType::F32) {
            let (d, a, b, c) = (
                self.col(dst),
                self.col(args[0]),
                self.col(args[1]),
                self.col(args[2]),
            );
            let v = |c: &Cell<u64>| f32::from_bits(c.get() as u32);
            for_lanes(mask, self.n, |i| {
                d[i].set(v(&a[i]).mul_add(v(&b[i]), v(&c[i])).to_bits() as u64)
            });
            return;
        }
        let (d, a, b, c) = (
            self.col(dst),
            self.col(args[0]),
            self.col(args[1]),
            self.col(args[2]),
        );
        for_lanes(mask, self.n, |i| {
            d[i].set(scalar::math(f, ty, [a[i].get(), b[i].get(), c[i].get()]))
        });
    }
}

/// Merges two sorted, disjoint lane lists into `out`.
fn merge_sorted(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}
