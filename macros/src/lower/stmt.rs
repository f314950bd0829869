//! Blocks and statements.

use super::{boxed, is_lint_attr, is_unroll_attr, option, span_tokens, string, vec_of, Lowerer};
use crate::types::heap_message;
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, Stmt};

/// Whether a block's trailing expression is its value (`Value`) or just its last statement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BlockUse {
    Unit,
    Value,
}

impl Lowerer {
    /// `__ir::Block { stmts, tail }`.
    pub fn block(&mut self, block: &syn::Block, usage: BlockUse) -> TokenStream {
        let mut stmts = Vec::new();
        let mut tail = None;
        let count = block.stmts.len();
        for (i, stmt) in block.stmts.iter().enumerate() {
            match stmt {
                Stmt::Expr(e, None) if i + 1 == count && is_value_tail(e, usage) => {
                    tail = Some(boxed(self.expr(e)));
                }
                _ => stmts.push(self.stmt(stmt)),
            }
        }
        let stmts = vec_of(&stmts);
        let tail = option(tail);
        quote!(__ir::Block { stmts: #stmts, tail: #tail })
    }

    /// `__ir::Stmt::new(kind, span)`.
    fn stmt(&mut self, stmt: &Stmt) -> TokenStream {
        let kind = match stmt {
            Stmt::Local(local) => self.local(local),
            Stmt::Expr(e, _) => self.stmt_expr(e),
            Stmt::Item(item) => self.fail_at(
                item,
                "items (nested fns, structs, consts, `use`) are not supported inside kernels; \
                 declare a `#[device] fn` at module level",
            ),
            Stmt::Macro(m) => self.macro_error(&m.mac),
        };
        let span = span_tokens(stmt.span());
        quote!(__ir::Stmt::new(#kind, #span))
    }

    pub(super) fn macro_error(&mut self, mac: &syn::Macro) -> TokenStream {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if name == "vec" {
            return self.fail_at(mac, heap_message("Vec"));
        }
        if name == "format" {
            return self.fail_at(mac, heap_message("String"));
        }
        self.fail_at(
            mac,
            format!(
                "macros are not supported inside kernels (`{name}!`); kernels cannot print: \
                 write values into a buffer and read it on the host"
            ),
        )
    }

    /// `let [mut] name[: ty] [= init];` (and `let _ = expr;`, an expression statement).
    fn local(&mut self, local: &syn::Local) -> TokenStream {
        self.stmt_attrs(&local.attrs, false);
        let init = match &local.init {
            Some(init) if init.diverge.is_some() => {
                return self.fail_at(&local.pat, "`let ... else` is not supported in kernels");
            }
            Some(init) => Some(&*init.expr),
            None => None,
        };
        let (pat, ty) = match &local.pat {
            syn::Pat::Type(t) => (&*t.pat, Some(&*t.ty)),
            pat => (pat, None),
        };
        match (pat, init) {
            (syn::Pat::Wild(_), Some(init)) if ty.is_none() => {
                let e = self.expr(init);
                quote!(__ir::StmtKind::Expr(#e))
            }
            (syn::Pat::Ident(id), _) if id.by_ref.is_none() && id.subpat.is_none() => {
                let ident = id.ident.to_string();
                let name = string(&ident);
                let mutable = id.mutability.is_some();
                let ty = ty.map(|t| self.ty(t));
                let ty = option(ty);
                let init = match self.tile2d_let(&ident, init) {
                    Some(flat) => Some(flat),
                    None => init.map(|e| self.expr(e)),
                };
                let init = option(init);
                quote!(__ir::StmtKind::Let { name: #name, mutable: #mutable, ty: #ty, init: #init })
            }
            (pat, _) => self.fail_at(
                pat,
                "destructuring is not supported in kernels; bind one name per `let`: \
                 `let [mut] name[: T] = value;`",
            ),
        }
    }

    /// Checks the attributes of a statement: lint attributes pass, `#[unroll]` only where
    /// `unroll_ok`. Returns the unroll factor (`Some(0)` for `#[unroll]`).
    fn stmt_attrs(&mut self, attrs: &[syn::Attribute], unroll_ok: bool) -> Option<u32> {
        let mut unroll = None;
        for attr in attrs {
            if is_unroll_attr(attr) && unroll_ok {
                unroll = self.check(parse_unroll(attr));
            } else if is_unroll_attr(attr) {
                self.fail_at(attr, "`#[unroll]` goes on a `for` loop");
            } else if !is_lint_attr(attr) {
                self.fail_at(
                    attr,
                    "this attribute is not supported in kernels; use `#[unroll]` / \
                     `#[unroll(N)]` on `for` loops, or lint attributes",
                );
            }
        }
        unroll
    }

    /// An expression in statement position: assignments, control flow, or an expression
    /// evaluated for its effect.
    fn stmt_expr(&mut self, e: &Expr) -> TokenStream {
        match e {
            Expr::Assign(a) => {
                self.stmt_attrs(&a.attrs, false);
                let place = self.expr(&a.left);
                let value = self.expr(&a.right);
                quote!(__ir::StmtKind::Assign { place: #place, op: ::std::option::Option::None, value: #value })
            }
            Expr::Binary(b) if compound_op(&b.op).is_some() => {
                let op = compound_op(&b.op).expect("checked by the guard");
                let place = self.expr(&b.left);
                let value = self.expr(&b.right);
                quote!(__ir::StmtKind::Assign { place: #place, op: ::std::option::Option::Some(__ir::BinOp::#op), value: #value })
            }
            Expr::If(i) => self.if_stmt(i),
            Expr::ForLoop(f) => self.for_loop(f),
            Expr::While(w) => self.while_loop(w),
            Expr::Loop(l) => {
                self.stmt_attrs(&l.attrs, false);
                self.no_label(l.label.as_ref());
                let body = self.block(&l.body, BlockUse::Unit);
                quote!(__ir::StmtKind::Loop { body: #body })
            }
            Expr::Break(b) => self.break_stmt(b),
            Expr::Continue(c) => {
                if let Some(label) = &c.label {
                    self.fail_at(label, "loop labels are not supported in kernels");
                }
                quote!(__ir::StmtKind::Continue)
            }
            Expr::Return(r) => {
                let value = option(r.expr.as_ref().map(|v| self.expr(v)));
                quote!(__ir::StmtKind::Return(#value))
            }
            Expr::Block(b) => {
                self.stmt_attrs(&b.attrs, false);
                let e = self.expr(e);
                quote!(__ir::StmtKind::Expr(#e))
            }
            other => {
                let e = self.expr(other);
                quote!(__ir::StmtKind::Expr(#e))
            }
        }
    }

    fn break_stmt(&mut self, b: &syn::ExprBreak) -> TokenStream {
        if let Some(label) = &b.label {
            self.fail_at(label, "loop labels are not supported in kernels");
        }
        if let Some(value) = &b.expr {
            self.fail_at(value, "`break` with a value is not supported in kernels");
        }
        quote!(__ir::StmtKind::Break)
    }

    fn no_label(&mut self, label: Option<&syn::Label>) {
        if let Some(label) = label {
            self.fail_at(
                label,
                "loop labels are not supported in kernels; restructure with a flag variable",
            );
        }
    }

    /// `if cond { .. } [else ..]` as a statement.
    fn if_stmt(&mut self, i: &syn::ExprIf) -> TokenStream {
        self.stmt_attrs(&i.attrs, false);
        let cond = self.cond(&i.cond);
        let then = self.block(&i.then_branch, BlockUse::Unit);
        let els = i.else_branch.as_ref().map(|(_, e)| match &**e {
            Expr::Block(b) => self.block(&b.block, BlockUse::Unit),
            other => {
                // `else if`: a block holding the inner `if` statement.
                let kind = self.stmt_expr(other);
                let span = span_tokens(other.span());
                quote!(__ir::Block {
                    stmts: ::std::vec![__ir::Stmt::new(#kind, #span)],
                    tail: ::std::option::Option::None
                })
            }
        });
        let els = option(els);
        quote!(__ir::StmtKind::If { cond: #cond, then: #then, els: #els })
    }

    /// The condition of `if` / `while`; rejects `let` patterns.
    pub(super) fn cond(&mut self, cond: &Expr) -> TokenStream {
        if let Expr::Let(l) = cond {
            return self.fail_at(
                l,
                "`if let` / `while let` are not supported in kernels (kernels have no enums); \
                 use a plain `if` / `while` on a bool",
            );
        }
        self.expr(cond)
    }

    fn while_loop(&mut self, w: &syn::ExprWhile) -> TokenStream {
        self.stmt_attrs(&w.attrs, false);
        self.no_label(w.label.as_ref());
        let cond = self.cond(&w.cond);
        let body = self.block(&w.body, BlockUse::Unit);
        quote!(__ir::StmtKind::While { cond: #cond, body: #body })
    }

    /// `for var in a..b` / `a..=b` / `(a..b).step_by(s)`, with `#[unroll]`.
    fn for_loop(&mut self, f: &syn::ExprForLoop) -> TokenStream {
        let unroll = self.stmt_attrs(&f.attrs, true);
        self.no_label(f.label.as_ref());
        let var = match &*f.pat {
            syn::Pat::Ident(id)
                if id.by_ref.is_none() && id.mutability.is_none() && id.subpat.is_none() =>
            {
                string(&id.ident.to_string())
            }
            syn::Pat::Wild(_) => string("_"),
            pat => self.fail_at(
                pat,
                "a `for` loop binds one immutable name: `for i in a..b`",
            ),
        };
        let Some((range, step)) = for_range(&f.expr) else {
            return self.fail_at(
                &f.expr,
                "`for` loops iterate over a range only: `a..b`, `a..=b` or `(a..b).step_by(s)`; \
                 to loop over a list of values, loop over an index and compute the value: \
                 `for k in 0..5 { let s = 16u32 >> k; ... }`",
            );
        };
        let (Some(start), Some(end)) = (&range.start, &range.end) else {
            return self.fail_at(range, "a `for` range needs a start and an end: `a..b`");
        };
        let inclusive = matches!(range.limits, syn::RangeLimits::Closed(_));
        let (start, end) = (self.expr(start), self.expr(end));
        let step = option(step.map(|s| self.expr(s)));
        let unroll = option(unroll.map(|n| quote!(#n)));
        let body = self.block(&f.body, BlockUse::Unit);
        quote!(__ir::StmtKind::For {
            var: #var, start: #start, end: #end, inclusive: #inclusive,
            step: #step, unroll: #unroll, body: #body,
        })
    }
}

/// The range of a `for` loop and its `step_by` argument.
fn for_range(e: &Expr) -> Option<(&syn::ExprRange, Option<&Expr>)> {
    match e {
        Expr::Range(r) => Some((r, None)),
        Expr::Paren(p) => for_range(&p.expr),
        Expr::Group(g) => for_range(&g.expr),
        Expr::MethodCall(m)
            if m.method == "step_by" && m.args.len() == 1 && m.turbofish.is_none() =>
        {
            match for_range(&m.receiver) {
                Some((r, None)) => Some((r, m.args.first())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `#[unroll]` → 0 (fully), `#[unroll(N)]` → N.
fn parse_unroll(attr: &syn::Attribute) -> syn::Result<u32> {
    const USAGE: &str = "write `#[unroll]` (fully) or `#[unroll(N)]` (by a factor N ≥ 1)";
    match &attr.meta {
        syn::Meta::Path(_) => Ok(0),
        syn::Meta::List(list) => {
            let lit: syn::LitInt = list
                .parse_args()
                .map_err(|e| syn::Error::new(e.span(), USAGE))?;
            match lit.base10_parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(syn::Error::new_spanned(lit, USAGE)),
            }
        }
        syn::Meta::NameValue(_) => Err(syn::Error::new_spanned(attr, USAGE)),
    }
}

/// Does a trailing expression give the block its value (rather than being a statement)?
fn is_value_tail(e: &Expr, usage: BlockUse) -> bool {
    if usage == BlockUse::Unit {
        return false;
    }
    !matches!(
        e,
        Expr::ForLoop(_)
            | Expr::While(_)
            | Expr::Loop(_)
            | Expr::Return(_)
            | Expr::Break(_)
            | Expr::Continue(_)
            | Expr::Assign(_)
    ) && !matches!(e, Expr::If(i) if i.else_branch.is_none())
        && !matches!(e, Expr::Binary(b) if compound_op(&b.op).is_some())
}

/// The `BinOp` variant of a compound assignment operator (`+=` → `Add`).
pub fn compound_op(op: &syn::BinOp) -> Option<syn::Ident> {
    use syn::BinOp as B;
    let name = match op {
        B::AddAssign(_) => "Add",
        B::SubAssign(_) => "Sub",
        B::MulAssign(_) => "Mul",
        B::DivAssign(_) => "Div",
        B::RemAssign(_) => "Rem",
        B::BitAndAssign(_) => "BitAnd",
        B::BitOrAssign(_) => "BitOr",
        B::BitXorAssign(_) => "BitXor",
        B::ShlAssign(_) => "Shl",
        B::ShrAssign(_) => "Shr",
        _ => return None,
    };
    Some(syn::Ident::new(name, proc_macro2::Span::call_site()))
}
