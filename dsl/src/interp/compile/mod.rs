//! Compiles the typed IR of a kernel, for one launch, into a [`Program`].
//!
//! Expression trees become register operations; `&&`, `||` and `Select` become `If` nodes
//! so that only the selected lanes evaluate a side (and can fault); device function calls
//! are inlined (value arguments copied into the callee's parameter variables, memory
//! arguments resolved to the caller's memory).

use std::collections::HashMap;

use crate::backend::LaunchDims;
use crate::ir::BinOp;
use crate::typed::{ArraySpace, Expr, Function, Kernel, MemRef, ParamKind, Stmt, StmtKind, VarId};
use crate::types::{ScalarType, Type};

use super::error::InterpError;
use super::program::*;

mod expr;

/// What the launch binds to each kernel parameter.
pub(super) enum Binding {
    Buffer(MemInfo),
    Value(u64),
}

/// The deepest inlining accepted (device functions are not recursive; this catches a cycle).
const MAX_CALL_DEPTH: u32 = 64;

/// One inlined instance of a function.
struct Frame<'k> {
    func: &'k Function,
    vars: Vec<Reg>,
    /// Memory bound to each slice parameter.
    params: Vec<Option<MemId>>,
    arrays: Vec<MemId>,
    depth: u32,
    ret: Option<Reg>,
}

pub(super) struct Compiler<'k> {
    kernel: &'k Kernel,
    dims: LaunchDims,
    perm: u32,
    temp: u32,
    max_temp: u32,
    consts: Vec<(Reg, u64)>,
    const_regs: HashMap<u64, Reg>,
    mems: Vec<MemInfo>,
    shared_slots: usize,
    local_slots: usize,
    /// Shared arrays are one per block per declaration, however often a function is inlined.
    shared_arrays: HashMap<(Option<u32>, u32), MemId>,
    builtins: BuiltinRegs,
    max_depth: u32,
    sites: Vec<Site>,
    /// The statement being compiled: its operations carry this site.
    site: SiteId,
}

type Result<T> = std::result::Result<T, InterpError>;

pub(super) fn compile(kernel: &Kernel, dims: LaunchDims, args: Vec<Binding>) -> Result<Program> {
    let mut c = Compiler {
        kernel,
        dims,
        perm: 0,
        temp: 0,
        max_temp: 0,
        consts: Vec::new(),
        const_regs: HashMap::new(),
        mems: Vec::new(),
        shared_slots: 0,
        local_slots: 0,
        shared_arrays: HashMap::new(),
        builtins: BuiltinRegs::default(),
        max_depth: 0,
        // Site 0 (operations outside any statement) points at the kernel's declaration.
        sites: vec![Site {
            line: kernel.line,
            device_fn: None,
        }],
        site: 0,
    };
    c.builtins = BuiltinRegs {
        thread_idx: [c.perm_reg(1), c.perm_reg(1), c.perm_reg(1)],
        lane_id: c.perm_reg(1),
        block_idx: [c.perm_reg(1), c.perm_reg(1), c.perm_reg(1)],
    };
    let mut frame = c.frame(&kernel.body, None, 0)?;
    for (param, binding) in kernel.body.params.iter().zip(args) {
        match (param.kind, binding) {
            (ParamKind::Value { var, .. }, Binding::Value(bits)) => {
                let reg = c.var(&frame, var)?;
                c.consts.push((reg, bits));
            }
            (ParamKind::Slice { .. }, Binding::Buffer(info)) => {
                frame.params.push(Some(c.mems.len() as MemId));
                c.mems.push(info);
                continue;
            }
            _ => return Err(c.unsupported("argument binding does not match the parameters")),
        }
        frame.params.push(None);
    }
    let body = c.block(&mut frame, &kernel.body.body)?;
    Ok(Program {
        kernel: kernel.name.clone(),
        file: kernel.file.clone(),
        sites: c.sites,
        body,
        mems: c.mems,
        perm_regs: c.perm,
        temp_regs: c.max_temp,
        consts: c.consts,
        builtins: c.builtins,
        shared_slots: c.shared_slots,
        local_slots: c.local_slots,
        max_depth: c.max_depth,
        block_dim: dims.block,
    })
}

