//! Global memory shared by the blocks of a launch, and the atomic read-modify-write rules.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::ir::BinOp;
use crate::typed::AtomicOp;
use crate::types::ScalarType;

use super::program::MathFn;
use super::scalar;

/// The host bytes of one global buffer, shared by all blocks.
#[derive(Clone, Copy, Debug)]
pub(super) struct GlobalBuf {
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: a `GlobalBuf` points into a buffer that `interp::run` borrows (mutably for
// `&mut [T]` parameters, shared for `&[T]`) for the whole launch, so the memory outlives
// every block. Blocks access it concurrently: atomics go through `Atomic*::from_ptr` (or a
// global lock); plain loads and stores from different blocks touch disjoint elements in a
// race-free kernel, exactly the condition under which the kernel is correct on a GPU. Stores
// into read-only (`&[T]`) buffers are refused when the launch is compiled.
unsafe impl Send for GlobalBuf {}
unsafe impl Sync for GlobalBuf {}

/// Serializes atomics on buffers whose base address is not aligned to the element size
/// (`Vec<u8>` gives no alignment guarantee; the system allocator aligns in practice).
static UNALIGNED_ATOMICS: Mutex<()> = Mutex::new(());

impl GlobalBuf {
    pub fn new(bytes: &[u8]) -> GlobalBuf {
        GlobalBuf {
            ptr: bytes.as_ptr() as *mut u8,
            bytes: bytes.len(),
        }
    }

    pub fn new_mut(bytes: &mut [u8]) -> GlobalBuf {
        GlobalBuf {
            ptr: bytes.as_mut_ptr(),
            bytes: bytes.len(),
        }
    }

    /// Reads `size` (1, 2, 4 or 8) little-endian bytes at byte offset `at`.
    #[inline]
    pub fn read(&self, at: usize, size: usize) -> u64 {
        assert!(
            at + size <= self.bytes,
            "global read past the buffer (bounds checked)"
        );
        // SAFETY: in bounds (asserted; callers check indices against the buffer length
        // first), and see the `Send`/`Sync` note about concurrent access.
        unsafe {
            let p = self.ptr.add(at);
            match size {
                1 => *p as u64,
                2 => u16::from_le(p.cast::<u16>().read_unaligned()) as u64,
                4 => u32::from_le(p.cast::<u32>().read_unaligned()) as u64,
                _ => u64::from_le(p.cast::<u64>().read_unaligned()),
            }
        }
    }

    /// Writes the low `size` bytes of `bits`, little-endian, at byte offset `at`.
    #[inline]
    pub fn write(&self, at: usize, size: usize, bits: u64) {
        assert!(
            at + size <= self.bytes,
            "global write past the buffer (bounds checked)"
        );
        // SAFETY: as in `read`; the buffer is writable (checked when compiling).
        unsafe {
            let p = self.ptr.add(at);
            match size {
                1 => *p = bits as u8,
                2 => p.cast::<u16>().write_unaligned((bits as u16).to_le()),
                4 => p.cast::<u32>().write_unaligned((bits as u32).to_le()),
                _ => p.cast::<u64>().write_unaligned(bits.to_le()),
            }
        }
    }

    /// Atomically applies `op` at byte offset `at` to an element of type `ty` (4 or 8
    /// bytes); returns the old value.
    pub fn atomic(&self, at: usize, ty: ScalarType, op: AtomicOp, args: [u64; 2]) -> u64 {
        let size = ty.size_bytes();
        assert!(
            at + size <= self.bytes,
            "global atomic past the buffer (bounds checked)"
        );
        // SAFETY: in bounds; `p` stays valid for the launch (see the `Send` note).
        let p = unsafe { self.ptr.add(at) };
        if (p as usize) & (size - 1) != 0 {
            let _guard = UNALIGNED_ATOMICS.lock().unwrap_or_else(|e| e.into_inner());
            let old = self.read(at, size);
            let (new, _) = rmw(op, ty, old, args);
            self.write(at, size, new);
            return old;
        }
        // Atomics are little-endian like the buffer only on little-endian hosts; the
        // interpreter supports those (as do all CUDA hosts).
        if size == 4 {
            // SAFETY: aligned to 4, in bounds, valid for the launch; every concurrent access
            // to this element by another block is an atomic access or a kernel race.
            let a = unsafe { AtomicU32::from_ptr(p.cast::<u32>()) };
            let mut old = a.load(Ordering::Relaxed);
            loop {
                let (new, store) = rmw(op, ty, old as u64, args);
                if !store {
                    return old as u64;
                }
                match a.compare_exchange_weak(old, new as u32, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => return old as u64,
                    Err(seen) => old = seen,
                }
            }
        }
        // SAFETY: as above, aligned to 8.
        let a = unsafe { AtomicU64::from_ptr(p.cast::<u64>()) };
        let mut old = a.load(Ordering::Relaxed);
        loop {
            let (new, store) = rmw(op, ty, old, args);
            if !store {
                return old;
            }
            match a.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return old,
                Err(seen) => old = seen,
            }
        }
    }
}

/// The new value of an atomic read-modify-write, and whether it must be stored.
/// Add wraps on integers and rounds to nearest even on f32 (PTX `atom.add.f32`); Min/Max
/// compare as the element type; Cas stores `args[1]` when the old value equals `args[0]`.
pub(super) fn rmw(op: AtomicOp, ty: ScalarType, old: u64, args: [u64; 2]) -> (u64, bool) {
    let new = match op {
        AtomicOp::Add => scalar::binary(BinOp::Add, ty, old, args[0]),
        AtomicOp::Min => scalar::math(MathFn::Min, ty, [old, args[0], 0]),
        AtomicOp::Max => scalar::math(MathFn::Max, ty, [old, args[0], 0]),
        AtomicOp::Cas if old == args[0] => args[1],
        AtomicOp::Cas => old,
    };
    (new, new != old)
}
