//! What kernels `use`: the types and intrinsics of the DSL, as Rust items so that rustc
//! type-checks every kernel body.
//!
//! `#[kernel]` keeps a copy of each kernel that rustc checks against the items of this
//! module (slice parameters become [`Slice`]), and builds the IR from the same syntax. The
//! bodies here are never run on a GPU: the thread-geometry and warp intrinsics panic if
//! called on the host; the memory types and [`rsqrt`] have their plain CPU meaning.
//!
//! # The DSL surface
//!
//! ```text
//! use warpforge::prelude::*;
//!
//! #[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512]))]
//! pub fn scale<const BLOCK: u32>(x: &[f32], y: &mut [f32], alpha: f32, n: u32) {
//!     let i = block_idx_x() * BLOCK + thread_idx_x();
//!     if i < n {
//!         y[i] = alpha * x[i];
//!     }
//! }
//! ```
//!
//! **Signatures.** `#[kernel] [pub] fn name<const A: u32, ...>(params)` with no return type.
//! Const generics (`u32`, `i32`, `u64`, `i64`, `bool`) are the tunables and compile-time
//! constants of the kernel. Parameters are buffers `&[T]` / `&mut [T]` (global memory) or
//! scalars by value. `#[device] fn` takes the same, may return a scalar or vector, and may
//! take `&[T]`/`&mut [T]` that the caller fills with a buffer, a shared array or a local
//! array. Kernel attribute: `block = (X[, Y[, Z]])` (block shape over the consts),
//! `tune(A = [v, ...], ...)`, `default(A = v)`, `constraint = <bool expr over the consts>`
//! (repeatable).
//!
//! **Types.** `bool`, `i32`, `u32`, `i64`, `u64`, `f32`, [`struct@f16`], [`struct@bf16`], [`F8E4M3`],
//! [`F8E5M2`] (also spelled `f8e4m3`, `f8e5m2`), and [`Vec2<T>`], [`Vec4<T>`] for vectorized
//! loads and stores. There is no `usize`: kernels index with `u32` (one index type keeps rustc's inference of `x[i].exp()` unambiguous).
//!
//! **Statements and expressions.** `let [mut] x[: T] = e;`, `=` and `op=`, `if`/`else if`/
//! `else` (also as a value), `for i in a..b`, `a..=b`, `(a..b).step_by(s)` with optional
//! `#[unroll]` / `#[unroll(N)]`, `while`, `loop`, `break`, `continue`, `return`, arithmetic,
//! bit, comparison and logical operators, `as` casts between scalar types, indexing,
//! `.x .y .z .w` on vectors, `f32::INFINITY`-style associated constants. Not supported:
//! closures, `match`, `if let`, tuples, structs, strings, macros, references except to pass
//! an array to a call (`f(&mut tile)`), `for` over anything but a range, `unsafe`.
//!
//! **Intrinsics (free functions).**
//! - thread geometry, all `-> u32`: [`thread_idx_x`]/`_y`/`_z`, [`block_idx_x`]/`_y`/`_z`,
//!   [`block_dim_x`]/`_y`/`_z`, [`grid_dim_x`]/`_y`/`_z`, [`lane_id`], [`warp_size`];
//! - [`sync_threads`]: block-wide barrier;
//! - warp collectives over the full warp: [`warp_shfl_xor`], [`warp_shfl_down`],
//!   [`warp_shfl_up`], [`warp_shfl_idx`], [`warp_any`], [`warp_all`], [`warp_ballot`];
//! - memory: [`shared_array::<T>(len)`](shared_array) (block-shared),
//!   [`shared_array2d::<T>(rows, cols)`](shared_array2d) (block-shared, `tile[r][c]`, the
//!   flat element `r * cols + c`),
//!   [`local_array::<T>(len)`](local_array) (per thread, zeroed); `len` is a constant
//!   expression over the const generics;
//! - atomics on a buffer or shared array, returning the old value: [`atomic_add`],
//!   [`atomic_min`], [`atomic_max`], [`atomic_cas`];
//! - math: [`rsqrt`] (and the methods `exp`, `exp2`, `ln`, `tanh`, `sqrt`): the interpreter
//!   computes them (nearly) correctly rounded, the GPU's `rsqrtf`/`expf`/`exp2f`/`tanhf` are
//!   within 2 ulp, `logf` 1 ulp, [`ex2_approx`] 2^-22 relative; the table with sources is in
//!   docs/architecture.md ("The interpreter");
//! - tensor cores (warp-level, every lane of the warp together; sm_80+):
//!   [`mma_m16n8k16_f16_f32`], [`mma_m16n8k16_bf16_f32`], [`mma_m16n8k16_f16_f16`] (f16
//!   accumulators), [`mma_m16n8k32_e4m3_f32`], [`mma_m16n8k32_e5m2_f32`] (FP8, sm_89),
//!   packed pair arithmetic [`add_f16x2`], [`fma_f16x2`], [`min_bf16x2`] and the rest of
//!   `{add,sub,mul,fma,max,min}_{f16x2,bf16x2}`, with the fragment packing helpers
//!   [`pack_f16x2`], [`pack_bf16x2`], [`unpack_f16x2`], [`unpack_bf16x2`]; loads of 8×8
//!   matrices from shared memory: [`ldmatrix_x1`], [`ldmatrix_x2`], [`ldmatrix_x4`] and their
//!   `_trans` forms; asynchronous global → shared copies: [`cp_async_4`], [`cp_async_8`],
//!   [`cp_async_16`] and their zero-filling `_zfill` forms (predicated loads),
//!   [`cp_async_16_zfill_evict_first`] (with an L2 evict-first cache policy),
//!   [`cp_async_commit`], [`cp_async_wait`];
//! - PTX bit and math instructions: [`lop3`], [`prmt`], [`ex2_approx`].
//!
//! **Associated functions.** `f16::from_f32(x)`, `bf16::from_f32(x)`, `F8E4M3::from_f32(x)`,
//! `F8E5M2::from_f32(x)`, `f32::from_f32(x)` (the identity), `f32::from_bits(u)`,
//! `Vec2::new(x, y)`, `Vec4::new(x, y, z, w)`; `T::max_finite()` for every float format (an
//! `f32` literal: 448 for E4M3, 57344 for E5M2, 65504 for f16, `f32::MAX`, ...).
//!
//! **Element-type parameters.** `#[kernel(types(T = [f32, f16, bf16], Q = [F8E4M3,
//! F8E5M2]))] fn k<T: Float, Q: Fp8, const B: u32>(..)` (and `#[device(types(..))]`) is
//! expanded by the macro into one kernel per combination, `k_f32_e4m3`, `k_f16_e5m2`, ...;
//! `f::<T>(x)` calls the instance `f_f16` of a type-expanded device fn. The bounds
//! [`Float`], [`Fp8`] (and their common [`FloatFormat`]) document the generic source; the
//! conversions above and `.to_f32()` work uniformly on every float format, `f32` included.
//!
//! **Methods.** On `f32`: `abs`, `sqrt`, `exp`, `exp2`, `ln`, `tanh`, `floor`,
//! `mul_add(a, b)` (`self * a + b`, fused), `min`, `max`, `to_bits`. On integers: `min`, `max`,
//! `wrapping_add`, `wrapping_sub`, `wrapping_mul`. On every float format (`f32` too, as the
//! identity): `to_f32`. On a slice or array: `len()` (`u32`). Half and FP8 math goes through `f32`.
//!
//! **Where they go.** `#[kernel]` and `#[device]` fns are module-level items (the generated
//! `mod name` reaches its builder through `super::`). A kernel or device fn may call only
//! intrinsics and `#[device]` fns: a call of a plain Rust fn `f` fails to compile with
//! "cannot find module or crate `f`", because the call is lowered to `f::def`.
//!
//! **Passing arrays to device functions.** A device function parameter `&[T]` / `&mut [T]`
//! accepts a kernel buffer parameter as is (`f(a)`) and a shared or local array by
//! reference (`f(&tile)`, `f(&mut tile)`); the reference form is only allowed as a call
//! argument. Atomics take the same forms: `atomic_add(c, i, v)`, `atomic_add(&mut tile, i, v)`.
//! A device function is specialized per memory space of its slice arguments, so a parameter
//! bound to a shared array can be the tile of `ldmatrix_*` / the destination of `cp_async_*`
//! (`fn load_stage(tile: &mut [f16], ..) { cp_async_16(tile, ..) }` called as
//! `load_stage(&mut tile, ..)`), and one bound to a global buffer their source; bound to
//! the wrong space (a global buffer or local array as the tile) is a resolve error naming
//! the parameter. Such a parameter can be passed on to further device functions.