impl<'k> Compiler<'k> {
    fn unsupported(&self, what: impl Into<String>) -> InterpError {
        InterpError::unsupported(&self.kernel.name, what)
    }

    fn perm_reg(&mut self, lanes: u8) -> Reg {
        let r = self.perm;
        self.perm += lanes as u32;
        r
    }

    fn temp(&mut self, lanes: u8) -> Reg {
        let r = TEMP | self.temp;
        self.temp += lanes as u32;
        self.max_temp = self.max_temp.max(self.temp);
        r
    }

    fn constant(&mut self, bits: u64) -> Reg {
        if let Some(&r) = self.const_regs.get(&bits) {
            return r;
        }
        let r = self.perm_reg(1);
        self.consts.push((r, bits));
        self.const_regs.insert(bits, r);
        r
    }

    /// A fresh instance of `func`: registers for its variables, memory for its arrays.
    fn frame(&mut self, func: &'k Function, key: Option<u32>, depth: u32) -> Result<Frame<'k>> {
        let vars = func
            .vars
            .iter()
            .map(|v| self.perm_reg(v.ty.lanes()))
            .collect();
        let mut arrays = Vec::with_capacity(func.arrays.len());
        for (i, a) in func.arrays.iter().enumerate() {
            let slots = a.len as usize * a.elem.lanes() as usize;
            let id =
                match a.space {
                    ArraySpace::Shared => *self
                        .shared_arrays
                        .entry((key, i as u32))
                        .or_insert_with(|| {
                            let kind = MemKind::Shared {
                                offset: self.shared_slots,
                            };
                            self.shared_slots += slots;
                            self.mems.push(array_info(kind, a));
                            self.mems.len() as MemId - 1
                        }),
                    ArraySpace::Local => {
                        let kind = MemKind::Local {
                            offset: self.local_slots,
                        };
                        self.local_slots += slots;
                        self.mems.push(array_info(kind, a));
                        self.mems.len() as MemId - 1
                    }
                };
            arrays.push(id);
        }
        Ok(Frame {
            func,
            vars,
            params: Vec::new(),
            arrays,
            depth,
            ret: None,
        })
    }

    fn var(&self, f: &Frame, v: VarId) -> Result<Reg> {
        f.vars
            .get(v.0 as usize)
            .copied()
            .ok_or_else(|| self.unsupported(format!("{}: unknown variable {}", f.func.name, v.0)))
    }

    fn var_ty(&self, f: &Frame, v: VarId) -> Result<Type> {
        match f.func.vars.get(v.0 as usize) {
            Some(info) => Ok(info.ty),
            None => Err(self.unsupported(format!("{}: unknown variable {}", f.func.name, v.0))),
        }
    }

    fn mem(&self, f: &Frame, m: MemRef) -> Result<MemId> {
        let found = match m {
            MemRef::Param(p) => f.params.get(p as usize).copied().flatten(),
            MemRef::Array(a) => f.arrays.get(a.0 as usize).copied(),
        };
        found.ok_or_else(|| self.unsupported(format!("{}: unknown memory {m:?}", f.func.name)))
    }

    fn writable_mem(&self, f: &Frame, m: MemRef) -> Result<MemId> {
        let id = self.mem(f, m)?;
        let info = &self.mems[id as usize];
        if !info.writable {
            return Err(self.unsupported(format!(
                "write to read-only buffer `{}` (declare the parameter `&mut [{}]`)",
                info.name, info.elem
            )));
        }
        Ok(id)
    }

    fn copy(out: &mut Vec<Node>, dst: Reg, src: Reg, lanes: u8) {
        if dst != src {
            for l in 0..lanes as u32 {
                out.push(Node::Op(Op::Copy {
                    dst: dst + l,
                    src: src + l,
                }));
            }
        }
    }

    /// Compiles `e` into `dst` (copying when its value lives elsewhere).
    fn expr_into(
        &mut self,
        f: &mut Frame<'k>,
        e: &Expr,
        out: &mut Vec<Node>,
        dst: Reg,
    ) -> Result<()> {
        let r = self.expr(f, e, out, Some(dst))?;
        Self::copy(out, dst, r, e.ty.lanes());
        Ok(())
    }

    /// Compiles statements; temporaries are reused from one statement to the next.
    fn block(&mut self, f: &mut Frame<'k>, stmts: &[Stmt]) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        for s in stmts {
            let (mark, outer) = (self.temp, self.site);
            self.site = self.sites.len() as SiteId;
            self.sites.push(Site {
                line: s.span.line,
                device_fn: (f.depth > 0).then(|| f.func.name.clone()),
            });
            self.stmt(f, s, &mut out)?;
            // An inlined call's statements sit inside this one's; restore for the caller.
            self.site = outer;
            self.temp = mark;
        }
        Ok(out)
    }

