//! A compile-time check that a kernel's tune space is not empty: some config must satisfy
//! every `constraint = ..`.
//!
//! The macro emits `const _: () = { .. assert!(..) };` whose const fn walks every
//! combination of the `tune(..)` lists and evaluates the constraints with each const bound
//! as `i64` (bool consts as `bool`), exactly as the runtime check (`TuneSpace`) binds them.
//! rustc's const evaluator does the work, so the message appears at the constraint.
//!
//! The check is emitted only when it can be exact: every const generic has a list of values
//! (an untuned const has no values to enumerate) and every constraint uses only syntax that
//! is const-evaluable (literals, the consts, operators, casts and a few const integer
//! methods). Otherwise the runtime check, which reports the same thing, is the only one.

use crate::attr::{tidy, TuneParam};
use crate::sig::SigInfo;
use crate::types::Scalar;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Expr;

/// Integer methods that are `const fn` on `i64` (`min`/`max` are not: they come from `Ord`).
const CONST_METHODS: &[&str] = &[
    "pow",
    "abs",
    "signum",
    "rem_euclid",
    "div_euclid",
    "count_ones",
    "count_zeros",
    "leading_zeros",
    "trailing_zeros",
    "is_positive",
    "is_negative",
    "wrapping_add",
    "wrapping_sub",
    "wrapping_mul",
];

/// The `const _` assertion, or nothing when the check cannot be made exactly.
pub fn check(
    kernel: &syn::Ident,
    tune: &[TuneParam],
    constraints: &[Expr],
    sig: &SigInfo,
) -> TokenStream {
    let Some(first) = constraints.first() else {
        return TokenStream::new();
    };
    let all_tuned = sig
        .consts
        .iter()
        .all(|c| tune.iter().any(|p| c.name == p.name));
    if !all_tuned || !constraints.iter().all(const_evaluable) {
        return TokenStream::new();
    }
    let args: Vec<TokenStream> = sig
        .consts
        .iter()
        .map(|c| {
            let name = &c.name;
            if c.ty == Scalar::Bool {
                quote!(#name: bool)
            } else {
                quote!(#name: i64)
            }
        })
        .collect();
    let search = search(tune, sig);
    let texts: Vec<String> = constraints
        .iter()
        .map(|e| format!("`{}`", tidy(&quote!(#e).to_string())))
        .collect();
    let message = format!(
        "no config of `{kernel}`'s tune space satisfies its constraints ({}); relax a \
         constraint or add values to `tune(..)`",
        texts.join(", ")
    );
    // The assertion carries the first constraint's span: rustc reports it there.
    let assertion = quote_spanned!(first.span()=> ::core::assert!(__any(), #message););
    quote! {
        const _: () = {
            #[allow(non_snake_case, unused_variables, unused_parens, clippy::all)]
            const fn __satisfied(#(#args),*) -> bool {
                #((#constraints) &&)* true
            }
            #[allow(non_snake_case, clippy::all)]
            const fn __any() -> bool {
                #search
                false
            }
            #assertion
        };
    }
}

/// Nested `while` loops over the value lists, innermost calling `__satisfied`.
fn search(tune: &[TuneParam], sig: &SigInfo) -> TokenStream {
    let mut call_args = Vec::new();
    let mut lists = Vec::new();
    for (i, c) in sig.consts.iter().enumerate() {
        let p = tune
            .iter()
            .find(|p| c.name == p.name)
            .expect("checked: every const is tuned");
        let (list, index) = (format_ident!("__V{}", i), format_ident!("__i{}", i));
        let values = &p.values;
        let n = values.len();
        lists.push((
            list.clone(),
            index.clone(),
            quote!([i64; #n] = [#(#values),*]),
        ));
        call_args.push(if c.ty == Scalar::Bool {
            quote!(#list[#index] != 0)
        } else {
            quote!(#list[#index])
        });
    }
    let mut body = quote! {
        if __satisfied(#(#call_args),*) {
            return true;
        }
    };
    for (list, index, decl) in lists.iter().rev() {
        body = quote! {
            const #list: #decl;
            let mut #index = 0;
            while #index < #list.len() {
                #body
                #index += 1;
            }
        };
    }
    body
}

/// Whether `e` uses only syntax rustc can evaluate in a const fn over `i64`/`bool` values.
fn const_evaluable(e: &Expr) -> bool {
    match e {
        Expr::Lit(l) => matches!(l.lit, syn::Lit::Int(_) | syn::Lit::Bool(_)),
        Expr::Path(p) => p.qself.is_none() && p.path.get_ident().is_some(),
        Expr::Paren(p) => const_evaluable(&p.expr),
        Expr::Group(g) => const_evaluable(&g.expr),
        Expr::Unary(u) => {
            matches!(u.op, syn::UnOp::Neg(_) | syn::UnOp::Not(_)) && const_evaluable(&u.expr)
        }
        Expr::Binary(b) => {
            !is_compound_assign(&b.op) && const_evaluable(&b.left) && const_evaluable(&b.right)
        }
        Expr::Cast(c) => const_evaluable(&c.expr),
        Expr::MethodCall(m) => {
            CONST_METHODS.contains(&m.method.to_string().as_str())
                && m.turbofish.is_none()
                && const_evaluable(&m.receiver)
                && m.args.iter().all(const_evaluable)
        }
        _ => false,
    }
}

fn is_compound_assign(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}
