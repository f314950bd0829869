//! Host buffers and launches for the interpreter's tests (their IR is built with
//! [`crate::test_ir`]).

use crate::backend::{Arg, Element, LaunchDims, RawBuffer, Storage};
use crate::interp::{run, InterpError, InterpOptions};
use crate::typed::Kernel;

pub fn buffer<T: Element>(data: &[T]) -> RawBuffer {
    let size = T::SCALAR.size_bytes();
    let mut bytes = Vec::with_capacity(data.len() * size);
    for v in data {
        bytes.extend_from_slice(&v.to_bits().to_le_bytes()[..size]);
    }
    RawBuffer {
        elem: T::TYPE,
        len: data.len(),
        storage: Storage::Host(bytes),
    }
}

pub fn read<T: Element>(b: &RawBuffer) -> Vec<T> {
    let size = T::SCALAR.size_bytes();
    let bytes = b.host_bytes().expect("host buffer");
    bytes
        .chunks_exact(size)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..size].copy_from_slice(c);
            T::from_bits(u64::from_le_bytes(w))
        })
        .collect()
}

pub fn launch(k: &Kernel, dims: LaunchDims, args: &mut [Arg]) -> Result<(), InterpError> {
    run(k, &dims, args, &InterpOptions::default()).map(|_| ())
}