    fn stmt(&mut self, f: &mut Frame<'k>, s: &Stmt, out: &mut Vec<Node>) -> Result<()> {
        match &s.kind {
            StmtKind::Let { var, init } => {
                let reg = self.var(f, *var)?;
                let lanes = self.var_ty(f, *var)?.lanes();
                match init {
                    Some(e) => self.expr_into(f, e, out, reg)?,
                    None => {
                        let zero = self.constant(0);
                        for l in 0..lanes as u32 {
                            out.push(Node::Op(Op::Copy {
                                dst: reg + l,
                                src: zero,
                            }));
                        }
                    }
                }
            }
            StmtKind::DeclareArray(a) => {
                let mem = self.mem(f, MemRef::Array(*a))?;
                if matches!(self.mems[mem as usize].kind, MemKind::Local { .. }) {
                    out.push(Node::Op(Op::ZeroLocal { mem }));
                }
            }
            StmtKind::AssignVar {
                var,
                op: None,
                value,
            } => {
                let reg = self.var(f, *var)?;
                self.expr_into(f, value, out, reg)?;
            }
            StmtKind::AssignVar {
                var,
                op: Some(op),
                value,
            } => {
                let reg = self.var(f, *var)?;
                let ty = self.var_ty(f, *var)?;
                let v = self.expr(f, value, out, None)?;
                let v_lanes = value.ty.lanes();
                for l in 0..ty.lanes() as u32 {
                    let b = if v_lanes > 1 { v + l } else { v };
                    let (dst, a) = (reg + l, reg + l);
                    out.push(Node::Op(Op::Bin {
                        op: *op,
                        ty: ty.elem(),
                        dst,
                        a,
                        b,
                    }));
                }
            }
            StmtKind::AssignLane { var, lane, value } => {
                let reg = self.var(f, *var)? + *lane as u32;
                self.expr_into(f, value, out, reg)?;
            }
            StmtKind::Store {
                mem,
                index,
                op,
                value,
            } => self.store(f, *mem, index, *op, value, out)?,
            StmtKind::If { cond, then, els } => {
                let cond = self.expr(f, cond, out, None)?;
                let then = self.block(f, then)?;
                let els = self.block(f, els)?;
                out.push(Node::If { cond, then, els });
            }
            StmtKind::For {
                var,
                start,
                end,
                step,
                body,
                ..
            } => self.for_loop(f, *var, [start, end, step], body, out)?,
            StmtKind::While { cond, body } => {
                let mut cond_nodes = Vec::new();
                let cond_reg = self.expr(f, cond, &mut cond_nodes, None)?;
                let site = self.site;
                let body = self.block(f, body)?;
                let depth = f.depth;
                out.push(Node::Loop(Box::new(LoopNode {
                    cond: cond_nodes,
                    cond_reg,
                    body,
                    step: None,
                    depth,
                    site,
                })));
            }
            StmtKind::Break => out.push(Node::Break),
            StmtKind::Continue => out.push(Node::Continue),
            StmtKind::Return(value) => {
                let value = match (value, f.ret) {
                    (Some(e), Some(ret)) => Some((self.expr(f, e, out, None)?, ret, e.ty.lanes())),
                    (None, _) => None,
                    (Some(_), None) => {
                        return Err(self.unsupported(format!(
                            "{}: return with a value from a function without a result",
                            f.func.name
                        )))
                    }
                };
                out.push(Node::Return {
                    depth: f.depth,
                    value,
                });
            }
            StmtKind::Eval(e) => {
                self.expr(f, e, out, None)?;
            }
        }
        Ok(())
    }

