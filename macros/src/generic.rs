//! Element-type parameters: `types(T = [f32, f16], Q = [F8E4M3, F8E5M2])` expands a fn into
//! one concrete fn per combination, named `{name}_{suffix}` (`cast_rows_f16_e4m3`), before
//! anything else sees it; and a call `f::<f16, N>(..)` becomes `f_f16::<N>(..)`, the instance
//! of a type-expanded device fn.

use crate::lower::INTRINSICS;
use crate::types::{is_type_name, Scalar, SUPPORTED_TYPES};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{GenericParam, Ident, Token};

/// `NAME = [ty, ..]` inside `types(..)`.
pub struct TypeList {
    pub name: Ident,
    pub types: Vec<syn::Type>,
    /// Span of the brackets.
    pub span: Span,
}

impl Parse for TypeList {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let content;
        let brackets = syn::bracketed!(content in input);
        let types = Punctuated::<syn::Type, Token![,]>::parse_terminated(&content)?;
        Ok(TypeList {
            name,
            types: types.into_iter().collect(),
            span: brackets.span.join(),
        })
    }
}

/// The inside of `types(..)`; `keyword` is the `types` token, for the error on `types()`.
pub fn parse_lists(keyword: &Ident, input: ParseStream) -> syn::Result<Vec<TypeList>> {
    let content;
    syn::parenthesized!(content in input);
    let lists: Vec<TypeList> = Punctuated::<TypeList, Token![,]>::parse_terminated(&content)?
        .into_iter()
        .collect();
    if lists.is_empty() {
        return Err(syn::Error::new(
            keyword.span(),
            "`types()` binds no type parameter; write `types(T = [f32, f16, bf16])`",
        ));
    }
    Ok(lists)
}

/// The arguments of `#[device(..)]`: `types(..)` and `crate = path`.
#[derive(Default)]
pub struct DeviceAttr {
    pub types: Vec<TypeList>,
    pub krate: Option<syn::Path>,
}

impl Parse for DeviceAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut attr = DeviceAttr::default();
        while !input.is_empty() {
            if let Some(path) = crate::attr::parse_crate_path(input)? {
                attr.krate = Some(path);
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
                continue;
            }
            let key: Ident = input.parse()?;
            if key != "types" {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown device attribute `{key}`; `#[device]` takes only \
                         `types(NAME = [ty, ...], ...)` and `crate = path::to::dsl`"
                    ),
                ));
            }
            attr.types.extend(parse_lists(&key, input)?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(attr)
    }
}

/// The message for a type parameter that `types(..)` does not bind.
pub fn unbound_message(name: &Ident) -> String {
    format!(
        "type parameter `{name}` needs its element types: add `types({name} = [f32, f16, bf16])` \
         to the attribute, which expands the fn once per listed type (kernels are monomorphic)"
    )
}

/// Expands `func` over `lists` and passes each instance to `emit`; without lists, `func`
/// itself (with its element-typed calls rewritten). On a malformed `types(..)` only the
/// errors are emitted: a generic checked copy would bury them under trait errors.
pub fn expand(
    func: &syn::ItemFn,
    lists: &[TypeList],
    kind: &str,
    emit: impl Fn(syn::ItemFn) -> TokenStream,
) -> TokenStream {
    if lists.is_empty() {
        let mut func = func.clone();
        InstanceCalls.visit_block_mut(&mut func.block);
        return emit(func);
    }
    match bindings(func, lists) {
        Ok(bound) => combinations(&bound)
            .iter()
            .map(|combo| emit(instance(func, combo, kind)))
            .collect(),
        Err(e) => e.to_compile_error(),
    }
}

/// A checked `types(..)` entry: the parameter and its types, as written and as scalars.
struct Bound {
    name: Ident,
    types: Vec<(Ident, Scalar)>,
}