mod element;
mod tensor_core;
mod tile2d;

pub use crate::{Arg, Buffer, Config, Device, LaunchDims};
pub use element::{Float, FloatFormat, Fp8};
pub use float8::{F8E4M3, F8E5M2};
pub use half::{bf16, f16};
pub use tensor_core::*;
pub use tile2d::{shared_array2d, SharedArray2d};

use std::ops::{Add, Deref, DerefMut, Index, IndexMut};

/// Lowercase spelling of [`F8E4M3`].
#[allow(non_camel_case_types)]
pub type f8e4m3 = F8E4M3;
/// Lowercase spelling of [`F8E5M2`].
#[allow(non_camel_case_types)]
pub type f8e5m2 = F8E5M2;

/// What a kernel sees of a `&[T]` / `&mut [T]` parameter: elements indexed by `u32`.
#[repr(transparent)]
pub struct Slice<T> {
    data: [T],
}

impl<T> Slice<T> {
    pub fn from_slice(data: &[T]) -> &Slice<T> {
        // SAFETY: `Slice<T>` is `repr(transparent)` over `[T]`, so the layouts and the
        // pointer metadata agree.
        unsafe { &*(data as *const [T] as *const Slice<T>) }
    }

    pub fn from_slice_mut(data: &mut [T]) -> &mut Slice<T> {
        // SAFETY: as in `from_slice`; the borrow is carried over unchanged.
        unsafe { &mut *(data as *mut [T] as *mut Slice<T>) }
    }

