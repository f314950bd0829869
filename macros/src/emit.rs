//! What `#[kernel]` and `#[device]` expand to.

use crate::attr::{tidy, tune_params, KernelAttr, TuneParam};
use crate::lower::{string, BlockUse, Lowerer};
use crate::sig::{analyze, checked_copy, FnKind, ParamKind, SigInfo};
use crate::types::Scalar;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Imports every generated builder starts with: the lowering emits `__ir::` / `__ty::` paths.
fn builder_prelude() -> TokenStream {
    let dsl = crate::path::dsl();
    quote! {
        #[allow(unused_imports)]
        use #dsl::ir as __ir;
        #[allow(unused_imports)]
        use #dsl::types as __ty;
    }
}

/// Doc attributes of the fn, repeated on its module.
fn docs(func: &syn::ItemFn) -> Vec<&syn::Attribute> {
    func.attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect()
}

pub fn kernel(attr: &KernelAttr, func: syn::ItemFn) -> TokenStream {
    match kernel_parts(attr, &func) {
        Ok(generated) => {
            let checked = checked_copy(&func);
            quote!(#checked #generated)
        }
        Err(e) => with_checked_copy(e, &func),
    }
}

/// The errors, and the checked copy so that rustc still checks the body and uses of the fn
/// do not cascade into more errors.
pub fn with_checked_copy(e: syn::Error, func: &syn::ItemFn) -> TokenStream {
    let errors = e.to_compile_error();
    let checked = checked_copy(func);
    quote!(#errors #checked)
}

fn kernel_parts(attr: &KernelAttr, func: &syn::ItemFn) -> syn::Result<TokenStream> {
    let dsl = crate::path::dsl();
    let mut lw = Lowerer::new(&func.sig.ident, "kernel");
    let sig = analyze(&func.sig, FnKind::Kernel, &mut lw);
    let tune = lw.check(tune_params(attr, &sig.consts));
    let block_dim = attr.block.as_ref().map(|(_, dims)| {
        let dims: Vec<_> = dims.iter().map(|d| lw.expr(d)).collect();
        quote!(::std::option::Option::Some(::std::vec![#(#dims),*]))
    });
    let block_dim = block_dim.unwrap_or_else(|| quote!(::std::option::Option::None));
    let body = lw.block(&func.block, BlockUse::Unit);
    lw.finish()?;
    let tune = tune.expect("no error was recorded");

    let name = &func.sig.ident;
    let builder = format_ident!("__warpforge_kernel_{}", name);
    let (name_str, line) = (string(&name.to_string()), fn_line(func));
    let (consts, params) = (sig.consts_ir(), sig.params_ir());
    let space = space(&tune, attr, &sig);
    let feasible = crate::feasible::check(name, &tune, &attr.constraints, &sig);
    let prelude = builder_prelude();
    let launcher = launcher(name, &sig);
    let (vis, docs) = (&func.vis, docs(func));
    Ok(quote! {
        #feasible

        #[doc(hidden)]
        #[allow(dead_code, non_snake_case, clippy::all)]
        fn #builder() -> #dsl::ir::KernelDef {
            #prelude
            __ir::KernelDef {
                name: #name_str,
                file: ::std::string::String::from(::core::file!()),
                line: #line,
                consts: #consts,
                params: #params,
                block_dim: #block_dim,
                body: #body,
                space: #space,
            }
        }

        #(#docs)*
        #[allow(dead_code)]
        #vis mod #name {
            /// The kernel's surface IR, built on first use.
            pub fn def() -> &'static #dsl::ir::KernelDef {
                static DEF: ::std::sync::OnceLock<#dsl::ir::KernelDef> = ::std::sync::OnceLock::new();
                DEF.get_or_init(super::#builder)
            }

            /// The declared tunable space (`tune(..)`, `default(..)`, `constraint = ..`).
            pub fn space() -> &'static #dsl::TuneSpace {
                &def().space
            }

            /// Every tunable at its default value.
            pub fn default_config() -> #dsl::Config {
                space().default_config()
            }

            #launcher
        }
    })
}

/// Line of the `fn` keyword.
fn fn_line(func: &syn::ItemFn) -> u32 {
    func.sig.fn_token.span.start().line as u32
}

/// `TuneSpace { params, constraints }`, with each constraint compiled to a Rust fn.
fn space(tune: &[TuneParam], attr: &KernelAttr, sig: &SigInfo) -> TokenStream {
    let dsl = crate::path::dsl();
    let params = tune.iter().map(|p| {
        let (name, values, default) = (string(&p.name), &p.values, p.default);
        quote!(#dsl::space::TuneParam { name: #name, values: ::std::vec![#(#values),*], default: #default })
    });
    let bindings: Vec<TokenStream> = sig
        .consts
        .iter()
        .map(|c| {
            let (name, key) = (&c.name, c.name.to_string());
            if c.ty == Scalar::Bool {
                quote!(let #name: bool = cfg.get(#key).unwrap_or(0) != 0;)
            } else {
                quote!(let #name: i64 = cfg.get(#key).unwrap_or(0);)
            }
        })
        .collect();
    let constraints = attr.constraints.iter().map(|expr| {
        let text = tidy(&quote!(#expr).to_string());
        quote!(#dsl::space::Constraint {
            text: ::std::string::String::from(#text),
            check: {
                #[allow(unused_variables, unused_parens, non_snake_case)]
                fn check(cfg: &#dsl::Config) -> bool {
                    #(#bindings)*
                    #expr
                }
                check
            },
        })
    });
    quote!(#dsl::space::TuneSpace {
        params: ::std::vec![#(#params),*],
        constraints: ::std::vec![#(#constraints),*],
    })
}

/// Names the launcher uses for itself; a kernel parameter with one of them is renamed.
const LAUNCHER_NAMES: [&str; 4] = ["device", "config", "dims", "args"];

/// `pub fn launch(device, config, dims, <typed buffers and values>)`.
fn launcher(name: &syn::Ident, sig: &SigInfo) -> TokenStream {
    let dsl = crate::path::dsl();
    let mut inputs = Vec::new();
    let mut args = Vec::new();
    for p in &sig.params {
        let id = if LAUNCHER_NAMES.contains(&p.name.to_string().as_str()) {
            format_ident!("{}_arg", p.name)
        } else {
            p.name.clone()
        };
        match &p.kind {
            ParamKind::Slice {
                elem,
                mutable: false,
            } => {
                let t = elem.elem.host();
                inputs.push(quote!(#id: &#dsl::Buffer<#t>));
                args.push(quote!(#dsl::Arg::slice(#id)));
            }
            ParamKind::Slice {
                elem,
                mutable: true,
            } => {
                let t = elem.elem.host();
                inputs.push(quote!(#id: &mut #dsl::Buffer<#t>));
                args.push(quote!(#dsl::Arg::slice_mut(#id)));
            }
            ParamKind::Value(t) => {
                let t = t.elem.host();
                inputs.push(quote!(#id: #t));
                args.push(quote!(#dsl::Arg::value(#id)));
            }
        }
    }
    let count = args.len();
    let doc = format!(
        "Launches `{name}` on `device` for `config` (for example [`default_config`]) with the \
         grid and block shape `dims`. Buffers of `Vec2`/`Vec4` parameters are passed as buffers \
         of their lanes."
    );
    quote! {
        #[doc = #doc]
        #[allow(clippy::too_many_arguments)]
        pub fn launch(
            device: &#dsl::Device,
            config: &#dsl::Config,
            dims: #dsl::LaunchDims,
            #(#inputs),*
        ) -> ::std::result::Result<(), #dsl::Error> {
            let mut args: [#dsl::Arg<'_>; #count] = [#(#args),*];
            device.launch(def(), config, dims, &mut args)
        }
    }
}

pub fn device(func: syn::ItemFn) -> TokenStream {
    match device_parts(&func) {
        Ok(generated) => {
            let checked = checked_copy(&func);
            quote!(#checked #generated)
        }
        Err(e) => with_checked_copy(e, &func),
    }
}

fn device_parts(func: &syn::ItemFn) -> syn::Result<TokenStream> {
    let dsl = crate::path::dsl();
    let mut lw = Lowerer::new(&func.sig.ident, "#[device] fn");
    let sig = analyze(&func.sig, FnKind::Device, &mut lw);
    let usage = if sig.ret.is_some() {
        BlockUse::Value
    } else {
        BlockUse::Unit
    };
    let body = lw.block(&func.block, usage);
    lw.finish()?;

    let name = &func.sig.ident;
    let builder = format_ident!("__warpforge_device_{}", name);
    let (name_str, line) = (string(&name.to_string()), fn_line(func));
    let (consts, params) = (sig.consts_ir(), sig.params_ir());
    let ret = match sig.ret {
        Some(t) => {
            let t = t.ir();
            quote!(::std::option::Option::Some(#t))
        }
        None => quote!(::std::option::Option::None),
    };
    let prelude = builder_prelude();
    let (vis, docs) = (&func.vis, docs(func));
    Ok(quote! {
        #[doc(hidden)]
        #[allow(dead_code, non_snake_case, clippy::all)]
        fn #builder() -> #dsl::ir::DeviceFnDef {
            #prelude
            __ir::DeviceFnDef {
                name: #name_str,
                file: ::std::string::String::from(::core::file!()),
                line: #line,
                consts: #consts,
                params: #params,
                ret: #ret,
                body: #body,
            }
        }

        #(#docs)*
        #[allow(dead_code)]
        #vis mod #name {
            /// The device function's surface IR.
            pub fn def() -> #dsl::ir::DeviceFnDef {
                super::#builder()
            }
        }
    })
}
