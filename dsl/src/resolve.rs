//! Specialization and typing: surface IR + config → typed IR.

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Other(String),
}

use crate::ir::KernelDef;
use crate::space::Config;
use crate::typed;

/// Specializes `def` for `config` and types it.
pub fn specialize(def: &KernelDef, config: &Config) -> Result<typed::Kernel, ResolveError> {
    let _ = (def, config);
    todo!("resolve")
}
