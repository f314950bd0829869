//! Views: a [`Buffer`] over memory someone else owns — a range of a warpforge buffer, a
//! caller's cudarc `CudaSlice` / `CudaView` / `CudaViewMut`, or a raw device pointer — so
//! every launcher that takes `&Buffer<T>` / `&mut Buffer<T>` runs on it without a copy.
//!
//! A view's storage is [`Storage::View`]: a pointer and a byte count, plus a token naming
//! the view. The borrow is carried by the wrapper, not by `Buffer` (which has no lifetime,
//! so no launcher changes):
//! - [`BufferView<'a, T>`] derefs to `&Buffer<T>`. A shared reference cannot move the
//!   storage out, so the borrow `'a` bounds every use.
//! - [`BufferViewMut<'a, T>`] hands out `&mut Buffer<T>` only inside
//!   [`with`](BufferViewMut::with): a `&mut` could swap the view's storage into a buffer
//!   that outlives `'a`, so `with` checks afterwards (on unwind too) that the storage it
//!   lent is still in place and aborts the process if not — a use-after-free is never
//!   reachable from safe code, and a scope-bound check cannot be skipped by `mem::forget`.
//!
//! Every view starts on a 16-byte boundary (of its allocation for warpforge buffers, of
//! the address for caller memory): library kernels load 16-byte words (`cp.async`,
//! `Vec4<u32>` bit views), and a misaligned load on a GPU is a sticky fault that ends the
//! process's CUDA context, so it is refused when the view is made, on every backend alike.

use super::{Buffer, DeviceError, Element, RawBuffer, Storage};
use std::marker::PhantomData;
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};

/// The alignment every view's start keeps (bytes).
pub const VIEW_ALIGN: usize = 16;

/// Borrowed memory behind a [`Buffer`] (see the module docs). Its fields are private: the
/// only way to make one is a view constructor, whose borrow bounds it.
#[derive(Debug)]
pub struct View {
    pub(crate) memory: ViewMemory,
    pub(crate) bytes: usize,
    pub(crate) writable: bool,
    token: u64,
}

/// Where a view's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewMemory {
    /// Host memory (the cpu and host backends).
    Host(*mut u8),
    /// Device memory: a `CUdeviceptr` in the context of GPU `ordinal` (made only by the
    /// cuda backend).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Cuda { ptr: u64, ordinal: usize },
}

// SAFETY: a `View` is made only from a borrow (`&[u8]`, `&mut [u8]`, or cudarc memory,
// all `Send + Sync`) that its wrapper holds for the view's whole life; writes go through
// `&mut Buffer` only (`host_bytes_mut` refuses read-only views), so sharing it across
// threads is as safe as sharing the borrow it came from.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    /// Whether the view is of host memory (else device memory).
    pub fn is_host(&self) -> bool {
        matches!(self.memory, ViewMemory::Host(_))
    }

    /// The view's size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn host_bytes(&self) -> Option<&[u8]> {
        match self.memory {
            // SAFETY: `ptr` and `bytes` come from a live borrow (module docs).
            ViewMemory::Host(ptr) => Some(unsafe { std::slice::from_raw_parts(ptr, self.bytes) }),
            ViewMemory::Cuda { .. } => None,
        }
    }

    pub(crate) fn host_bytes_mut(&mut self) -> Option<&mut [u8]> {
        match self.memory {
            // SAFETY: a writable view comes from a `&mut` borrow held by its wrapper, and
            // `&mut self` makes this the only access for the slice's life.
            ViewMemory::Host(ptr) if self.writable => {
                Some(unsafe { std::slice::from_raw_parts_mut(ptr, self.bytes) })
            }
            _ => None,
        }
    }

    /// This view's memory shifted by `offset` bytes, `bytes` long (checked by the caller).
    fn narrowed(&self, offset: usize, bytes: usize, writable: bool) -> View {
        let memory = match self.memory {
            // SAFETY: the caller checked `offset + bytes <= self.bytes`.
            ViewMemory::Host(ptr) => ViewMemory::Host(unsafe { ptr.add(offset) }),
            ViewMemory::Cuda { ptr, ordinal } => ViewMemory::Cuda {
                ptr: ptr + offset as u64,
                ordinal,
            },
        };
        View::new(memory, bytes, writable)
    }

    pub(crate) fn new(memory: ViewMemory, bytes: usize, writable: bool) -> View {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        View {
            memory,
            bytes,
            writable,
            token: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Keeps something alive (cudarc's event guard) for as long as a view.
trait Keep {}
impl<T> Keep for T {}

/// A read-only view: derefs to a `&Buffer<T>` that every launcher accepts.
///
/// The view borrows what it views, so it cannot outlive it:
/// ```compile_fail
/// # use warpforge_dsl::backend::Device;
/// let cpu = Device::cpu();
/// let view = {
///     let buf = cpu.zeros::<f32>(8).unwrap();
///     buf.view(4..).unwrap()
/// }; // error: `buf` does not live long enough
/// # drop(view);
/// ```
pub struct BufferView<'a, T: Element> {
    buf: Buffer<T>,
    _keep: Option<Box<dyn Keep + 'a>>,
    _borrow: PhantomData<&'a [T]>,
}

/// A writable view: lends a `&mut Buffer<T>` through [`with`](BufferViewMut::with), and
/// derefs to `&Buffer<T>` for reading.
pub struct BufferViewMut<'a, T: Element> {
    buf: Buffer<T>,
    token: u64,
    _keep: Option<Box<dyn Keep + 'a>>,
    _borrow: PhantomData<&'a mut [T]>,
}

impl<T: Element> Deref for BufferView<'_, T> {
    type Target = Buffer<T>;
    fn deref(&self) -> &Buffer<T> {
        &self.buf
    }
}

