//! Specialization and typing: surface IR ([`crate::ir`]) + [`Config`] → typed IR
//! ([`crate::typed`]).
//!
//! For one config the resolver folds the const generics into constants, resolves every name
//! (variables, parameters, arrays, const generics), types every expression (with inference
//! for untyped literals, see `infer`), turns intrinsic calls into IR intrinsics, and
//! specializes the device functions a kernel calls. Every error names the kernel and points
//! at the user's line.

mod expr;
mod fold;
mod func;
mod infer;
mod intrinsics;

use crate::ir::{DeviceFnDef, KernelDef, Span};
use crate::space::Config;
use crate::typed;
use crate::types::ScalarType;
use std::fmt;

/// An error in a kernel found while specializing it, with the place it points at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ResolveError {
    /// The kernel being specialized.
    pub kernel: String,
    /// The function the error is in (the kernel or a device function).
    pub function: String,
    pub file: String,
    pub span: Span,
    pub message: String,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel `{}`", self.kernel)?;
        if self.function != self.kernel {
            write!(f, " (in device function `{}`)", self.function)?;
        }
        write!(
            f,
            " at {}:{}:{}: {}",
            self.file,
            self.span.line,
            self.span.col + 1,
            self.message
        )
    }
}

/// Specializes `def` for `config` and types it.
///
/// The config must give a value to every const generic; tunable values must lie in the
/// declared space and satisfy its constraints.
pub fn specialize(def: &KernelDef, config: &Config) -> Result<typed::Kernel, ResolveError> {
    let error = |message: String| ResolveError {
        kernel: def.name.clone(),
        function: def.name.clone(),
        file: def.file.clone(),
        span: Span::new(def.line, 0),
        message,
    };
    def.space.check_member(config).map_err(&error)?;
    let consts = const_values(&def.consts, |name| config.get(name)).map_err(&error)?;
    let ordered = Config {
        values: consts.iter().map(|(n, _, v)| (n.clone(), *v)).collect(),
    };
    let mut ctx = func::KernelCtx::new(def);
    let block_dim = match &def.block_dim {
        Some(dims) => Some(ctx.block_dim(dims, &consts)?),
        None => None,
    };
    ctx.block_dim = block_dim;
    let body = ctx.entry(def, &consts)?;
    Ok(typed::Kernel {
        name: def.name.clone(),
        symbol: symbol_name(&def.name, &ordered),
        file: def.file.clone(),
        line: def.line,
        config: ordered,
        block_dim,
        body,
        device_fns: ctx.finish(),
    })
}

/// The resolved const generics: (name, type, value), in declaration order.
type ConstValues = Vec<(String, ScalarType, i64)>;

fn const_values(
    decls: &[crate::ir::ConstDecl],
    value: impl Fn(&str) -> Option<i64>,
) -> Result<ConstValues, String> {
    decls
        .iter()
        .map(|c| {
            let v = value(&c.name)
                .ok_or_else(|| format!("the config gives no value for `{}`", c.name))?;
            check_const_range(&c.name, c.ty, v)?;
            Ok((c.name.clone(), c.ty, v))
        })
        .collect()
}

fn check_const_range(name: &str, ty: ScalarType, v: i64) -> Result<(), String> {
    let ok = match ty {
        ScalarType::U32 => (0..=u32::MAX as i64).contains(&v),
        ScalarType::I32 => (i32::MIN as i64..=i32::MAX as i64).contains(&v),
        ScalarType::U64 => v >= 0,
        ScalarType::I64 => true,
        ScalarType::Bool => v == 0 || v == 1,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` = {v} does not fit its type `{ty}`"))
    }
}

/// A C symbol for a specialization: `gemm__BM64_BN64`.
fn symbol_name(name: &str, config: &Config) -> String {
    if config.values.is_empty() {
        name.to_string()
    } else {
        format!("{name}__{}", config.suffix())
    }
}

/// Identity of a device function definition (its name and place in the source).
fn device_identity(def: &DeviceFnDef) -> (String, String, u32) {
    (def.name.clone(), def.file.clone(), def.line)
}

#[cfg(test)]
mod tests;