/// Checks the lists against the fn's type parameters, collecting every error.
fn bindings(func: &syn::ItemFn, lists: &[TypeList]) -> syn::Result<Vec<Bound>> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(first) => first.combine(e),
        None => errors = Some(e),
    };
    let params: Vec<&syn::TypeParam> = func
        .sig
        .generics
        .params
        .iter()
        .filter_map(|g| match g {
            GenericParam::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    let mut bound: Vec<Bound> = Vec::new();
    for list in lists {
        match bind(list, &params, &bound) {
            Ok(b) => bound.push(b),
            Err(e) => push(e),
        }
    }
    for p in &params {
        if let Some(d) = &p.default {
            push(syn::Error::new_spanned(
                d,
                "type parameter defaults are not supported; list the types in `types(..)`",
            ));
        }
        if !lists.iter().any(|l| l.name == p.ident) {
            push(syn::Error::new(p.ident.span(), unbound_message(&p.ident)));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(bound),
    }
}

fn bind(list: &TypeList, params: &[&syn::TypeParam], earlier: &[Bound]) -> syn::Result<Bound> {
    if !params.iter().any(|p| p.ident == list.name) {
        let known: Vec<String> = params.iter().map(|p| p.ident.to_string()).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(syn::Error::new(
            list.name.span(),
            format!(
                "`{}` is not a type parameter of this fn (its type parameters: {known}); \
                 declare it: `fn name<{}: Float>(..)`",
                list.name, list.name
            ),
        ));
    }
    if earlier.iter().any(|b| b.name == list.name) {
        return Err(syn::Error::new(
            list.name.span(),
            format!("`{}` is given its types twice", list.name),
        ));
    }
    if list.types.is_empty() {
        return Err(syn::Error::new(
            list.span,
            format!("`types({} = [])` lists no types", list.name),
        ));
    }
    let mut types: Vec<(Ident, Scalar)> = Vec::new();
    for ty in &list.types {
        let (id, s) = element_type(ty)?;
        if types.iter().any(|(_, t)| *t == s) {
            return Err(syn::Error::new_spanned(
                ty,
                format!("`{id}` is listed twice for `{}`", list.name),
            ));
        }
        types.push((id, s));
    }
    Ok(Bound {
        name: list.name.clone(),
        types,
    })
}

/// A scalar element type as listed in `types(..)`.
fn element_type(ty: &syn::Type) -> syn::Result<(Ident, Scalar)> {
    let id = match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.get_ident(),
        _ => None,
    };
    if let Some(s) = id.and_then(|id| Scalar::from_name(&id.to_string())) {
        return Ok((id.expect("checked above").clone(), s));
    }
    let text = ty.to_token_stream().to_string().replace(' ', "");
    let msg = if text.starts_with("Vec2") || text.starts_with("Vec4") {
        format!(
            "`types(..)` lists element types, not `{text}`: list `f32` and write `Vec4<T>` in \
             the signature"
        )
    } else {
        let scalars = SUPPORTED_TYPES.trim_end_matches(", Vec2<T>, Vec4<T>");
        format!("unknown element type `{text}` in `types(..)`; element types are {scalars}")
    };
    Err(syn::Error::new_spanned(ty, msg))
}

/// Every choice of one type per parameter, first parameter outermost.
fn combinations(bound: &[Bound]) -> Vec<Vec<(&Ident, &Ident, Scalar)>> {
    let mut out: Vec<Vec<(&Ident, &Ident, Scalar)>> = vec![Vec::new()];
    for b in bound {
        out = out
            .iter()
            .flat_map(|prefix| {
                b.types.iter().map(move |(ty, s)| {
                    let mut next = prefix.clone();
                    next.push((&b.name, ty, *s));
                    next
                })
            })
            .collect();
    }
    out
}

/// One concrete copy: type params substituted and dropped, name suffixed, a doc line added.
fn instance(func: &syn::ItemFn, combo: &[(&Ident, &Ident, Scalar)], kind: &str) -> syn::ItemFn {
    let mut f = func.clone();
    let generics = &mut f.sig.generics;
    generics.params = std::mem::take(&mut generics.params)
        .into_pairs()
        .filter(|p| !matches!(p.value(), GenericParam::Type(_)))
        .collect();
    if generics.params.is_empty() {
        generics.lt_token = None;
        generics.gt_token = None;
    }
    let mut subst = Substitute(combo.iter().map(|(n, t, _)| (*n, *t)).collect());
    subst.visit_signature_mut(&mut f.sig);
    subst.visit_block_mut(&mut f.block);
    InstanceCalls.visit_block_mut(&mut f.block);

    let suffix: Vec<&str> = combo.iter().map(|(_, _, s)| s.suffix()).collect();
    let name = &func.sig.ident;
    f.sig.ident = format_ident!("{}_{}", name, suffix.join("_"), span = name.span());
    let params: Vec<String> = combo.iter().map(|(n, _, _)| n.to_string()).collect();
    let binding: Vec<String> = combo.iter().map(|(n, t, _)| format!("{n} = {t}")).collect();
    let doc = format!(
        " Instance of the generic {kind} `{name}<{}>` with {}.",
        params.join(", "),
        binding.join(", ")
    );
    if f.attrs.iter().any(|a| a.path().is_ident("doc")) {
        f.attrs.push(syn::parse_quote!(#[doc = ""]));
    }
    f.attrs.push(syn::parse_quote!(#[doc = #doc]));
    f
}

/// Replaces the bound type parameters by their types wherever a path starts with one: `T`,
/// `Vec4<T>`, `T::from_f32`, `as T`, `f::<T>`. The type keeps the span of the parameter's
/// use, so errors in an instance point at the generic source.
struct Substitute<'a>(Vec<(&'a Ident, &'a Ident)>);

impl VisitMut for Substitute<'_> {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first_mut() {
                let plain = first.arguments.is_none();
                let bound = self
                    .0
                    .iter()
                    .find(|(name, _)| plain && first.ident == **name);
                if let Some((_, ty)) = bound {
                    let span = first.ident.span();
                    first.ident = (*ty).clone();
                    first.ident.set_span(span);
                }
            }
        }
        syn::visit_mut::visit_path_mut(self, path);
    }
}

/// `f::<f16, N>(..)` → `f_f16::<N>(..)` for calls of device fns (not intrinsics or type
/// paths, whose type arguments are their own: `shared_array::<f16>`, `Vec4::<f16>::new`).
/// The new name keeps the span of `f`: an instance that does not exist is reported by rustc
/// at the call ("cannot find function `f_f16`").
struct InstanceCalls;

impl VisitMut for InstanceCalls {
    fn visit_expr_call_mut(&mut self, call: &mut syn::ExprCall) {
        syn::visit_mut::visit_expr_call_mut(self, call);
        if let syn::Expr::Path(p) = &mut *call.func {
            if p.qself.is_none() && is_device_path(&p.path) {
                instance_path(&mut p.path);
            }
        }
    }
}

fn is_device_path(path: &syn::Path) -> bool {
    let first = path.segments[0].ident.to_string();
    path.leading_colon.is_some()
        || !(is_type_name(&first) || path.segments.len() == 1 && INTRINSICS.contains(&&*first))
}

fn instance_path(path: &mut syn::Path) {
    let last = path.segments.last_mut().expect("a path has a segment");
    let syn::PathArguments::AngleBracketed(args) = &mut last.arguments else {
        return;
    };
    let mut suffix = Vec::new();
    let mut rest = Punctuated::<syn::GenericArgument, Token![,]>::new();
    for arg in std::mem::take(&mut args.args) {
        match scalar_arg(&arg) {
            Some(s) => suffix.push(s.suffix()),
            None => rest.push(arg),
        }
    }
    args.args = rest;
    if suffix.is_empty() {
        return;
    }
    if args.args.is_empty() {
        last.arguments = syn::PathArguments::None;
    }
    let span = last.ident.span();
    last.ident = format_ident!("{}_{}", last.ident, suffix.join("_"), span = span);
}

/// `f16` in `f::<f16>`: a lone name of a DSL scalar type.
fn scalar_arg(arg: &syn::GenericArgument) -> Option<Scalar> {
    match arg {
        syn::GenericArgument::Type(syn::Type::Path(p)) if p.qself.is_none() => {
            Scalar::from_name(&p.path.get_ident()?.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn lists(attr: TokenStream) -> Vec<TypeList> {
        syn::parse2::<DeviceAttr>(attr).unwrap().types
    }

    /// The instances `expand` emits, as source text.
    fn expand_text(attr: TokenStream, func: TokenStream) -> Vec<String> {
        let func: syn::ItemFn = syn::parse2(func).unwrap();
        let out = expand(&func, &lists(attr), "device fn", |f| {
            let text = quote!(#f).to_string();
            quote!(#text)
        });
        let strings: Vec<syn::LitStr> = syn::parse::Parser::parse2(
            Punctuated::<syn::LitStr, syn::parse::Nothing>::parse_terminated,
            out,
        )
        .map(|p| p.into_iter().collect())
        .unwrap_or_else(|_| panic!("expansion failed"));
        strings.iter().map(|s| s.value()).collect()
    }

    #[test]
    fn instances_follow_declaration_order_and_substitute_everywhere() {
        let out = expand_text(
            quote!(types(T = [f32, bf16], Q = [F8E4M3, f8e5m2])),
            quote! {
                fn cast<T: Float, Q: Fp8, const N: u32>(x: &[Vec4<T>]) -> Q {
                    let y: T = T::from_f32(1.0) as T;
                    Q::from_f32(x[0].x.to_f32() * Q::max_finite())
                }
            },
        );
        let names: Vec<&str> = out
            .iter()
            .map(|s| s.rsplit(" fn ").next().unwrap().split(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "cast_f32_e4m3",
                "cast_f32_e5m2",
                "cast_bf16_e4m3",
                "cast_bf16_e5m2"
            ]
        );
        let bf16_e4m3 = &out[2];
        assert!(bf16_e4m3.contains("< const N : u32 >"), "{bf16_e4m3}");
        assert!(bf16_e4m3.contains("x : & [Vec4 < bf16 >]"), "{bf16_e4m3}");
        assert!(
            bf16_e4m3.contains("let y : bf16 = bf16 :: from_f32 (1.0) as bf16"),
            "{bf16_e4m3}"
        );
        assert!(bf16_e4m3.contains("F8E4M3 :: max_finite ()"), "{bf16_e4m3}");
        assert!(bf16_e4m3.contains("-> F8E4M3"), "{bf16_e4m3}");
        assert!(
            bf16_e4m3.contains(
                "Instance of the generic device fn `cast<T, Q>` with T = bf16, Q = F8E4M3."
            ),
            "{bf16_e4m3}"
        );
        // A fn with no const generics left loses its angle brackets.
        let out = expand_text(
            quote!(types(T = [f16])),
            quote!(
                fn w<T: Float>(v: T) {}
            ),
        );
        assert!(out[0].contains("fn w_f16 (v : f16)"), "{}", out[0]);
    }

    fn rewritten(call: TokenStream) -> String {
        let mut e: syn::Expr = syn::parse2(call).unwrap();
        InstanceCalls.visit_expr_mut(&mut e);
        quote!(#e).to_string()
    }

    #[test]
    fn element_types_in_a_turbofish_name_the_instance() {
        assert_eq!(rewritten(quote!(f::<f16, N>(x))), "f_f16 :: < N > (x)");
        assert_eq!(rewritten(quote!(f::<bf16, F8E5M2>(x))), "f_bf16_e5m2 (x)");
        assert_eq!(
            rewritten(quote!(m::f::<F8E4M3>(g::<u32>(x)))),
            "m :: f_e4m3 (g_u32 (x))"
        );
        assert_eq!(rewritten(quote!(f::<N>(x))), "f :: < N > (x)");
        // Intrinsics and type paths keep their type arguments.
        assert_eq!(
            rewritten(quote!(shared_array::<f16>(N))),
            "shared_array :: < f16 > (N)"
        );
        assert_eq!(
            rewritten(quote!(Vec4::<f16>::new(a, b, c, d))),
            "Vec4 :: < f16 > :: new (a , b , c , d)"
        );
    }
}