    /// Number of elements. Buffers longer than `u32::MAX` elements are not addressable from
    /// kernels.
    pub fn len(&self) -> u32 {
        self.data.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    pub fn as_slice_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
}

impl<T> Index<u32> for Slice<T> {
    type Output = T;
    fn index(&self, i: u32) -> &T {
        &self.data[i as usize]
    }
}

impl<T> IndexMut<u32> for Slice<T> {
    fn index_mut(&mut self, i: u32) -> &mut T {
        &mut self.data[i as usize]
    }
}

/// A type that can be stored in shared or local arrays: it has a zero value.
pub trait KernelValue: Copy {
    fn zero() -> Self;
}

macro_rules! kernel_value {
    ($($t:ty = $zero:expr),* $(,)?) => {
        $(impl KernelValue for $t {
            fn zero() -> Self {
                $zero
            }
        })*
    };
}

kernel_value!(
    bool = false,
    i32 = 0,
    u32 = 0,
    i64 = 0,
    u64 = 0,
    f32 = 0.0,
    f16 = f16::ZERO,
    bf16 = bf16::ZERO,
    F8E4M3 = F8E4M3::from_bits(0),
    F8E5M2 = F8E5M2::from_bits(0),
);

impl<T: KernelValue> KernelValue for Vec2<T> {
    fn zero() -> Self {
        Vec2::new(T::zero(), T::zero())
    }
}

impl<T: KernelValue> KernelValue for Vec4<T> {
    fn zero() -> Self {
        Vec4::new(T::zero(), T::zero(), T::zero(), T::zero())
    }
}

macro_rules! array_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T> {
            data: Vec<T>,
        }

        impl<T> Deref for $name<T> {
            type Target = Slice<T>;
            fn deref(&self) -> &Slice<T> {
                Slice::from_slice(&self.data)
            }
        }

        impl<T> DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut Slice<T> {
                Slice::from_slice_mut(&mut self.data)
            }
        }
    };
}

array_type!(
    /// Block-shared memory, from [`shared_array`]. Indexes like a slice; pass it to a device
    /// function as `&tile` / `&mut tile`.
    SharedArray
);
array_type!(
    /// Per-thread memory (registers or local memory), from [`local_array`]. Indexes like a
    /// slice; pass it to a device function as `&acc` / `&mut acc`.
    LocalArray
);

/// Allocates `len` elements of block-shared memory (one array per block, shared by its
/// threads; not initialized on the GPU). `len` must be a constant over the const generics.
pub fn shared_array<T: KernelValue>(len: u32) -> SharedArray<T> {
    SharedArray {
        data: vec![T::zero(); len as usize],
    }
}

