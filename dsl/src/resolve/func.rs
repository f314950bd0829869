//! Resolving one function (the kernel entry or a device function): scopes, variables,
//! arrays, statements; and the kernel-wide table of specialized device functions.

use super::infer::{Ty, Unifier, VarKind};
use super::{device_identity, fold, ConstValues, ResolveError};
use crate::ir::{self, Block, DeviceFnDef, KernelDef, ParamDecl, ParamType, Span, StmtKind};
use crate::typed::{self, ArrayId, ArraySpace, FnId, MemRef, ParamKind, VarId, VarInfo};
use crate::types::{ScalarType, Type};
use std::collections::HashMap;

pub(super) type R<T> = Result<T, ResolveError>;

/// What a name refers to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Binding {
    Var(VarId),
    Const(ScalarType, i64),
    /// A slice parameter or an array: element type and whether it may be written.
    Mem(MemRef, Type, bool),
}

/// Where the memory behind a slice lives: a kernel's slice parameters are global buffers; a
/// device function's take the space of what its caller passed, and each combination is its
/// own specialization (so `ldmatrix` / `cp.async` can accept a parameter bound to shared
/// memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum MemSpace {
    Global,
    Shared,
    Local,
}

/// A block's statements and the value of its tail expression with its type, if it has one.
type BlockWithValue = (Vec<typed::Stmt>, Option<(typed::Expr, Ty)>);

impl MemSpace {
    /// What a slice in this space is, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            MemSpace::Global => "a global buffer",
            MemSpace::Shared => "a shared array",
            MemSpace::Local => "a local array",
        }
    }
}

impl From<ArraySpace> for MemSpace {
    fn from(s: ArraySpace) -> Self {
        match s {
            ArraySpace::Shared => MemSpace::Shared,
            ArraySpace::Local => MemSpace::Local,
        }
    }
}

/// A device function's specialization: its identity, const arguments, and the memory space
/// bound to each parameter (`Global` for value parameters).
type SpecKey = ((String, String, u32), Vec<i64>, Vec<MemSpace>);

/// State shared by all functions of one kernel specialization.
pub(super) struct KernelCtx<'d> {
    kernel: &'d KernelDef,
    pub block_dim: Option<[u32; 3]>,
    device_fns: Vec<typed::Function>,
    specialized: HashMap<SpecKey, FnId>,
    /// Device functions being specialized, for the recursion check.
    in_progress: Vec<(String, String, u32)>,
}

impl<'d> KernelCtx<'d> {
    pub fn new(kernel: &'d KernelDef) -> Self {
        KernelCtx {
            kernel,
            block_dim: None,
            device_fns: Vec::new(),
            specialized: HashMap::new(),
            in_progress: Vec::new(),
        }
    }

    pub fn finish(self) -> Vec<typed::Function> {
        self.device_fns
    }

    fn error(&self, function: &str, file: &str, span: Span, message: String) -> ResolveError {
        ResolveError {
            kernel: self.kernel.name.clone(),
            function: function.to_string(),
            file: file.to_string(),
            span,
            message,
        }
    }