impl<T: Element> Deref for BufferViewMut<'_, T> {
    type Target = Buffer<T>;
    fn deref(&self) -> &Buffer<T> {
        &self.buf
    }
}

impl<T: Element> std::fmt::Debug for BufferView<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BufferView").field(&self.buf.raw).finish()
    }
}

impl<T: Element> std::fmt::Debug for BufferViewMut<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BufferViewMut").field(&self.buf.raw).finish()
    }
}

impl<'a, T: Element> BufferView<'a, T> {
    fn wrap(view: View, keep: Option<Box<dyn Keep + 'a>>) -> BufferView<'a, T> {
        BufferView {
            buf: view_buffer(view),
            _keep: keep,
            _borrow: PhantomData,
        }
    }
}

impl<'a, T: Element> BufferViewMut<'a, T> {
    fn wrap(view: View, keep: Option<Box<dyn Keep + 'a>>) -> BufferViewMut<'a, T> {
        BufferViewMut {
            token: view.token,
            buf: view_buffer(view),
            _keep: keep,
            _borrow: PhantomData,
        }
    }

    /// Runs `f` with the view as a `&mut Buffer<T>` (what launchers take for outputs):
    /// `out.with(|c| gemm_tc::launch(&dev, &cfg, layout, &a, &b, c, shape, lds))`.
    ///
    /// Aborts the process if `f` moved the view's storage out of the buffer it was lent
    /// (e.g. `mem::swap` with a buffer that lives longer): that storage would outlive the
    /// memory it borrows.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Buffer<T>) -> R) -> R {
        let guard = StillLent {
            buf: &mut self.buf,
            token: self.token,
        };
        f(guard.buf)
    }
}

/// Checks on drop (so on unwind too) that a lent buffer still holds its view's storage.
struct StillLent<'b, T: Element> {
    buf: &'b mut Buffer<T>,
    token: u64,
}

impl<T: Element> Drop for StillLent<'_, T> {
    fn drop(&mut self) {
        let in_place = matches!(&self.buf.raw.storage, Storage::View(v) if v.token == self.token);
        if !in_place {
            eprintln!(
                "warpforge: a BufferViewMut's storage was moved out of the buffer `with` lent \
                 (mem::swap/replace); it borrows memory that may be freed, so the process \
                 stops here"
            );
            std::process::abort();
        }
    }
}

