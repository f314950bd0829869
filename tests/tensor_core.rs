//! Tensor-core intrinsics end to end: `#[kernel]` → resolver → interpreter, compared lane by
//! lane with a host model of the fragment layouts written from the PTX ISA, and compiled by
//! NVRTC for sm_80/89/90.

#[path = "tensor_core/bits.rs"]
mod bits;
#[path = "tensor_core/cp_async.rs"]
mod cp_async;
#[path = "tensor_core/device_tiles.rs"]
mod device_tiles;
#[path = "tensor_core/half2.rs"]
mod half2;
#[path = "tensor_core/ldmatrix.rs"]
mod ldmatrix;
#[path = "tensor_core/mma.rs"]
mod mma;
#[path = "tensor_core/mma_ext.rs"]
mod mma_ext;