    /// Evaluates the `block = (...)` expressions.
    pub fn block_dim(&mut self, dims: &[ir::Expr], consts: &ConstValues) -> R<[u32; 3]> {
        let k = self.kernel;
        let span = dims.first().map_or(Span::new(k.line, 0), |d| d.span);
        if dims.is_empty() || dims.len() > 3 {
            let msg = format!("`block` takes 1 to 3 dimensions, got {}", dims.len());
            return Err(self.error(&k.name, &k.file, span, msg));
        }
        let mut out = [1u32; 3];
        for (slot, d) in out.iter_mut().zip(dims) {
            let v = self.const_expr(&k.name, &k.file, d, consts)?;
            *slot = u32::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                self.error(
                    &k.name,
                    &k.file,
                    d.span,
                    format!("block dimension evaluates to {v}; it must be at least 1"),
                )
            })?;
        }
        Ok(out)
    }

    /// Evaluates a constant expression over the const generics.
    fn const_expr(
        &mut self,
        name: &str,
        file: &str,
        e: &ir::Expr,
        consts: &ConstValues,
    ) -> R<i128> {
        let mut f = FnBuilder::new(self, name, file, consts, &[], None, Vec::new());
        f.building = true;
        f.push_scope();
        f.bind_consts();
        let (ex, _) = f.expr(e)?;
        fold::const_value(&ex).ok_or_else(|| {
            f.err(
                e.span,
                "expected a constant expression over the const generics".into(),
            )
        })
    }

    /// Resolves the kernel entry.
    pub fn entry(&mut self, def: &KernelDef, consts: &ConstValues) -> R<typed::Function> {
        let spaces = vec![MemSpace::Global; def.params.len()];
        let mut f = FnBuilder::new(
            self,
            &def.name,
            &def.file,
            consts,
            &def.params,
            None,
            spaces,
        );
        f.is_entry = true;
        let mut func = f.run(&def.body)?;
        func.line = def.line;
        Ok(func)
    }

    /// The id of `def` specialized for `const_args` and the memory `spaces` bound to its
    /// parameters, specializing it on first use.
    fn device_fn(
        &mut self,
        def: &DeviceFnDef,
        (const_args, spaces): (Vec<i64>, Vec<MemSpace>),
        span: Span,
        caller: (&str, &str),
    ) -> R<FnId> {
        let identity = device_identity(def);
        let key = (identity.clone(), const_args.clone(), spaces.clone());
        if let Some(&id) = self.specialized.get(&key) {
            return Ok(id);
        }
        if self.in_progress.contains(&identity) {
            let msg = format!(
                "device function `{}` calls itself (directly or through others); recursion is not supported on the GPU: rewrite it as a loop",
                def.name
            );
            return Err(self.error(caller.0, caller.1, span, msg));
        }
        if const_args.len() != def.consts.len() {
            let msg = format!(
                "`{}` takes {} const generic argument(s), got {}",
                def.name,
                def.consts.len(),
                const_args.len()
            );
            return Err(self.error(caller.0, caller.1, span, msg));
        }
        let consts: ConstValues = def
            .consts
            .iter()
            .zip(&const_args)
            .map(|(c, &v)| (c.name.clone(), c.ty, v))
            .collect();
        self.in_progress.push(identity);
        let mut f = FnBuilder::new(
            self,
            &def.name,
            &def.file,
            &consts,
            &def.params,
            def.ret,
            spaces,
        );
        let result = f.run(&def.body);
        self.in_progress.pop();
        let mut func = result?;
        func.line = def.line;
        func.name = self.unique_fn_name(&def.name, &const_args);
        let id = FnId(self.device_fns.len() as u32);
        self.device_fns.push(func);
        self.specialized.insert(key, id);
        Ok(id)
    }

    fn unique_fn_name(&self, name: &str, const_args: &[i64]) -> String {
        let mut base = name.to_string();
        if is_reserved_c_name(&base) {
            base.push('_');
        }
        for v in const_args {
            base.push_str(&format!("_{}", v).replace('-', "m"));
        }
        let taken = |n: &str| self.device_fns.iter().any(|f| f.name == n);
        let mut candidate = base.clone();
        let mut i = 1;
        while taken(&candidate) {
            candidate = format!("{base}_{i}");
            i += 1;
        }
        candidate
    }
}

/// Per-walk state of a function (reset between the inference walk and the build walk).
#[derive(Default)]
struct FnState {
    vars: Vec<VarInfo>,
    var_tys: Vec<Ty>,
    arrays: Vec<typed::ArrayInfo>,
    scopes: Vec<HashMap<String, Binding>>,
    used_names: HashMap<String, u32>,
    /// Statements an expression needs run before the statement that contains it.
    pending: Vec<typed::Stmt>,
    loop_depth: u32,
}

/// Resolves one function body in two walks (see [`super::infer`]).
pub(super) struct FnBuilder<'c, 'd> {
    pub ctx: &'c mut KernelCtx<'d>,
    pub name: String,
    pub file: String,
    consts: ConstValues,
    params: Vec<ParamDecl>,
    /// The memory space bound to each parameter (see [`MemSpace`]).
    param_spaces: Vec<MemSpace>,
    pub ret: Option<Type>,
    pub unifier: Unifier,
    fresh_log: Vec<Ty>,
    fresh_pos: usize,
    /// False during the inference walk, true during the build walk.
    pub building: bool,
    /// The kernel entry (whose value parameters are launch arguments) rather than a device
    /// function.
    is_entry: bool,
    st: FnState,
}