fn view_buffer<T: Element>(view: View) -> Buffer<T> {
    Buffer::from_raw(RawBuffer {
        elem: T::TYPE,
        len: view.bytes / T::SCALAR.size_bytes(),
        storage: Storage::View(view),
    })
}

/// `range` over `len` elements as `(start, end)`, or why not.
fn bounds(range: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize), DeviceError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start > end || end > len {
        return Err(DeviceError::View {
            reason: format!("range {start}..{end} is outside the buffer's {len} elements"),
        });
    }
    Ok((start, end))
}

fn misaligned(what: &str, at: u64) -> DeviceError {
    DeviceError::View {
        reason: format!(
            "{what} {at} is not a multiple of {VIEW_ALIGN} bytes; views start on a \
             {VIEW_ALIGN}-byte boundary (kernels load 16-byte words, and a misaligned load \
             faults on a GPU)"
        ),
    }
}

impl<T: Element> Buffer<T> {
    /// A read-only view of the elements in `range` (no copy): `&*view` goes where a
    /// `&Buffer<T>` is taken. The start must be 16-byte aligned (e.g. a multiple of 8 for
    /// f16, 4 for f32).
    pub fn view(&self, range: impl RangeBounds<usize>) -> Result<BufferView<'_, T>, DeviceError> {
        let whole = self.raw.whole_view()?;
        let view = narrow(whole, range, self.raw.len, T::SCALAR.size_bytes(), false)?;
        Ok(BufferView::wrap(view, None))
    }

    /// A writable view of the elements in `range` (no copy); see [`BufferViewMut::with`].
    pub fn view_mut(
        &mut self,
        range: impl RangeBounds<usize>,
    ) -> Result<BufferViewMut<'_, T>, DeviceError> {
        let whole = self.raw.whole_view_mut()?;
        let view = narrow(whole, range, self.raw.len, T::SCALAR.size_bytes(), true)?;
        Ok(BufferViewMut::wrap(view, None))
    }
}

impl RawBuffer {
    /// All of this buffer's storage as a read-only view.
    fn whole_view(&self) -> Result<View, DeviceError> {
        Ok(match &self.storage {
            Storage::Host(b) => View::new(ViewMemory::Host(b.as_ptr() as *mut u8), b.len(), false),
            Storage::Cuda(mem) => View::new(mem.view_memory(), mem.bytes(), false),
            Storage::View(v) => v.narrowed(0, v.bytes, false),
        })
    }

    /// All of this buffer's storage as a writable view (the pointer derived from `&mut`).
    fn whole_view_mut(&mut self) -> Result<View, DeviceError> {
        Ok(match &mut self.storage {
            Storage::Host(b) => View::new(ViewMemory::Host(b.as_mut_ptr()), b.len(), true),
            Storage::Cuda(mem) => View::new(mem.view_memory(), mem.bytes(), true),
            Storage::View(v) if v.writable => v.narrowed(0, v.bytes, true),
            Storage::View(_) => {
                return Err(DeviceError::View {
                    reason: "a writable view of a read-only view".into(),
                })
            }
        })
    }
}

/// Elements `range` (of `elem_bytes` each, `len` in all) of `whole`.
fn narrow(
    whole: View,
    range: impl RangeBounds<usize>,
    len: usize,
    elem_bytes: usize,
    writable: bool,
) -> Result<View, DeviceError> {
    let (start, end) = bounds(range, len)?;
    let (offset, bytes) = (start * elem_bytes, (end - start) * elem_bytes);
    if offset % VIEW_ALIGN != 0 {
        return Err(misaligned(
            "the view's start (bytes into the buffer)",
            offset as u64,
        ));
    }
    if offset + bytes > whole.bytes {
        return Err(DeviceError::BufferSize {
            what: "the view".into(),
            needed: offset + bytes,
            held: whole.bytes,
        });
    }
    Ok(whole.narrowed(offset, bytes, writable))
}

/// Device views over a caller's memory (cudarc or raw pointers).
#[cfg(feature = "cuda")]
mod caller {
    use super::*;
    use crate::backend::Device;
    use cudarc::driver::{DevicePtr, DevicePtrMut};

