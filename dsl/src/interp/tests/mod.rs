//! Tests of the interpreter on hand-built typed IR.

mod control;
mod kernels;
mod ops;