/// Allocates `len` zeroed elements private to the calling thread. `len` must be a constant
/// over the const generics.
pub fn local_array<T: KernelValue>(len: u32) -> LocalArray<T> {
    LocalArray {
        data: vec![T::zero(); len as usize],
    }
}

/// Two lanes, aligned to their total size (one 64-bit access for `Vec2<f32>`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Vec2<T> {
    pub x: T,
    pub y: T,
}

impl<T> Vec2<T> {
    pub fn new(x: T, y: T) -> Vec2<T> {
        Vec2 { x, y }
    }
}

/// Four lanes, aligned to their total size (one 128-bit access for `Vec4<f32>`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Vec4<T> {
    pub x: T,
    pub y: T,
    pub z: T,
    pub w: T,
}

impl<T> Vec4<T> {
    pub fn new(x: T, y: T, z: T, w: T) -> Vec4<T> {
        Vec4 { x, y, z, w }
    }
}

macro_rules! kernel_only {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name($($arg: $ty),*) -> $ret {
                let _ = ($($arg,)*);
                unreachable!(concat!(stringify!($name), "() is only meaningful inside a kernel"))
            }
        )*
    };
}

kernel_only! {
    /// `threadIdx.x`: index of the thread in its block.
    fn thread_idx_x() -> u32;
    /// `threadIdx.y`.
    fn thread_idx_y() -> u32;
    /// `threadIdx.z`.
    fn thread_idx_z() -> u32;
    /// `blockIdx.x`: index of the block in the grid.
    fn block_idx_x() -> u32;
    /// `blockIdx.y`.
    fn block_idx_y() -> u32;
    /// `blockIdx.z`.
    fn block_idx_z() -> u32;
    /// `blockDim.x`: threads per block along x (a constant when the kernel declares `block`).
    fn block_dim_x() -> u32;
    /// `blockDim.y`.
    fn block_dim_y() -> u32;
    /// `blockDim.z`.
    fn block_dim_z() -> u32;
    /// `gridDim.x`: blocks in the grid along x.
    fn grid_dim_x() -> u32;
    /// `gridDim.y`.
    fn grid_dim_y() -> u32;
    /// `gridDim.z`.
    fn grid_dim_z() -> u32;
    /// Index of the thread in its warp (`0..warp_size()`).
    fn lane_id() -> u32;
    /// Threads per warp (32).
    fn warp_size() -> u32;
    /// True when `pred` holds on any lane of the warp (`__any_sync(FULL, pred)`).
    fn warp_any(pred: bool) -> bool;
    /// True when `pred` holds on every lane of the warp (`__all_sync(FULL, pred)`).
    fn warp_all(pred: bool) -> bool;
    /// Bit `k` set when `pred` holds on lane `k` (`__ballot_sync(FULL, pred)`).
    fn warp_ballot(pred: bool) -> u32;
}

/// Block-wide barrier (`__syncthreads()`): every thread of the block must reach it.
pub fn sync_threads() {
    unreachable!("sync_threads() is only meaningful inside a kernel")
}