    /// The device's stream and ordinal, or why `what` cannot be viewed on it.
    fn cuda_of<'d>(
        device: &'d Device,
        what: &str,
    ) -> Result<(&'d cudarc::driver::CudaStream, usize), DeviceError> {
        device
            .cuda_target()
            .map(|gpu| (&**gpu.stream(), gpu.ordinal()))
            .ok_or_else(|| DeviceError::WrongDevice {
                what: what.to_string(),
                buffer: "cuda".into(),
                device: format!("{} ({})", device.backend(), device.name()),
            })
    }

    /// The view's length in `T`s of `bytes`, and its start's alignment; same context.
    fn check_caller<T: Element>(
        stream: &cudarc::driver::CudaStream,
        src_stream: &cudarc::driver::CudaStream,
        ptr: u64,
        bytes: usize,
    ) -> Result<(), DeviceError> {
        if src_stream.context().cu_ctx() != stream.context().cu_ctx() {
            return Err(DeviceError::View {
                reason: "the memory belongs to another CUDA context than the device's; build \
                         the device from the same context (Device::from_cuda_stream)"
                    .into(),
            });
        }
        check_raw::<T>(ptr, bytes)
    }

    fn check_raw<T: Element>(ptr: u64, bytes: usize) -> Result<(), DeviceError> {
        let size = T::SCALAR.size_bytes();
        if !bytes.is_multiple_of(size) {
            return Err(DeviceError::View {
                reason: format!("{bytes} bytes is not a whole number of {}", T::SCALAR),
            });
        }
        if !ptr.is_multiple_of(VIEW_ALIGN as u64) {
            return Err(misaligned("the device address", ptr));
        }
        Ok(())
    }

    impl<'a, T: Element> BufferView<'a, T> {
        /// A read-only view of a caller's cudarc memory (`CudaSlice<U>`, `CudaView<U>`,
        /// `CudaViewMut<U>`; any `U` whose bytes are whole `T`s, e.g. a `CudaSlice<u8>` as
        /// FP8 codes). `device` must use the memory's context (e.g.
        /// [`Device::from_cuda_stream`]). cudarc's event tracking orders the device's
        /// stream after earlier writes to `src`, and records this read when the view drops.
        pub fn cuda<U>(
            device: &'a Device,
            src: &'a impl DevicePtr<U>,
        ) -> Result<BufferView<'a, T>, DeviceError> {
            let (stream, ordinal) = cuda_of(device, "the caller's memory")?;
            let bytes = src.num_bytes();
            let (ptr, keep) = src.device_ptr(stream);
            check_caller::<T>(stream, src.stream(), ptr, bytes)?;
            let view = View::new(ViewMemory::Cuda { ptr, ordinal }, bytes, false);
            Ok(BufferView::wrap(view, Some(Box::new(keep))))
        }

        /// A read-only view of `len` elements at a raw device address, for engines that
        /// do not use cudarc.
        ///
        /// # Safety
        /// `ptr` must point to `len` elements of `T` in `device`'s CUDA context, valid for
        /// reads for all of `'a`, and not written by other work that the device's stream
        /// is not ordered with.
        pub unsafe fn from_raw_cuda(
            device: &'a Device,
            ptr: u64,
            len: usize,
        ) -> Result<BufferView<'a, T>, DeviceError> {
            let (_, ordinal) = cuda_of(device, "the raw device pointer")?;
            let bytes = len * T::SCALAR.size_bytes();
            check_raw::<T>(ptr, bytes)?;
            let view = View::new(ViewMemory::Cuda { ptr, ordinal }, bytes, false);
            Ok(BufferView::wrap(view, None))
        }
    }

    impl<'a, T: Element> BufferViewMut<'a, T> {
        /// A writable view of a caller's cudarc memory (`CudaSlice<U>`, `CudaViewMut<U>`);
        /// as [`BufferView::cuda`], recording the write when the view drops.
        pub fn cuda<U>(
            device: &'a Device,
            src: &'a mut impl DevicePtrMut<U>,
        ) -> Result<BufferViewMut<'a, T>, DeviceError> {
            let (stream, ordinal) = cuda_of(device, "the caller's memory")?;
            let bytes = src.num_bytes();
            let same = src.stream().context().cu_ctx();
            let (ptr, keep) = src.device_ptr_mut(stream);
            if same != stream.context().cu_ctx() {
                return Err(DeviceError::View {
                    reason: "the memory belongs to another CUDA context than the device's".into(),
                });
            }
            check_raw::<T>(ptr, bytes)?;
            let view = View::new(ViewMemory::Cuda { ptr, ordinal }, bytes, true);
            Ok(BufferViewMut::wrap(view, Some(Box::new(keep))))
        }

        /// A writable view of `len` elements at a raw device address.
        ///
        /// # Safety
        /// As [`BufferView::from_raw_cuda`], and valid for writes: nothing else reads or
        /// writes the memory during `'a` unless ordered with the device's stream.
        pub unsafe fn from_raw_cuda(
            device: &'a Device,
            ptr: u64,
            len: usize,
        ) -> Result<BufferViewMut<'a, T>, DeviceError> {
            let (_, ordinal) = cuda_of(device, "the raw device pointer")?;
            let bytes = len * T::SCALAR.size_bytes();
            check_raw::<T>(ptr, bytes)?;
            let view = View::new(ViewMemory::Cuda { ptr, ordinal }, bytes, true);
            Ok(BufferViewMut::wrap(view, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{Device, DeviceError};

    #[test]
    fn views_read_and_write_only_their_range() {
        let cpu = Device::cpu();
        let mut buf = cpu.upload(&(0..32u32).collect::<Vec<_>>()).unwrap();
        let view = buf.view(4..12).unwrap();
        assert_eq!(view.len(), 8);
        assert_eq!(cpu.download(&view).unwrap(), (4..12).collect::<Vec<_>>());
        let inner = view.view(4..).unwrap();
        assert_eq!(cpu.download(&inner).unwrap(), (8..12).collect::<Vec<_>>());
        drop(inner);
        drop(view);
        let mut out = buf.view_mut(8..16).unwrap();
        out.with(|b| {
            let bytes = b.raw.host_bytes_mut().unwrap();
            bytes.fill(0xff);
        });
        drop(out);
        let all = cpu.download(&buf).unwrap();
        for (i, v) in all.iter().enumerate() {
            let want = if (8..16).contains(&i) {
                u32::MAX
            } else {
                i as u32
            };
            assert_eq!(*v, want, "element {i}");
        }
    }

    /// Swapping the lent storage into a longer-lived buffer stops the process (run in a
    /// child process, which must abort with the message).
    #[test]
    fn swapping_the_lent_storage_out_aborts() {
        const CHILD: &str = "WARPFORGE_VIEW_SWAP_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let cpu = Device::cpu();
            let mut buf = cpu.zeros::<u32>(8).unwrap();
            let mut longer_lived = cpu.zeros::<u32>(8).unwrap();
            let mut view = buf.view_mut(..).unwrap();
            view.with(|b| std::mem::swap(b, &mut longer_lived));
            println!("not stopped");
            return;
        }
        let name = "backend::view::tests::swapping_the_lent_storage_out_aborts";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "{stdout}");
        assert!(!stdout.contains("not stopped"), "{stdout}");
        assert!(stderr.contains("was moved out of the buffer"), "{stderr}");
    }

    #[test]
    fn bad_views_are_refused_with_a_reason() {
        let cpu = Device::cpu();
        let buf = cpu.zeros::<f32>(16).unwrap();
        let msg = |e: DeviceError| e.to_string();
        assert!(msg(buf.view(2..8).unwrap_err()).contains("16-byte boundary"));
        assert!(msg(buf.view(4..20).unwrap_err()).contains("outside the buffer's 16"));
        let view = buf.view(4..8).unwrap();
        assert!(view.view(0..8).is_err());
        let mut read_only = buf.view(..).unwrap();
        // A read-only view lends no `&mut Buffer`; its storage refuses writes too.
        let storage = &mut read_only.buf.raw;
        assert!(storage.host_bytes_mut().is_none());
    }
}
