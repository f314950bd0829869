//! One launch API over three backends: `cuda` (NVRTC + cudarc), `cpu` (the interpreter) and
//! `host` (the generated CUDA C on the CPU through the host harness, [`crate::host`]).
//!
//! Buffers, launch dimensions and arguments are the same types for both, so a test can run
//! one kernel on both and compare.

#[cfg(feature = "cuda")]
pub mod cuda;
/// Without the `cuda` feature: the same names, and `Device::cuda` says how to enable it.
#[cfg(not(feature = "cuda"))]
#[path = "cuda_off.rs"]
pub mod cuda;
mod device;
mod element;
mod view;

pub use device::{Backend, Device, DeviceError, DeviceLimits};
pub use element::Element;
pub use view::{BufferView, BufferViewMut, View, VIEW_ALIGN};

use crate::types::{ScalarType, Type};
use std::marker::PhantomData;

/// Grid and block shape of a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

impl LaunchDims {
    /// A 1-D launch.
    pub fn linear(grid: u32, block: u32) -> LaunchDims {
        LaunchDims {
            grid: [grid, 1, 1],
            block: [block, 1, 1],
        }
    }

    /// A 2-D launch.
    pub fn grid_2d(grid: (u32, u32), block: (u32, u32)) -> LaunchDims {
        LaunchDims {
            grid: [grid.0, grid.1, 1],
            block: [block.0, block.1, 1],
        }
    }

    /// Enough 1-D blocks of `block` threads to cover `n` elements.
    pub fn cover(n: u32, block: u32) -> LaunchDims {
        LaunchDims::linear(n.div_ceil(block).max(1), block)
    }

    pub fn threads_per_block(&self) -> u32 {
        self.block.iter().product()
    }

    pub fn blocks(&self) -> u64 {
        self.grid.iter().map(|&g| g as u64).product()
    }
}

/// A scalar argument value: its type and its bits (see `typed::ExprKind::Lit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub ty: ScalarType,
    pub bits: u64,
}

impl Value {
    pub fn of<T: Element>(v: T) -> Value {
        Value {
            ty: T::SCALAR,
            bits: v.to_bits(),
        }
    }
}

/// Where a buffer's bytes live.
#[derive(Debug)]
pub enum Storage {
    /// Host memory (the cpu and host backends), little-endian elements.
    Host(Vec<u8>),
    /// Device memory (the cuda backend).
    Cuda(cuda::DeviceMemory),
    /// Memory a [`BufferView`] / [`BufferViewMut`] borrows (host or device).
    View(View),
}

/// An untyped buffer: `len` elements of `elem`.
#[derive(Debug)]
pub struct RawBuffer {
    pub elem: Type,
    pub len: usize,
    pub storage: Storage,
}

impl RawBuffer {
    /// The buffer's length in elements of `elem`, when it can be passed for a `&[elem]`
    /// parameter: the same element type, or the scalar lanes of a vector element type (a
    /// `Buffer<f32>` of 4·n floats is a `&[Vec4<f32>]` of n vectors; the launchers of
    /// vector-slice kernels take the scalar buffer), or a *bit view*: a `&[Vec2<u32>]` /
    /// `&[Vec4<u32>]` over a buffer of any scalar of at most 4 bytes whose bytes are a whole
    /// number of vectors (a `Buffer<f16>` of 8·n halves is n 128-bit words, as CUDA code
    /// `reinterpret_cast`s to `uint4` for 16-byte loads of 16-bit data).
    pub fn len_as(&self, elem: Type) -> Option<usize> {
        if self.elem == elem {
            return Some(self.len);
        }
        let lanes = elem.lanes() as usize;
        if lanes > 1 && self.elem == Type::Scalar(elem.elem()) {
            return self.len.is_multiple_of(lanes).then(|| self.len / lanes);
        }
        let bit_view = lanes > 1
            && elem.elem() == ScalarType::U32
            && matches!(self.elem, Type::Scalar(s) if s.size_bytes() <= 4);
        let bytes = self.len * self.elem.size_bytes();
        (bit_view && bytes.is_multiple_of(elem.size_bytes())).then(|| bytes / elem.size_bytes())
    }

    /// Host bytes, when the buffer is on the host.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Host(b) => Some(b),
            Storage::Cuda(_) => None,
            Storage::View(v) => v.host_bytes(),
        }
    }

    /// Host bytes to write, when the buffer is on the host and writable (a read-only view
    /// is not).
    pub fn host_bytes_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.storage {
            Storage::Host(b) => Some(b),
            Storage::Cuda(_) => None,
            Storage::View(v) => v.host_bytes_mut(),
        }
    }
}

/// A typed buffer on a device.
#[derive(Debug)]
pub struct Buffer<T: Element> {
    pub raw: RawBuffer,
    _elem: PhantomData<T>,
}

impl<T: Element> Buffer<T> {
    pub(crate) fn from_raw(raw: RawBuffer) -> Buffer<T> {
        debug_assert_eq!(raw.elem, T::TYPE);
        Buffer {
            raw,
            _elem: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.raw.len
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }
}

/// One launch argument.
#[derive(Debug)]
pub enum Arg<'a> {
    /// A `&[T]` parameter.
    Slice(&'a RawBuffer),
    /// A `&mut [T]` parameter.
    SliceMut(&'a mut RawBuffer),
    /// A value parameter.
    Value(Value),
}

impl<'a> Arg<'a> {
    pub fn slice<T: Element>(b: &'a Buffer<T>) -> Arg<'a> {
        Arg::Slice(&b.raw)
    }

    pub fn slice_mut<T: Element>(b: &'a mut Buffer<T>) -> Arg<'a> {
        Arg::SliceMut(&mut b.raw)
    }

    pub fn value<T: Element>(v: T) -> Arg<'a> {
        Arg::Value(Value::of(v))
    }

    /// A short description for error messages: `&[f32; 1024]`, `u32`.
    pub fn describe(&self) -> String {
        match self {
            Arg::Slice(b) => format!("&[{}] of length {}", b.elem, b.len),
            Arg::SliceMut(b) => format!("&mut [{}] of length {}", b.elem, b.len),
            Arg::Value(v) => format!("{} value", v.ty),
        }
    }
}

#[cfg(test)]
mod bit_view_tests {
    use super::*;

    fn raw(elem: ScalarType, len: usize) -> RawBuffer {
        RawBuffer {
            elem: Type::Scalar(elem),
            len,
            storage: Storage::Host(vec![0; len * elem.size_bytes()]),
        }
    }

    #[test]
    fn narrow_scalars_are_seen_as_u32_vectors_by_their_bytes() {
        let v4 = Type::Vector(ScalarType::U32, 4);
        let v2 = Type::Vector(ScalarType::U32, 2);
        assert_eq!(raw(ScalarType::F16, 16).len_as(v4), Some(2));
        assert_eq!(raw(ScalarType::BF16, 12).len_as(v2), Some(3));
        assert_eq!(raw(ScalarType::F32, 8).len_as(v4), Some(2));
        assert_eq!(raw(ScalarType::U32, 8).len_as(v4), Some(2));
        // Not a whole number of vectors, wider scalars, and non-u32 views are refused.
        assert_eq!(raw(ScalarType::F16, 12).len_as(v4), None);
        assert_eq!(raw(ScalarType::U64, 4).len_as(v4), None);
        assert_eq!(
            raw(ScalarType::F16, 16).len_as(Type::Vector(ScalarType::F32, 4)),
            None
        );
        assert_eq!(raw(ScalarType::F16, 16).len_as(Type::U32), None);
    }
}