impl<'c, 'd> FnBuilder<'c, 'd> {
    /// Where the memory behind `mem` lives: an array's declared space, or the space the
    /// caller bound to a parameter.
    pub(super) fn mem_space(&self, mem: MemRef) -> MemSpace {
        match mem {
            MemRef::Array(id) => self
                .st
                .arrays
                .get(id.0 as usize)
                .map_or(MemSpace::Local, |a| a.space.into()),
            MemRef::Param(i) => self
                .param_spaces
                .get(i as usize)
                .copied()
                .unwrap_or(MemSpace::Global),
        }
    }

    /// Whether this is the kernel entry rather than a device function.
    pub(super) fn is_entry(&self) -> bool {
        self.is_entry
    }

    fn new(
        ctx: &'c mut KernelCtx<'d>,
        name: &str,
        file: &str,
        consts: &ConstValues,
        params: &[ParamDecl],
        ret: Option<Type>,
        param_spaces: Vec<MemSpace>,
    ) -> Self {
        FnBuilder {
            ctx,
            name: name.to_string(),
            file: file.to_string(),
            consts: consts.clone(),
            params: params.to_vec(),
            param_spaces,
            ret,
            unifier: Unifier::default(),
            fresh_log: Vec::new(),
            fresh_pos: 0,
            building: false,
            is_entry: false,
            st: FnState::default(),
        }
    }

    pub fn err(&self, span: Span, message: String) -> ResolveError {
        self.ctx.error(&self.name, &self.file, span, message)
    }

    /// Both walks; returns the typed function.
    fn run(&mut self, body: &Block) -> R<typed::Function> {
        self.walk(body)?;
        self.building = true;
        self.fresh_pos = 0;
        self.walk(body)
    }

    fn walk(&mut self, body: &Block) -> R<typed::Function> {
        self.st = FnState::default();
        self.push_scope();
        self.bind_consts();
        let params = self.declare_params()?;
        let stmts = self.block_stmts(body, BlockRole::FunctionBody)?;
        if self.building && self.ret.is_some() && !ends_in_return(&stmts) {
            let msg = format!("function `{}` must end with its return value", self.name);
            return Err(self.err(Span::default(), msg));
        }
        self.pop_scope();
        let vars = self.finish_vars();
        Ok(typed::Function {
            name: self.name.clone(),
            params,
            ret: self.ret,
            vars,
            arrays: std::mem::take(&mut self.st.arrays),
            body: stmts,
            line: 0,
        })
    }

    fn bind_consts(&mut self) {
        for (name, ty, v) in self.consts.clone() {
            self.bind(&name, Binding::Const(ty, v));
        }
    }

    fn declare_params(&mut self) -> R<Vec<typed::Param>> {
        let mut out = Vec::new();
        for (i, p) in self.params.clone().iter().enumerate() {
            let kind = match p.ty {
                ParamType::Value(ty) => {
                    if ty.scalar().is_none() && self.is_entry {
                        return Err(self.err(p.span, format!("parameter `{}`: vector values can't be passed by value; pass a slice", p.name)));
                    }
                    let var = self.declare_var(&p.name, Ty::Known(ty), false);
                    ParamKind::Value { ty, var }
                }
                ParamType::Slice { elem, mutable } => {
                    self.bind(
                        &p.name,
                        Binding::Mem(MemRef::Param(i as u32), elem, mutable),
                    );
                    ParamKind::Slice { elem, mutable }
                }
            };
            out.push(typed::Param {
                name: p.name.clone(),
                kind,
            });
        }
        Ok(out)
    }

    fn finish_vars(&mut self) -> Vec<VarInfo> {
        let tys = std::mem::take(&mut self.st.var_tys);
        let mut vars = std::mem::take(&mut self.st.vars);
        for (v, t) in vars.iter_mut().zip(tys) {
            v.ty = self.unifier.solve(t);
        }
        vars
    }