    fn store(
        &mut self,
        f: &mut Frame<'k>,
        mem: MemRef,
        index: &Expr,
        op: Option<BinOp>,
        value: &Expr,
        out: &mut Vec<Node>,
    ) -> Result<()> {
        let mem = self.writable_mem(f, mem)?;
        let index = self.expr(f, index, out, None)?;
        let v = self.expr(f, value, out, None)?;
        let site = self.site;
        let Some(op) = op else {
            out.push(Node::Op(Op::Store {
                mem,
                index,
                src: v,
                site,
            }));
            return Ok(());
        };
        let info = &self.mems[mem as usize];
        let (elem, lanes) = (info.elem, info.lanes);
        let t = self.temp(lanes);
        out.push(Node::Op(Op::Load {
            mem,
            index,
            dst: t,
            site,
        }));
        for l in 0..lanes as u32 {
            let b = if value.ty.lanes() > 1 { v + l } else { v };
            out.push(Node::Op(Op::Bin {
                op,
                ty: elem,
                dst: t + l,
                a: t + l,
                b,
            }));
        }
        out.push(Node::Op(Op::Store {
            mem,
            index,
            src: t,
            site,
        }));
        Ok(())
    }

    fn for_loop(
        &mut self,
        f: &mut Frame<'k>,
        var: VarId,
        [start, end, step]: [&Expr; 3],
        body: &[Stmt],
        out: &mut Vec<Node>,
    ) -> Result<()> {
        let reg = self.var(f, var)?;
        let ty = self.var_ty(f, var)?.elem();
        if !ty.is_int() {
            return Err(self.unsupported(format!("for loop over a {ty} variable")));
        }
        self.expr_into(f, start, out, reg)?;
        // `end` and `step` are evaluated once, before the first iteration.
        let end_reg = self.temp(1);
        self.expr_into(f, end, out, end_reg)?;
        let step_reg = self.temp(1);
        self.expr_into(f, step, out, step_reg)?;
        let cond_reg = self.temp(1);
        let cond = vec![Node::Op(Op::Bin {
            op: BinOp::Lt,
            ty,
            dst: cond_reg,
            a: reg,
            b: end_reg,
        })];
        let site = self.site;
        let body = self.block(f, body)?;
        out.push(Node::Loop(Box::new(LoopNode {
            cond,
            cond_reg,
            body,
            step: Some(Step {
                var: reg,
                step: step_reg,
                ty,
            }),
            depth: f.depth,
            site,
        })));
        Ok(())
    }
}

fn array_info(kind: MemKind, a: &crate::typed::ArrayInfo) -> MemInfo {
    MemInfo {
        kind,
        name: a.name.clone(),
        elem: a.elem.elem(),
        lanes: a.elem.lanes(),
        len: a.len as u64,
        writable: true,
    }
}

/// The scalar type of a for-loop variable's increment check.
pub(super) fn checked_step(ty: ScalarType, var: u64, step: u64) -> Option<u64> {
    match ty {
        ScalarType::I32 => (var as u32 as i32)
            .checked_add(step as u32 as i32)
            .map(|v| v as u32 as u64),
        ScalarType::U32 => (var as u32).checked_add(step as u32).map(|v| v as u64),
        ScalarType::I64 => (var as i64).checked_add(step as i64).map(|v| v as u64),
        _ => var.checked_add(step),
    }
}
