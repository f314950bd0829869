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
//! `default(NAME = v, ..)`, `constraint = <bool expression over the consts>` (repeatable),
//! `types(NAME = [ty, ..], ..)`, `crate = path`. Device attribute: `types(..)`, `crate = path`.
//! The DSL surface is documented in `warpforge_dsl::prelude`.
//!
//! ```
//! use warpforge_dsl::prelude::*;
//! use warpforge_macros::kernel;
//!
//! #[kernel(block = (BLOCK), tune(BLOCK = [128, 256]), constraint = BLOCK % 32 == 0)]
//! pub fn negate<const BLOCK: u32>(x: &mut [f32], n: u32) {
//!     let i = block_idx_x() * BLOCK + thread_idx_x();
//!     if i < n {
//!         x[i] = -x[i];
//!     }
//! }
//!
//! # fn main() {
//! // The surface IR, the declared space and a default config come with it.
//! assert_eq!(negate::def().name, "negate");
//! assert_eq!(negate::space().configs().len(), 2);
//! assert_eq!(negate::default_config().get("BLOCK"), Some(128));
//! # }
//! ```
//!
//! A kernel must be an item of a module, not of a function body (its generated module
//! refers to it through `super::`).
//!
//! # Which crate the generated code names
//!
//! The generated code reaches the DSL through `::warpforge::dsl` when the calling package
//! depends on the `warpforge` facade (renamed or not), through `::warpforge_dsl` when it
//! depends on `warpforge-dsl` only; the calling package's `Cargo.toml` is read to decide.
//! `crate = path` overrides this: `#[kernel(crate = ::my_engine::warpforge::dsl, block = (128))]`
//! for a facade re-exported under another path.
//!
//! # Element-type parameters
//!
//! Kernels are monomorphic, so type parameters are expanded here, at macro time:
//!
//! ```text
//! #[kernel(block = (BLOCK), tune(BLOCK = [128, 256]), types(T = [f32, f16], Q = [F8E4M3, F8E5M2]))]
//! pub fn cast_rows<T: Float, Q: Fp8, const BLOCK: u32>(x: &[Vec4<T>], q: &mut [Vec4<Q>], s: f32) {
//!     let i = block_idx_x() * BLOCK + thread_idx_x();
//!     if i < x.len() { q[i] = quantize4::<Q>(load4::<T>(x[i]), s); }
//! }
//! ```
//!
//! - Every combination of the listed types (cartesian product, declaration order) becomes
//!   one complete kernel or device fn, with the type parameters substituted everywhere in the
//!   signature and body and removed from the generics. It is named `{name}_{suffix}`, the
//!   suffix being the types' short names joined by `_` (`f32`, `f16`, `bf16`, `e4m3` for
//!   `F8E4M3`, `e5m2` for `F8E5M2`, `u32`, ...): `cast_rows_f16_e4m3`, with its own checked
//!   copy and `mod cast_rows_f16_e4m3 { def(), launch, .. }` and a doc line naming the
//!   generic it instantiates. The generic name itself is not emitted.
//! - A call `f::<ty, ..>(args)` whose turbofish holds element types (after substitution:
//!   `load4::<T>` reads `load4::<f16>` in the f16 instance) calls the instance
//!   `f_{suffix}(args)`; the other turbofish arguments (const generics) stay:
//!   `f::<T, 4>` → `f_f16::<4>`. This holds in every kernel and device fn, generic or not.
//!   Intrinsics (`shared_array::<T>`) and type paths (`Vec4::<T>::new`, `T::from_f32`) keep
//!   their type arguments. Calling a type the callee does not list fails where the call is
//!   written: "cannot find function `load4_bf16` in this scope" (add `bf16` to the callee's
//!   `types(..)`).
//! - Bounds (`T: Float`, `Q: Fp8` from the prelude) only document the generic source: each
//!   instance is checked with its concrete types. `x.to_f32()`, `T::from_f32(x)` and
//!   `T::max_finite()` work on every float format, `f32` included.
//! - A type parameter without `types(..)`, a `types` name that is not a type parameter, an
//!   empty list, a type listed twice and a name that is not a DSL scalar type are spanned
//!   compile errors.

mod attr;
mod emit;
mod feasible;
mod generic;
mod lower;
mod path;
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
            path::set_for_call(attr.krate.as_ref());
            generic::expand(&func, &attr.types, "kernel", |f| emit::kernel(&attr, f)).into()
        }
        Err(e) => {
            path::set_for_call(None);
            emit::with_checked_copy(e, &func).into()
        }
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
        Ok(attr) => {
            path::set_for_call(attr.krate.as_ref());
            generic::expand(&func, &attr.types, "device fn", emit::device).into()
        }
        Err(e) => {
            path::set_for_call(None);
            emit::with_checked_copy(e, &func).into()
        }
    }
}

/// The error, plus the item unchanged so that uses of it do not cascade into more errors.
fn with_item(e: syn::Error, item: TokenStream) -> TokenStream {
    let mut out: TokenStream = e.to_compile_error().into();
    out.extend(item);
    out
}
