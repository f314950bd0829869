//! Signatures of `#[kernel]` and `#[device]` fns: const generics, parameters, return type,
//! and the rewritten copy that rustc type-checks.

use crate::generic::unbound_message;
use crate::lower::{is_unroll_attr, span_tokens, string, Lowerer};
use crate::types::{parse_type, DslType, Scalar, DYN_MESSAGE, IMPL_TRAIT_MESSAGE};
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericParam, Ident};

/// Which attribute is being expanded; kernels are stricter than device fns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FnKind {
    Kernel,
    Device,
}

pub struct ConstInfo {
    pub name: Ident,
    pub ty: Scalar,
    pub ty_tokens: syn::Type,
}

pub enum ParamKind {
    Value(DslType),
    Slice { elem: DslType, mutable: bool },
}

pub struct ParamInfo {
    pub name: Ident,
    pub kind: ParamKind,
}

pub struct SigInfo {
    pub consts: Vec<ConstInfo>,
    pub params: Vec<ParamInfo>,
    pub ret: Option<DslType>,
}

/// Reads a signature, recording every problem in `lw`.
pub fn analyze(sig: &syn::Signature, kind: FnKind, lw: &mut Lowerer) -> SigInfo {
    qualifiers(sig, lw);
    let consts = consts(&sig.generics, lw);
    let params = sig
        .inputs
        .iter()
        .filter_map(|arg| param(arg, kind, lw))
        .collect();
    let ret = match (&sig.output, kind) {
        (syn::ReturnType::Default, _) => None,
        (syn::ReturnType::Type(_, ty), FnKind::Kernel) => {
            lw.fail_at(
                ty,
                "kernels return nothing; write results into a `&mut [T]` parameter",
            );
            None
        }
        (syn::ReturnType::Type(_, ty), FnKind::Device) => lw.check(parse_type(ty)),
    };
    SigInfo {
        consts,
        params,
        ret,
    }
}

fn qualifiers(sig: &syn::Signature, lw: &mut Lowerer) {
    if let Some(t) = &sig.constness {
        lw.fail_at(t, "kernels and device fns cannot be `const fn`");
    }
    if let Some(t) = &sig.asyncness {
        lw.fail_at(t, "kernels and device fns cannot be `async`");
    }
    if let Some(t) = &sig.unsafety {
        lw.fail_at(t, "kernels and device fns cannot be `unsafe`");
    }
    if let Some(t) = &sig.abi {
        lw.fail_at(t, "kernels and device fns cannot declare an ABI");
    }
    if let Some(t) = &sig.variadic {
        lw.fail_at(t, "kernels and device fns cannot be variadic");
    }
    if let Some(w) = &sig.generics.where_clause {
        lw.fail_at(
            w,
            "`where` clauses are not supported; kernels take const generics only",
        );
    }
}

fn consts(generics: &syn::Generics, lw: &mut Lowerer) -> Vec<ConstInfo> {
    let mut out = Vec::new();
    for g in &generics.params {
        let c = match g {
            GenericParam::Const(c) => c,
            GenericParam::Type(t) => {
                lw.fail_at(g, unbound_message(&t.ident));
                continue;
            }
            GenericParam::Lifetime(_) => {
                lw.fail_at(
                    g,
                    "lifetime parameters are not supported in kernels; buffers are `&[T]`",
                );
                continue;
            }
        };
        if let Some(d) = &c.default {
            lw.fail_at(d, "const generic defaults are not supported; write `default(NAME = v)` in `#[kernel(..)]`");
        }
        let ty = match parse_type(&c.ty) {
            Ok(DslType { elem, lanes: 1 }) if elem.is_int() || elem == Scalar::Bool => elem,
            _ => {
                lw.fail_at(
                    &c.ty,
                    "const generics must be `u32`, `i32`, `u64`, `i64` or `bool`",
                );
                continue;
            }
        };
        out.push(ConstInfo {
            name: c.ident.clone(),
            ty,
            ty_tokens: c.ty.clone(),
        });
    }
    out
}

fn param(arg: &FnArg, kind: FnKind, lw: &mut Lowerer) -> Option<ParamInfo> {
    let FnArg::Typed(pt) = arg else {
        lw.fail_at(arg, "kernels and device fns cannot take `self`");
        return None;
    };
    let name = match &*pt.pat {
        syn::Pat::Ident(id)
            if id.by_ref.is_none() && id.mutability.is_none() && id.subpat.is_none() =>
        {
            id.ident.clone()
        }
        syn::Pat::Ident(id) if id.mutability.is_some() => {
            lw.fail_at(
                id,
                "parameters are immutable in kernels; copy into a `let mut` instead",
            );
            return None;
        }
        pat => {
            lw.fail_at(pat, "a parameter is a plain name: `n: u32`");
            return None;
        }
    };
    let kind = param_kind(&pt.ty, kind, lw)?;
    Some(ParamInfo { name, kind })
}

