//! The arguments of `#[kernel(...)]`: `block = (..)`, `tune(..)`, `default(..)`,
//! `constraint = ..`, `types(..)`.

use crate::generic::{parse_lists, TypeList};
use crate::sig::ConstInfo;
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

const USAGE: &str = "expected `block = (X, Y, Z)`, `tune(NAME = [v, ...], ...)`, \
                     `default(NAME = v, ...)`, `constraint = <bool expression>`, \
                     `types(NAME = [ty, ...], ...)` or `crate = path::to::dsl`";

/// The parsed attribute, before it is checked against the kernel's const generics.
#[derive(Default)]
pub struct KernelAttr {
    /// `block = ...`: the keyword's span and the dimensions.
    pub block: Option<(Span, Vec<Expr>)>,
    pub tune: Vec<Entry<Vec<Expr>>>,
    pub defaults: Vec<Entry<Expr>>,
    pub constraints: Vec<Expr>,
    /// `types(..)`: element-type parameters, expanded before everything else.
    pub types: Vec<TypeList>,
    /// `crate = path`: where the generated code finds the DSL crate (see `crate::path`).
    pub krate: Option<syn::Path>,
}

/// `NAME = value` inside `tune(..)` or `default(..)`.
pub struct Entry<T> {
    pub name: Ident,
    pub value: T,
    /// Span of the value (the brackets of a list).
    pub span: Span,
}

enum Item {
    Block(Ident, Expr),
    Tune(Punctuated<Entry<Vec<Expr>>, Token![,]>),
    Default(Punctuated<Entry<Expr>, Token![,]>),
    Constraint(Expr),
    Types(Vec<TypeList>),
    Crate(syn::Path),
}

impl Parse for Entry<Vec<Expr>> {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let content;
        let brackets = syn::bracketed!(content in input);
        let values = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
        Ok(Entry {
            name,
            value: values.into_iter().collect(),
            span: brackets.span.join(),
        })
    }
}

impl Parse for Entry<Expr> {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        let span = syn::spanned::Spanned::span(&value);
        Ok(Entry { name, value, span })
    }
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if let Some(path) = parse_crate_path(input)? {
            return Ok(Item::Crate(path));
        }
        let key: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), USAGE))?;
        match key.to_string().as_str() {
            "block" | "constraint" => {
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                Ok(if key == "block" {
                    Item::Block(key, value)
                } else {
                    Item::Constraint(value)
                })
            }
            "tune" | "default" => {
                let content;
                syn::parenthesized!(content in input);
                Ok(if key == "tune" {
                    Item::Tune(Punctuated::parse_terminated(&content)?)
                } else {
                    Item::Default(Punctuated::parse_terminated(&content)?)
                })
            }
            "types" => Ok(Item::Types(parse_lists(&key, input)?)),
            other => Err(syn::Error::new(
                key.span(),
                format!("unknown kernel attribute `{other}`; {USAGE}"),
            )),
        }
    }
}

impl Parse for KernelAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut attr = KernelAttr::default();
        for item in Punctuated::<Item, Token![,]>::parse_terminated(input)? {
            match item {
                Item::Block(key, value) => {
                    if attr.block.is_some() {
                        return Err(syn::Error::new(key.span(), "`block` is given twice"));
                    }
                    attr.block = Some((key.span(), block_dims(value)?));
                }
                Item::Tune(entries) => attr.tune.extend(entries),
                Item::Default(entries) => attr.defaults.extend(entries),
                Item::Constraint(e) => attr.constraints.push(e),
                Item::Types(lists) => attr.types.extend(lists),
                Item::Crate(path) => attr.krate = Some(path),
            }
        }
        Ok(attr)
    }
}

/// `crate = path` (the DSL crate's path for the generated code), when the input starts with
/// `crate`.
pub fn parse_crate_path(input: ParseStream) -> syn::Result<Option<syn::Path>> {
    if !input.peek(Token![crate]) {
        return Ok(None);
    }
    input.parse::<Token![crate]>()?;
    input.parse::<Token![=]>()?;
    Ok(Some(input.call(syn::Path::parse_mod_style)?))
}

/// `(X)`, `X`, `(X, Y)` or `(X, Y, Z)`.
fn block_dims(value: Expr) -> syn::Result<Vec<Expr>> {
    let span = syn::spanned::Spanned::span(&value);
    let dims: Vec<Expr> = match value {
        Expr::Paren(p) => vec![*p.expr],
        Expr::Tuple(t) => t.elems.into_iter().collect(),
        other => vec![other],
    };
    match dims.len() {
        1..=3 => Ok(dims),
        0 => Err(syn::Error::new(
            span,
            "`block = ()` gives no dimension; write `block = (X)`",
        )),
        _ => Err(syn::Error::new_spanned(
            &dims[3],
            "a block has at most 3 dimensions: `block = (X, Y, Z)`",
        )),
    }
}

/// One tunable of the checked space.
pub struct TuneParam {
    pub name: String,
    pub values: Vec<i64>,
    pub default: i64,
}

