//! What kernels `use`: the types and intrinsics of the DSL, as Rust items so that rustc
//! type-checks every kernel body.