    // ---- inference helpers ----

    /// A fresh inference variable in the first walk; the same one again in the second.
    pub fn fresh(&mut self, kind: VarKind) -> Ty {
        if self.building {
            let t = self.fresh_log.get(self.fresh_pos).copied();
            self.fresh_pos += 1;
            // The walks are identical, so the log always has the entry.
            t.unwrap_or_else(|| self.unifier.fresh(kind))
        } else {
            let t = self.unifier.fresh(kind);
            self.fresh_log.push(t);
            t
        }
    }

    pub fn unify(&mut self, a: Ty, b: Ty, span: Span) -> R<()> {
        self.unifier.unify(a, b).map_err(|m| self.err(span, m))
    }

    /// The type as far as known (final in the build walk).
    pub fn concrete(&mut self, t: Ty) -> Type {
        self.unifier.solve(t)
    }

    // ---- scopes ----

    pub fn push_scope(&mut self) {
        self.st.scopes.push(HashMap::new());
    }

    pub fn pop_scope(&mut self) {
        self.st.scopes.pop();
    }

    pub fn bind(&mut self, name: &str, b: Binding) {
        if let Some(scope) = self.st.scopes.last_mut() {
            scope.insert(name.to_string(), b);
        }
    }

    pub fn lookup(&self, name: &str) -> Option<Binding> {
        self.st
            .scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name).copied())
    }

    /// A C-safe name unique in this function.
    fn unique_name(&mut self, name: &str) -> String {
        let base = if is_reserved_c_name(name) {
            format!("{name}_")
        } else {
            name.to_string()
        };
        let n = self.st.used_names.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}_{}", *n - 1)
        }
    }

    pub fn declare_var(&mut self, name: &str, ty: Ty, mutable: bool) -> VarId {
        let id = VarId(self.st.vars.len() as u32);
        let c_name = self.unique_name(name);
        self.st.vars.push(VarInfo {
            name: c_name,
            ty: Type::I32,
            mutable,
        });
        self.st.var_tys.push(ty);
        self.bind(name, Binding::Var(id));
        id
    }

    /// A compiler temporary (for hoisted `if` expressions).
    pub fn temp_var(&mut self, ty: Ty) -> VarId {
        let id = VarId(self.st.vars.len() as u32);
        let c_name = self.unique_name("tmp");
        self.st.vars.push(VarInfo {
            name: c_name,
            ty: Type::I32,
            mutable: true,
        });
        self.st.var_tys.push(ty);
        id
    }

    pub fn var_ty(&self, v: VarId) -> Ty {
        self.st.var_tys[v.0 as usize]
    }

    pub fn declare_array(
        &mut self,
        name: &str,
        elem: Type,
        len: u32,
        space: ArraySpace,
    ) -> ArrayId {
        let id = ArrayId(self.st.arrays.len() as u32);
        let c_name = self.unique_name(name);
        self.st.arrays.push(typed::ArrayInfo {
            name: c_name,
            elem,
            len,
            space,
        });
        self.bind(name, Binding::Mem(MemRef::Array(id), elem, true));
        id
    }

    pub fn push_pending(&mut self, s: typed::Stmt) {
        self.st.pending.push(s);
    }

    pub fn take_pending(&mut self) -> Vec<typed::Stmt> {
        std::mem::take(&mut self.st.pending)
    }

    /// A device function call: specialize (build walk only) and return its id. `spaces`: the
    /// memory space of each argument (`Global` for values).
    pub fn specialize_device(
        &mut self,
        def: &DeviceFnDef,
        key: (Vec<i64>, Vec<MemSpace>),
        span: Span,
    ) -> R<FnId> {
        let (name, file) = (self.name.clone(), self.file.clone());
        self.ctx.device_fn(def, key, span, (&name, &file))
    }

    // ---- statements ----

    /// Lowers a block's statements in a new scope. `role` says what its tail means.
    pub fn block_stmts(&mut self, b: &Block, role: BlockRole) -> R<Vec<typed::Stmt>> {
        self.push_scope();
        let mut out = Vec::new();
        for s in &b.stmts {
            self.stmt(s, &mut out)?;
        }
        if let Some(tail) = &b.tail {
            match role {
                BlockRole::FunctionBody if self.ret.is_some() => {
                    let ret = StmtKind::Return(Some((**tail).clone()));
                    self.stmt(&ir::Stmt::new(ret, tail.span), &mut out)?;
                }
                _ => self.stmt(
                    &ir::Stmt::new(StmtKind::Expr((**tail).clone()), tail.span),
                    &mut out,
                )?,
            }
        }
        self.pop_scope();
        Ok(out)
    }

    pub fn stmt(&mut self, s: &ir::Stmt, out: &mut Vec<typed::Stmt>) -> R<()> {
        let lowered = self.stmt_kind(s)?;
        out.append(&mut self.take_pending());
        if let Some(kind) = lowered {
            out.push(typed::Stmt { kind, span: s.span });
        }
        Ok(())
    }

    /// Lowers a block used as a value: its statements (in its own scope), then the tail's
    /// value, with the statements the tail needs appended.
    pub fn block_with_value(&mut self, b: &Block) -> R<BlockWithValue> {
        self.push_scope();
        let result = (|| {
            let mut out = Vec::new();
            for s in &b.stmts {
                self.stmt(s, &mut out)?;
            }
            let value = match &b.tail {
                Some(t) => Some(self.expr(t)?),
                None => None,
            };
            out.append(&mut self.take_pending());
            Ok((out, value))
        })();
        self.pop_scope();
        result
    }

    fn stmt_kind(&mut self, s: &ir::Stmt) -> R<Option<typed::StmtKind>> {
        use typed::StmtKind as T;
        let span = s.span;
        Ok(Some(match &s.kind {
            StmtKind::Let {
                name,
                mutable,
                ty,
                init,
            } => return self.let_stmt(name, *mutable, *ty, init.as_ref(), span),
            StmtKind::Assign { place, op, value } => self.assign(place, *op, value, span)?,
            StmtKind::If { cond, then, els } => return self.if_stmt(cond, then, els.as_ref()),
            StmtKind::For {
                var,
                start,
                end,
                inclusive,
                step,
                unroll,
                body,
            } => self.for_stmt(
                var,
                start,
                end,
                *inclusive,
                step.as_ref(),
                *unroll,
                body,
                span,
            )?,
            StmtKind::While { cond, body } => {
                let (c, ct) = self.expr(cond)?;
                self.unify(ct, Ty::scalar(ScalarType::Bool), cond.span)?;
                if !self.take_pending().is_empty() {
                    return Err(self.err(cond.span, "a loop condition can't contain an `if` or block with statements; compute it in a variable".into()));
                }
                T::While {
                    cond: c,
                    body: self.loop_body(body)?,
                }
            }
            StmtKind::Loop { body } => T::While {
                cond: typed::Expr::lit(Type::BOOL, 1),
                body: self.loop_body(body)?,
            },
            StmtKind::Break | StmtKind::Continue => {
                if self.st.loop_depth == 0 {
                    return Err(self.err(span, "`break`/`continue` outside a loop".into()));
                }
                if matches!(s.kind, StmtKind::Break) {
                    T::Break
                } else {
                    T::Continue
                }
            }
            StmtKind::Return(value) => self.return_stmt(value.as_ref(), span)?,
            StmtKind::Expr(e) => return self.expr_stmt(e),
        }))
    }

    fn loop_body(&mut self, body: &Block) -> R<Vec<typed::Stmt>> {
        self.st.loop_depth += 1;
        let r = self.block_stmts(body, BlockRole::Statement);
        self.st.loop_depth -= 1;
        r
    }

    fn let_stmt(
        &mut self,
        name: &str,
        mutable: bool,
        ty: Option<Type>,
        init: Option<&ir::Expr>,
        span: Span,
    ) -> R<Option<typed::StmtKind>> {
        if let Some(array) = init.and_then(|e| self.array_decl(name, e).transpose()) {
            return Ok(Some(typed::StmtKind::DeclareArray(array?)));
        }
        let (init, ity) = match init {
            Some(e) => {
                let (ex, t) = self.expr(e)?;
                (Some(ex), t)
            }
            None => (None, self.fresh(VarKind::Any)),
        };
        if let Some(t) = ty {
            self.unify(ity, Ty::Known(t), span)?;
        }
        let var = self.declare_var(name, ity, mutable);
        let init = init.map(|mut e| {
            e.ty = self.concrete(ity);
            e
        });
        Ok(Some(typed::StmtKind::Let { var, init }))
    }

    fn assign(
        &mut self,
        place: &ir::Expr,
        op: Option<ir::BinOp>,
        value: &ir::Expr,
        span: Span,
    ) -> R<typed::StmtKind> {
        let (v, vt) = self.expr(value)?;
        let is_shift = matches!(op, Some(ir::BinOp::Shl | ir::BinOp::Shr));
        match &place.kind {
            ir::ExprKind::Path(name) => match self.lookup(name) {
                Some(Binding::Var(var)) => {
                    if !is_shift {
                        self.unify(self.var_ty(var), vt, span)?;
                    }
                    Ok(typed::StmtKind::AssignVar { var, op, value: v })
                }
                _ => Err(self.err(
                    place.span,
                    format!("`{name}` is not a variable that can be assigned"),
                )),
            },
            ir::ExprKind::Index(base, index) => {
                let (mem, elem, mutable, name) = self.mem_of(base)?;
                if !mutable {
                    return Err(self.err(place.span, format!("cannot write to `{name}`: it is a `&[{elem}]`; declare the parameter `&mut [{elem}]`")));
                }
                if !is_shift {
                    self.unify(Ty::Known(elem), vt, span)?;
                }
                let index = self.index_expr(index)?;
                Ok(typed::StmtKind::Store {
                    mem,
                    index,
                    op,
                    value: v,
                })
            }
            ir::ExprKind::Field(base, field) => {
                let (lane_expr, _) = self.expr(place)?;
                let var = match &base.kind {
                    ir::ExprKind::Path(n) => match self.lookup(n) {
                        Some(Binding::Var(var)) => var,
                        _ => {
                            return Err(
                                self.err(base.span, format!("`{n}` is not a vector variable"))
                            )
                        }
                    },
                    _ => {
                        return Err(self.err(
                            base.span,
                            "only a vector variable's lanes can be assigned".into(),
                        ))
                    }
                };
                let lane = match lane_expr.kind {
                    typed::ExprKind::Lane(_, l) => l,
                    _ => {
                        return Err(self.err(place.span, format!("`.{field}` is not a vector lane")))
                    }
                };
                self.unify(Ty::Known(lane_expr.ty), vt, span)?;
                let value = match op {
                    None => v,
                    Some(op) => self.binary_typed(op, lane_expr, v, span)?,
                };
                Ok(typed::StmtKind::AssignLane { var, lane, value })
            }
            _ => Err(self.err(
                place.span,
                "can only assign to a variable, `slice[index]`, or a vector lane `v.x`".into(),
            )),
        }
    }

    pub fn if_stmt(
        &mut self,
        cond: &ir::Expr,
        then: &Block,
        els: Option<&Block>,
    ) -> R<Option<typed::StmtKind>> {
        let (c, ct) = self.expr(cond)?;
        self.unify(ct, Ty::scalar(ScalarType::Bool), cond.span)?;
        if let Some(k) = fold::const_value(&c) {
            // A branch on a const generic: keep only the branch taken, as a nested block.
            let taken = if k != 0 { Some(then) } else { els };
            let stmts = match taken {
                Some(b) => self.block_stmts(b, BlockRole::Statement)?,
                None => Vec::new(),
            };
            let pending = self.take_pending();
            self.st.pending.extend(pending);
            self.st.pending.extend(stmts);
            return Ok(None);
        }
        let then = self.block_stmts(then, BlockRole::Statement)?;
        let els = match els {
            Some(b) => self.block_stmts(b, BlockRole::Statement)?,
            None => Vec::new(),
        };
        Ok(Some(typed::StmtKind::If { cond: c, then, els }))
    }

    #[allow(clippy::too_many_arguments)]
    fn for_stmt(
        &mut self,
        var: &str,
        start: &ir::Expr,
        end: &ir::Expr,
        inclusive: bool,
        step: Option<&ir::Expr>,
        unroll: Option<u32>,
        body: &Block,
        span: Span,
    ) -> R<typed::StmtKind> {
        let (s, st) = self.expr(start)?;
        let (mut e, et) = self.expr(end)?;
        self.unify(st, et, span)?;
        let step = match step {
            Some(x) => {
                let (x, _) = self.expr(x)?;
                Some(x)
            }
            None => None,
        };
        let ty = self.concrete(st);
        if self.building && !ty.scalar().is_some_and(|s| s.is_int()) {
            return Err(self.err(
                span,
                format!("`for` loops run over integer ranges, not `{ty}`"),
            ));
        }
        let one = typed::Expr::lit(ty, 1);
        if inclusive {
            e = self.binary_typed(ir::BinOp::Add, e, one.clone(), span)?;
        }
        let step = match step {
            Some(x) if x.ty != ty => self.cast_typed(x, ty),
            Some(x) => x,
            None => one,
        };
        if let Some(k) = fold::const_value(&step) {
            if k <= 0 && self.building {
                return Err(self.err(span, format!("`step_by` needs a positive step, got {k}")));
            }
        }
        self.push_scope();
        let v = self.declare_var(var, Ty::Known(ty), false);
        self.st.loop_depth += 1;
        let body = self.block_stmts(body, BlockRole::Statement);
        self.st.loop_depth -= 1;
        self.pop_scope();
        let s = typed::Expr { ty, ..s };
        let e = typed::Expr { ty, ..e };
        Ok(typed::StmtKind::For {
            var: v,
            start: s,
            end: e,
            step,
            unroll,
            body: body?,
        })
    }

    fn return_stmt(&mut self, value: Option<&ir::Expr>, span: Span) -> R<typed::StmtKind> {
        match (value, self.ret) {
            (None, None) => Ok(typed::StmtKind::Return(None)),
            (Some(v), Some(ret)) => {
                let (e, t) = self.expr(v)?;
                self.unify(t, Ty::Known(ret), v.span)?;
                let e = typed::Expr { ty: ret, ..e };
                Ok(typed::StmtKind::Return(Some(e)))
            }
            (Some(v), None) => Err(self.err(v.span, "this function returns no value".into())),
            (None, Some(ret)) => {
                Err(self.err(span, format!("this function must return a `{ret}`")))
            }
        }
    }

    /// `let name = shared_array::<T>(LEN)` / `local_array::<T>(LEN)`.
    fn array_decl(&mut self, name: &str, init: &ir::Expr) -> R<Option<ArrayId>> {
        let ir::ExprKind::Call {
            func,
            generics,
            args,
        } = &init.kind
        else {
            return Ok(None);
        };
        let space = match func.as_str() {
            "shared_array" => ArraySpace::Shared,
            "local_array" => ArraySpace::Local,
            _ => return Ok(None),
        };
        let (Some(elem), [len]) = (generics.first(), args.as_slice()) else {
            return Err(self.err(
                init.span,
                format!("write `{func}::<T>(LEN)` with an element type and a constant length"),
            ));
        };
        let (len_e, _) = self.expr(len)?;
        let n = fold::const_value(&len_e).ok_or_else(|| {
            self.err(
                len.span,
                "an array length must be a constant expression over the const generics".into(),
            )
        })?;
        let n = u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            self.err(len.span, format!("array length {n} is not in 1..=u32::MAX"))
        })?;
        Ok(Some(self.declare_array(name, *elem, n, space)))
    }
}

/// What a block's tail expression means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockRole {
    /// A function body: the tail is the return value.
    FunctionBody,
    /// A statement block: the tail is evaluated for effect.
    Statement,
}

fn ends_in_return(stmts: &[typed::Stmt]) -> bool {
    match stmts.last().map(|s| &s.kind) {
        Some(typed::StmtKind::Return(_)) => true,
        Some(typed::StmtKind::If { then, els, .. }) => ends_in_return(then) && ends_in_return(els),
        _ => false,
    }
}

/// Names a kernel variable or device function can't take in CUDA C.
fn is_reserved_c_name(name: &str) -> bool {
    crate::codegen::is_reserved(name)
}
