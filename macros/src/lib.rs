//! `#[kernel]` and `#[device]`: GPU kernels written in Rust syntax.
//!
//! For `#[kernel(..)] fn name<consts>(params) { body }` the macro emits:
//! - the function itself, with slice parameters rewritten to
//!   `warpforge_dsl::prelude::Slice<T>` and `#[unroll]` removed, so rustc type-checks the
//!   body against the DSL prelude and its errors point at the kernel's own lines (never
//!   called);
//! - `mod name` with `def()` (the surface IR, `warpforge_dsl::ir::KernelDef`), `space()`,
//!   `default_config()` and a typed `launch(device, config, dims, buffers and values..)`.
//!
//! For `#[device] fn name<consts>(params) -> Ret { body }`: the checked function (callable
//! from kernels' checked copies) and `mod name { pub fn def() -> DeviceFnDef }`.
//!
//! Kernel attribute: `block = (X[, Y[, Z]])`, `tune(NAME = [v, ..], ..)`,
//! `default(NAME = v, ..)`, `constraint = <bool expression over the consts>` (repeatable).
//! The DSL surface is documented in `warpforge_dsl::prelude`.

mod attr;
mod emit;
mod feasible;
mod generic;
mod lower;
mod sig;
mod types;

use proc_macro::TokenStream;

/// Turns a Rust function into a warpforge kernel. See the crate docs.
#[proc_macro_attribute]
pub fn kernel(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_item(syn::Error::new(e.span(), "`#[kernel]` goes on a fn"), item),
    };
    match syn::parse::<attr::KernelAttr>(attr) {
        Ok(attr) => {
            generic::expand(&func, &attr.types, "kernel", |f| emit::kernel(&attr, f)).into()
        }
        Err(e) => emit::with_checked_copy(e, &func).into(),
    }
}

/// Turns a Rust function into a device function callable from kernels. See the crate docs.
#[proc_macro_attribute]
pub fn device(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_item(syn::Error::new(e.span(), "`#[device]` goes on a fn"), item),
    };
    match syn::parse::<generic::DeviceAttr>(attr) {
        Ok(attr) => generic::expand(&func, &attr.types, "device fn", emit::device).into(),
        Err(e) => emit::with_checked_copy(e, &func).into(),
    }
}

/// The error, plus the item unchanged so that uses of it do not cascade into more errors.
fn with_item(e: syn::Error, item: TokenStream) -> TokenStream {
    let mut out: TokenStream = e.to_compile_error().into();
    out.extend(item);
    out
}