macro_rules! shuffle {
    ($($(#[$doc:meta])* fn $name:ident(v, $arg:ident);)*) => {
        $(
            $(#[$doc])*
            pub fn $name<T: Copy>(v: T, $arg: u32) -> T {
                let _ = (v, $arg);
                unreachable!(concat!(stringify!($name), "() is only meaningful inside a kernel"))
            }
        )*
    };
}

shuffle! {
    /// `v` from lane `lane_id() ^ mask` (`__shfl_xor_sync(FULL, v, mask)`): butterfly
    /// reductions.
    fn warp_shfl_xor(v, mask);
    /// `v` from lane `lane_id() + delta`; lanes past the end keep their own value
    /// (`__shfl_down_sync(FULL, v, delta)`).
    fn warp_shfl_down(v, delta);
    /// `v` from lane `lane_id() - delta`; lanes before the start keep their own value
    /// (`__shfl_up_sync(FULL, v, delta)`).
    fn warp_shfl_up(v, delta);
    /// `v` from lane `src_lane` (`__shfl_sync(FULL, v, src_lane)`): broadcast.
    fn warp_shfl_idx(v, src_lane);
}

/// Memory an atomic can target: a buffer (`&mut [T]` parameter) or a shared array.
pub trait AtomicTarget<T> {
    /// The element the atomic updates.
    fn slot(&mut self, index: u32) -> &mut T;
}

impl<T> AtomicTarget<T> for Slice<T> {
    fn slot(&mut self, index: u32) -> &mut T {
        &mut self[index]
    }
}

impl<T> AtomicTarget<T> for SharedArray<T> {
    fn slot(&mut self, index: u32) -> &mut T {
        &mut self[index]
    }
}

/// Element types with an atomic add: `f32`, `i32`, `u32`.
pub trait AtomicAdd: Copy + Add<Output = Self> {}
impl AtomicAdd for i32 {}
impl AtomicAdd for u32 {}
impl AtomicAdd for f32 {}

/// Element types with atomic min and max: `i32`, `u32`.
pub trait AtomicInt: Copy + Ord {}
impl AtomicInt for i32 {}
impl AtomicInt for u32 {}

/// Element types with atomic compare-and-swap: `i32`, `u32`, `u64`.
pub trait AtomicCas: Copy + Eq {}
impl AtomicCas for i32 {}
impl AtomicCas for u32 {}
impl AtomicCas for u64 {}

/// `buf[index] += value` atomically; returns the old value.
pub fn atomic_add<T: AtomicAdd, B: AtomicTarget<T> + ?Sized>(
    buf: &mut B,
    index: u32,
    value: T,
) -> T {
    let slot = buf.slot(index);
    let old = *slot;
    *slot = old + value;
    old
}

/// `buf[index] = min(buf[index], value)` atomically; returns the old value.
pub fn atomic_min<T: AtomicInt, B: AtomicTarget<T> + ?Sized>(
    buf: &mut B,
    index: u32,
    value: T,
) -> T {
    let slot = buf.slot(index);
    let old = *slot;
    *slot = old.min(value);
    old
}

/// `buf[index] = max(buf[index], value)` atomically; returns the old value.
pub fn atomic_max<T: AtomicInt, B: AtomicTarget<T> + ?Sized>(
    buf: &mut B,
    index: u32,
    value: T,
) -> T {
    let slot = buf.slot(index);
    let old = *slot;
    *slot = old.max(value);
    old
}

/// `if buf[index] == compare { buf[index] = value }` atomically; returns the old value.
pub fn atomic_cas<T: AtomicCas, B: AtomicTarget<T> + ?Sized>(
    buf: &mut B,
    index: u32,
    compare: T,
    value: T,
) -> T {
    let slot = buf.slot(index);
    let old = *slot;
    if old == compare {
        *slot = value;
    }
    old
}

/// `1 / sqrt(x)` (the GPU's fast reciprocal square root).
pub fn rsqrt(x: f32) -> f32 {
    x.sqrt().recip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_and_arrays_index_by_u32() {
        let data = [1.0f32, 2.0, 3.0];
        let s = Slice::from_slice(&data);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2u32], 3.0);
        assert_eq!(s[1], 2.0);
        let mut tile = shared_array::<u32>(4);
        tile[3u32] = 7;
        assert_eq!(tile.len(), 4);
        assert_eq!(tile[3u32], 7);
        assert_eq!(local_array::<f16>(2)[1u32], f16::ZERO);
    }

    #[test]
    fn atomics_return_the_old_value() {
        let mut data = [5u32, 9];
        let s = Slice::from_slice_mut(&mut data);
        assert_eq!(atomic_add(s, 0, 2), 5);
        assert_eq!(atomic_min(s, 1, 3), 9);
        assert_eq!(atomic_max(s, 1, 4), 3);
        assert_eq!(atomic_cas(s, 0, 7, 1), 7);
        assert_eq!(atomic_cas(s, 0, 7, 2), 1);
        assert_eq!(data, [1, 4]);
        let mut tile = shared_array::<f32>(1);
        assert_eq!(atomic_add(&mut tile, 0, 1.5), 0.0);
        assert_eq!(tile[0u32], 1.5);
    }

    #[test]
    fn vectors_and_rsqrt() {
        let v = Vec4::new(1u32, 2, 3, 4);
        assert_eq!(v.x + v.y + v.z + v.w, 10);
        assert_eq!(Vec2::<f32>::zero(), Vec2::new(0.0, 0.0));
        assert_eq!(rsqrt(4.0), 0.5);
    }
}
