//! Where a kernel's shared arrays live in a block's shared memory.
//!
//! Static `__shared__` arrays are capped at 48 KiB per block on every arch; more needs
//! dynamic shared memory, which the launch sizes and (above 48 KiB) the function opts into.
//! A kernel whose arrays fit stays static: readable C, and ptxas sees every size. A larger
//! one gets a single `extern __shared__ __align__(16) unsigned char wf_smem[]` at file
//! scope, and each array — of the entry and of every device function, each one per block —
//! becomes a typed pointer at a 16-byte-aligned offset of it (`ldmatrix` rows and 16-byte
//! `cp.async` targets need that alignment).

use crate::typed::{ArrayId, ArraySpace, FnId, Function, Kernel};

/// The static shared memory every arch allows a block without opt-in: 48 KiB.
pub const MAX_STATIC_SHARED_BYTES: u64 = 48 * 1024;

/// The name of the dynamic shared memory the arrays are carved from.
pub(super) const SMEM: &str = "wf_smem";

/// Offset alignment of every carved array.
const ALIGN: u64 = 16;

/// One shared array's place in the block's shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedSlot {
    /// The device function declaring the array; `None` for the entry.
    pub func: Option<FnId>,
    pub array: ArrayId,
    /// Byte offset, a multiple of 16.
    pub offset: u64,
    pub bytes: u64,
}

/// The shared arrays of a kernel laid out back to back at 16-byte-aligned offsets: the
/// entry's first, then each device function's, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedLayout {
    pub slots: Vec<SharedSlot>,
    /// End of the last array: the block's shared memory in bytes.
    pub bytes: u64,
}

impl SharedLayout {
    pub fn of(kernel: &Kernel) -> SharedLayout {
        let entry = std::iter::once((None, &kernel.body));
        let device = (0u32..).map(|i| Some(FnId(i))).zip(&kernel.device_fns);
        let mut layout = SharedLayout::default();
        for (func, f) in entry.chain(device) {
            for (array, bytes) in shared_arrays(f) {
                let offset = layout.bytes.next_multiple_of(ALIGN);
                layout.slots.push(SharedSlot {
                    func,
                    array,
                    offset,
                    bytes,
                });
                layout.bytes = offset + bytes;
            }
        }
        layout
    }

    /// Whether the arrays are carved from dynamic shared memory (more than 48 KiB).
    pub fn is_dynamic(&self) -> bool {
        self.bytes > MAX_STATIC_SHARED_BYTES
    }

    /// The offset of `array` of `func` (`None`: the entry).
    pub fn offset(&self, func: Option<FnId>, array: ArrayId) -> Option<u64> {
        self.slots
            .iter()
            .find(|s| s.func == func && s.array == array)
            .map(|s| s.offset)
    }
}

/// The shared arrays of one function with their sizes in bytes.
fn shared_arrays(f: &Function) -> impl Iterator<Item = (ArrayId, u64)> + '_ {
    f.arrays
        .iter()
        .enumerate()
        .filter(|(_, a)| a.space == ArraySpace::Shared)
        .map(|(i, a)| {
            let bytes = a.len as u64 * a.elem.size_bytes() as u64;
            (ArrayId(i as u32), bytes)
        })
}

/// The shared memory a block of `kernel` uses, in bytes, as laid out by the generator
/// (static or dynamic; alignment padding between arrays included).
pub fn shared_bytes(kernel: &Kernel) -> u64 {
    SharedLayout::of(kernel).bytes
}

/// The dynamic shared memory to launch `kernel` with: its shared bytes when they exceed
/// 48 KiB (the generated C then carves its arrays from `extern __shared__` memory), else 0.
/// Saturates at `u32::MAX`; the launch checks refuse anything near it.
pub fn dynamic_shared_bytes(kernel: &Kernel) -> u32 {
    let layout = SharedLayout::of(kernel);
    if layout.is_dynamic() {
        u32::try_from(layout.bytes).unwrap_or(u32::MAX)
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