/// Checks `tune(..)` and `default(..)` against the const generics; returns the space's
/// parameters in declaration order of the consts.
pub fn tune_params(attr: &KernelAttr, consts: &[ConstInfo]) -> syn::Result<Vec<TuneParam>> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(first) => first.combine(e),
        None => errors = Some(e),
    };
    let mut lists: Vec<(&ConstInfo, Vec<i64>)> = Vec::new();
    for entry in &attr.tune {
        match tune_list(entry, consts, &lists) {
            Ok(item) => lists.push(item),
            Err(e) => push(e),
        }
    }
    let mut defaults: Vec<(&ConstInfo, i64)> = Vec::new();
    for entry in &attr.defaults {
        match default_value(entry, consts, &lists, &defaults) {
            Ok(item) => defaults.push(item),
            Err(e) => push(e),
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let params = consts.iter().filter_map(|c| {
        let listed = lists
            .iter()
            .find(|(l, _)| l.name == c.name)
            .map(|(_, v)| v.clone());
        let default = defaults
            .iter()
            .find(|(d, _)| d.name == c.name)
            .map(|(_, v)| *v);
        // A default without a list makes a one-value tunable: configs get it for free.
        let values = listed.or_else(|| default.map(|d| vec![d]))?;
        let default = default.unwrap_or(values[0]);
        Some(TuneParam {
            name: c.name.to_string(),
            values,
            default,
        })
    });
    Ok(params.collect())
}

fn find_const<'a>(name: &Ident, consts: &'a [ConstInfo]) -> syn::Result<&'a ConstInfo> {
    consts.iter().find(|c| c.name == *name).ok_or_else(|| {
        let known: Vec<String> = consts.iter().map(|c| c.name.to_string()).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        syn::Error::new(
            name.span(),
            format!("`{name}` is not a const generic parameter of this kernel (its const generics: {known})"),
        )
    })
}

fn tune_list<'a>(
    entry: &Entry<Vec<Expr>>,
    consts: &'a [ConstInfo],
    earlier: &[(&ConstInfo, Vec<i64>)],
) -> syn::Result<(&'a ConstInfo, Vec<i64>)> {
    let c = find_const(&entry.name, consts)?;
    if earlier.iter().any(|(e, _)| e.name == c.name) {
        return Err(syn::Error::new(
            entry.name.span(),
            format!("`{}` is tuned twice", c.name),
        ));
    }
    if entry.value.is_empty() {
        return Err(syn::Error::new(
            entry.span,
            format!("`tune({} = [])` lists no values", c.name),
        ));
    }
    let mut values = Vec::new();
    for v in &entry.value {
        let value = const_value(v, c)?;
        if values.contains(&value) {
            return Err(syn::Error::new_spanned(
                v,
                format!("{value} is listed twice for `{}`", c.name),
            ));
        }
        values.push(value);
    }
    Ok((c, values))
}

fn default_value<'a>(
    entry: &Entry<Expr>,
    consts: &'a [ConstInfo],
    lists: &[(&ConstInfo, Vec<i64>)],
    earlier: &[(&ConstInfo, i64)],
) -> syn::Result<(&'a ConstInfo, i64)> {
    let c = find_const(&entry.name, consts)?;
    if earlier.iter().any(|(e, _)| e.name == c.name) {
        return Err(syn::Error::new(
            entry.name.span(),
            format!("`{}` has two defaults", c.name),
        ));
    }
    let value = const_value(&entry.value, c)?;
    if let Some((_, values)) = lists.iter().find(|(l, _)| l.name == c.name) {
        if !values.contains(&value) {
            return Err(syn::Error::new(
                entry.span,
                format!(
                    "the default {value} of `{}` is not among its tuned values {values:?}",
                    c.name
                ),
            ));
        }
    }
    Ok((c, value))
}

/// An integer literal (optionally negated) or, for a bool const, `true`/`false`.
fn const_value(e: &Expr, c: &ConstInfo) -> syn::Result<i64> {
    let (min, max) =
        c.ty.const_range()
            .expect("const generics have integer or bool types");
    let is_bool = matches!(
        e,
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(_),
            ..
        })
    );
    let value = literal_value(e)
        .filter(|_| is_bool != c.ty.is_int())
        .ok_or_else(|| {
            let what = if c.ty.is_int() {
                "integer literals"
            } else {
                "`true` or `false`"
            };
            syn::Error::new_spanned(e, format!("values of `{}` must be {what}", c.name))
        })?;
    if value < min || value > max {
        let ty = quote::ToTokens::to_token_stream(&c.ty_tokens).to_string();
        let msg = format!("{value} does not fit `{}: {ty}`", c.name);
        return Err(syn::Error::new_spanned(e, msg));
    }
    Ok(value as i64)
}

fn literal_value(e: &Expr) -> Option<i128> {
    match e {
        Expr::Lit(l) => match &l.lit {
            syn::Lit::Int(i) => i.base10_parse::<i128>().ok(),
            syn::Lit::Bool(b) => Some(b.value as i128),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match &*u.expr {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) => i.base10_parse::<i128>().ok().map(|v| -v),
            _ => None,
        },
        Expr::Paren(p) => literal_value(&p.expr),
        Expr::Group(g) => literal_value(&g.expr),
        _ => None,
    }
}

/// The constraint's source text, spaced like hand-written Rust.
pub fn tidy(text: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in [
        ("( ", "("),
        (" )", ")"),
        (" ,", ","),
        ("[ ", "["),
        (" ]", "]"),
        (" . ", "."),
        ("! ", "!"),
    ] {
        out = out.replace(from, to);
    }
    out
}