fn param_kind(ty: &syn::Type, kind: FnKind, lw: &mut Lowerer) -> Option<ParamKind> {
    match ty {
        syn::Type::Reference(r) => {
            if let Some(l) = &r.lifetime {
                lw.fail_at(
                    l,
                    "lifetimes are not supported in kernel signatures; write `&[T]`",
                );
            }
            if let syn::Type::TraitObject(_) = &*r.elem {
                lw.fail_at(ty, DYN_MESSAGE);
                return None;
            }
            let syn::Type::Slice(s) = &*r.elem else {
                lw.fail_at(
                    ty,
                    "references are only supported to slices: buffers are `&[T]` / `&mut [T]`, \
                     scalars are passed by value",
                );
                return None;
            };
            let elem = lw.check(parse_type(&s.elem))?;
            Some(ParamKind::Slice {
                elem,
                mutable: r.mutability.is_some(),
            })
        }
        syn::Type::ImplTrait(_) => {
            lw.fail_at(ty, IMPL_TRAIT_MESSAGE);
            None
        }
        _ => {
            let t = lw.check(parse_type(ty))?;
            if kind == FnKind::Kernel && t.lanes != 1 {
                lw.fail_at(
                    ty,
                    "kernel value parameters must be scalars; pass vectors in a buffer",
                );
                return None;
            }
            Some(ParamKind::Value(t))
        }
    }
}

impl SigInfo {
    /// `vec![__ir::ConstDecl { .. }, ..]`.
    pub fn consts_ir(&self) -> TokenStream {
        let items = self.consts.iter().map(|c| {
            let (name, ty, span) = (
                string(&c.name.to_string()),
                c.ty.ir(),
                span_tokens(c.name.span()),
            );
            quote!(__ir::ConstDecl { name: #name, ty: #ty, span: #span })
        });
        quote!(::std::vec![#(#items),*])
    }

    /// `vec![__ir::ParamDecl { .. }, ..]`.
    pub fn params_ir(&self) -> TokenStream {
        let items = self.params.iter().map(|p| {
            let (name, span) = (string(&p.name.to_string()), span_tokens(p.name.span()));
            let ty = match &p.kind {
                ParamKind::Value(t) => {
                    let t = t.ir();
                    quote!(__ir::ParamType::Value(#t))
                }
                ParamKind::Slice { elem, mutable } => {
                    let elem = elem.ir();
                    quote!(__ir::ParamType::Slice { elem: #elem, mutable: #mutable })
                }
            };
            quote!(__ir::ParamDecl { name: #name, ty: #ty, span: #span })
        });
        quote!(::std::vec![#(#items),*])
    }
}

/// The copy of the fn that rustc checks: slices become `Slice<T>`, `#[unroll]` is dropped.
pub fn checked_copy(func: &syn::ItemFn) -> TokenStream {
    let mut func = func.clone();
    for arg in func.sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = arg {
            rewrite_slice(&mut pt.ty);
        }
    }
    ForLoops.visit_block_mut(&mut func.block);
    quote! {
        #[allow(dead_code, unused, clippy::all, non_snake_case)]
        #func
    }
}

fn rewrite_slice(ty: &mut syn::Type) {
    let dsl = crate::path::dsl();
    let syn::Type::Reference(r) = ty else { return };
    let syn::Type::Slice(s) = &*r.elem else {
        return;
    };
    let (elem, mutability) = (&s.elem, &r.mutability);
    let span = r.span();
    let new: syn::Type =
        syn::parse_quote_spanned!(span=> & #mutability #dsl::prelude::Slice<#elem>);
    *ty = new;
}

/// Adapts `for` loops for rustc: drops `#[unroll]` and lets `step_by` take the DSL's
/// integer types (`(0..K).step_by(BLOCK)` with `BLOCK: u32`; `std` wants a `usize`).
struct ForLoops;

impl VisitMut for ForLoops {
    fn visit_expr_for_loop_mut(&mut self, f: &mut syn::ExprForLoop) {
        f.attrs.retain(|a| !is_unroll_attr(a));
        if let syn::Expr::MethodCall(m) = &mut *f.expr {
            if m.method == "step_by" && m.args.len() == 1 {
                let step = &m.args[0];
                let span = step.span();
                m.args[0] = syn::parse_quote_spanned!(span=> (#step) as usize);
            }
        }
        syn::visit_mut::visit_expr_for_loop_mut(self, f);
    }
}
