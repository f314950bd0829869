//! Lowering of kernel bodies: syn syntax → Rust code that builds `warpforge_dsl::ir` values.
//!
//! Every function here returns the tokens of an IR constructor. Unsupported syntax records a
//! `syn::Error` at its own span and lowering goes on, so one compile reports every problem;
//! nothing is emitted but the errors when any was recorded.

mod expr;
mod stmt;
mod tile2d;

pub use expr::INTRINSICS;
pub use stmt::BlockUse;

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// Collects lowering errors.
pub struct Lowerer {
    error: Option<syn::Error>,
    /// The fn being lowered, so that a call of itself is reported (the macro sees only one
    /// fn at a time, so only direct recursion can be caught here; the resolver catches the
    /// rest).
    own_name: String,
    own_kind: &'static str,
    /// The 2-D shared tiles in scope, by name: their column count (module `tile2d`).
    tiles2d: std::collections::HashMap<String, syn::Expr>,
}

impl Lowerer {
    /// A lowerer for the fn `own_name`, a `"kernel"` or a `"#[device] fn"`.
    pub fn new(own_name: &syn::Ident, own_kind: &'static str) -> Lowerer {
        Lowerer {
            error: None,
            own_name: own_name.to_string(),
            own_kind,
            tiles2d: std::collections::HashMap::new(),
        }
    }

    /// Records an error and returns placeholder tokens (never emitted: see [`Self::finish`]).
    pub fn fail(&mut self, error: syn::Error) -> TokenStream {
        match &mut self.error {
            Some(first) => first.combine(error),
            None => self.error = Some(error),
        }
        quote!(::core::unreachable!())
    }

    pub fn fail_at<T: quote::ToTokens>(
        &mut self,
        node: T,
        msg: impl std::fmt::Display,
    ) -> TokenStream {
        self.fail(syn::Error::new_spanned(node, msg))
    }

    /// Records an error from a parsing helper; `None` when it failed.
    pub fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.fail(e)).ok()
    }

    pub fn finish(self) -> syn::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// `__ir::Span::new(line, col)` for the start of a syn span.
pub fn span_tokens(span: Span) -> TokenStream {
    let start = span.start();
    let (line, col) = (start.line as u32, start.column as u32);
    quote!(__ir::Span::new(#line, #col))
}

/// `::std::string::String::from("text")`.
pub fn string(text: &str) -> TokenStream {
    quote!(::std::string::String::from(#text))
}

/// `::std::vec![a, b, ...]`.
pub fn vec_of(items: &[TokenStream]) -> TokenStream {
    quote!(::std::vec![#(#items),*])
}

/// `Some(x)` / `None`.
pub fn option(item: Option<TokenStream>) -> TokenStream {
    match item {
        Some(x) => quote!(::std::option::Option::Some(#x)),
        None => quote!(::std::option::Option::None),
    }
}

/// `Box::new(x)`.
pub fn boxed(x: TokenStream) -> TokenStream {
    quote!(::std::boxed::Box::new(#x))
}

/// Is `attr` a lint attribute (`allow`, `warn`, ...)? Those are kept for rustc and ignored.
fn is_lint_attr(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    ["allow", "warn", "deny", "expect", "forbid"]
        .iter()
        .any(|n| path.is_ident(n))
}

/// Is `attr` `#[unroll]` or `#[unroll(N)]`?
pub fn is_unroll_attr(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("unroll")
}
