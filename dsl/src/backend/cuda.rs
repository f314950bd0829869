//! The cuda backend: device discovery that never panics, device memory, launch.
//!
//! cudarc panics when it first needs libcuda and cannot load it, so `CudaDevice::open`
//! first tries a `dlopen` of it by name (`libcuda.so.1`, ...) before anything else in
//! `cudarc::driver` runs.
//!
//! A launch compiles the kernel's CUDA C with NVRTC for the device's arch (through the
//! module cache); for a device newer than this NVRTC knows, it compiles for the newest
//! older arch NVRTC supports and loads the PTX, which the driver JITs. Loaded modules are
//! kept per device by image hash, and functions by specialization.
//!
//! A kernel with more than 48 KiB of shared arrays is generated with dynamic shared memory
//! ([`codegen::dynamic_shared_bytes`]): its function opts into that size once, when loaded
//! (`CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`), and every launch passes it.
//!
//! A sticky driver error (an illegal address, a trap, a launch failure) poisons the context:
//! every later call fails too, but cudarc reports the stored error only once. `Faults`
//! remembers the first one and the kernel launched before it; every later operation on the
//! device returns [`DeviceError::ContextLost`] before touching the driver, so a caller can
//! label the rest "not run" instead of failing it under a misleading error.
//!
//! C ABI of an entry (from the code generator): a slice parameter is two C parameters,
//! the pointer and its length in elements as `u32`; a value parameter is its C type, which
//! has the size of its storage (bool and FP8 one byte, f16/bf16 their 16 bits).

use super::device::{check_shared, lock, DeviceError, DeviceLimits, SpecKey};
use super::view::{View, ViewMemory};
use super::{Arg, LaunchDims, RawBuffer, Storage, Value};
use crate::codegen;
use crate::nvrtc::{self, Arch, CompileOptions, NvrtcError};
use crate::typed::{self, ParamKind};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Device memory of a buffer on the cuda backend.
#[derive(Debug)]
pub struct DeviceMemory {
    /// At least one byte: the driver refuses empty allocations.
    pub(crate) slice: CudaSlice<u8>,
    pub(crate) stream: Arc<CudaStream>,
}

impl DeviceMemory {
    /// Size of the allocation (at least 1).
    pub fn bytes(&self) -> usize {
        self.slice.len()
    }

    /// The ordinal of the GPU holding this memory.
    pub fn ordinal(&self) -> usize {
        self.stream.context().ordinal()
    }

    /// The allocation's address, for a view of it. cudarc's read guard is dropped at once:
    /// the view is used on the stream the memory was allocated on, so its order is the
    /// stream's.
    pub(crate) fn view_memory(&self) -> ViewMemory {
        let (ptr, _record) = self.slice.device_ptr(&self.stream);
        ViewMemory::Cuda {
            ptr,
            ordinal: self.ordinal(),
        }
    }
}

/// One opened GPU.
pub(crate) struct CudaDevice {
    ordinal: usize,
    name: String,
    arch: Arch,
    limits: DeviceLimits,
    stream: Arc<CudaStream>,
    /// Loaded modules by the sha256 of their image (cubin or PTX).
    modules: Mutex<HashMap<[u8; 32], Arc<CudaModule>>>,
    functions: Mutex<HashMap<SpecKey, CudaFunction>>,
    faults: Faults,
}

/// The first sticky fault of a context, and the last launch before it.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// `name (config)` of the last kernel launched.
    last_launch: Mutex<Option<String>>,
    /// `(after, fault)`: set once, never cleared (the context stays unusable).
    lost: Mutex<Option<(String, String)>>,
}

impl Faults {
    /// Records a launch, so a fault seen later names it.
    pub(crate) fn launched(&self, kernel: &str, config: &str) {
        *lock(&self.last_launch) = Some(format!("{kernel} ({config})"));
    }

    /// `ContextLost` once a sticky fault was seen; checked before every operation.
    pub(crate) fn check(&self) -> Result<(), DeviceError> {
        match &*lock(&self.lost) {
            Some((after, fault)) => Err(DeviceError::ContextLost {
                after: after.clone(),
                fault: fault.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The error for a failed driver call: a sticky one is remembered and reported as a
    /// [`DeviceError::Fault`] naming the last launch; any other is a plain driver error.
    pub(crate) fn error(&self, during: &str, e: DriverError) -> DeviceError {
        let message = describe(&e);
        if !is_sticky(e.0) {
            return DeviceError::Driver {
                during: during.to_string(),
                message,
            };
        }
        let after = lock(&self.last_launch)
            .clone()
            .unwrap_or_else(|| "no kernel".to_string());
        let mut lost = lock(&self.lost);
        if lost.is_none() {
            *lost = Some((after.clone(), format!("{message} while {during}")));
        }
        DeviceError::Fault {
            during: during.to_string(),
            message,
            after,
        }
    }
}

/// The error's name and, when the driver library is loaded, its description (asking for
/// the description without the library would make cudarc panic).
fn describe(e: &DriverError) -> String {
    if driver_library_present() {
        e.to_string()
    } else {
        format!("{:?}", e.0)
    }
}

/// Whether the CUDA driver library can be loaded: a `dlopen` by its usual names. Ours rather
/// than cudarc's `is_culib_present`, which exists only when cudarc loads the library at run
/// time; when the application links cudarc to it instead (`dynamic-linking`,
/// `static-linking`), the library is already in the process and the `dlopen` finds it.
fn driver_library_present() -> bool {
    const NAMES: &[&str] = if cfg!(windows) {
        &["nvcuda.dll"]
    } else {
        &["libcuda.so.1", "libcuda.so"]
    };
    NAMES.iter().any(|name| {
        // SAFETY: loading the driver library runs no initialisation beyond its own
        // constructors, which cudarc would run on first use anyway.
        unsafe { libloading::Library::new(name) }.is_ok()
    })
}

/// Errors after which the context is unusable (CUDA driver API, `CUresult`: "the context
/// cannot be used, so it must be destroyed").
fn is_sticky(code: cudarc::driver::sys::CUresult) -> bool {
    use cudarc::driver::sys::CUresult as R;
    matches!(
        code,
        R::CUDA_ERROR_ILLEGAL_ADDRESS
            | R::CUDA_ERROR_LAUNCH_FAILED
            | R::CUDA_ERROR_MISALIGNED_ADDRESS
            | R::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | R::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | R::CUDA_ERROR_INVALID_PC
            | R::CUDA_ERROR_HARDWARE_STACK_ERROR
            | R::CUDA_ERROR_ASSERT
            | R::CUDA_ERROR_LAUNCH_TIMEOUT
            | R::CUDA_ERROR_ECC_UNCORRECTABLE
            | R::CUDA_ERROR_CONTEXT_IS_DESTROYED
    )
}

fn driver(during: &str) -> impl FnOnce(DriverError) -> DeviceError + '_ {
    move |e| DeviceError::Driver {
        during: during.to_string(),
        message: e.to_string(),
    }
}

impl CudaDevice {
    pub(crate) fn open(ordinal: usize) -> Result<CudaDevice, DeviceError> {
        CudaDevice::on_stream(primary_context(ordinal)?.default_stream())
    }

    /// A device on a stream another library owns, in GPU `ordinal`'s primary context.
    ///
    /// # Safety
    /// As [`CudaContext::wrap_borrowed_stream`]: `stream` belongs to that context and
    /// outlives the device.
    pub(crate) unsafe fn on_raw_stream(
        ordinal: usize,
        stream: cudarc::driver::sys::CUstream,
    ) -> Result<CudaDevice, DeviceError> {
        let ctx = primary_context(ordinal)?;
        // SAFETY: the caller's contract.
        CudaDevice::on_stream(unsafe { ctx.wrap_borrowed_stream(stream) })
    }
}

/// GPU `ordinal`'s primary context (the CUDA runtime's, so shared with runtime-API engines),
/// after checking that the driver loads and the GPU exists; never panics.
fn primary_context(ordinal: usize) -> Result<Arc<CudaContext>, DeviceError> {
    if !driver_library_present() {
        return Err(DeviceError::NoDriver {
            detail: "the driver library libcuda.so.1 could not be loaded".into(),
        });
    }
    let count = match CudaContext::device_count() {
        Ok(n) => n.max(0) as usize,
        Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
        Err(e) => {
            return Err(DeviceError::NoDriver {
                detail: format!("the driver failed to initialize ({e})"),
            })
        }
    };
    if ordinal >= count {
        return Err(DeviceError::NoDevice { ordinal, count });
    }
    CudaContext::new(ordinal).map_err(driver("creating the context"))
}

impl CudaDevice {
    /// A device launching on `stream` (a caller's, or a context's default stream).
    pub(crate) fn on_stream(stream: Arc<CudaStream>) -> Result<CudaDevice, DeviceError> {
        let ctx = stream.context();
        let ordinal = ctx.ordinal();
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let limits = device_limits(ctx, &name)?;
        Ok(CudaDevice {
            ordinal,
            name,
            limits,
            arch: Arch::new(major.max(0) as u32, minor.max(0) as u32),
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            faults: Faults::default(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn arch(&self) -> Arch {
        self.arch
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub(crate) fn limits(&self) -> &DeviceLimits {
        &self.limits
    }

    pub(crate) fn upload(&self, bytes: &[u8]) -> Result<DeviceMemory, DeviceError> {
        self.faults.check()?;
        let slice = if bytes.is_empty() {
            self.stream.alloc_zeros::<u8>(1)
        } else {
            self.stream.clone_htod(bytes)
        };
        let slice = slice.map_err(|e| self.faults.error("copying a buffer to the GPU", e))?;
        Ok(self.memory(slice))
    }

    pub(crate) fn zeros(&self, bytes: usize) -> Result<DeviceMemory, DeviceError> {
        self.faults.check()?;
        let slice = self.stream.alloc_zeros::<u8>(bytes.max(1));
        let slice = slice.map_err(|e| self.faults.error("allocating a buffer", e))?;
        Ok(self.memory(slice))
    }

    fn memory(&self, slice: CudaSlice<u8>) -> DeviceMemory {
        DeviceMemory {
            slice,
            stream: Arc::clone(&self.stream),
        }
    }

    /// The first `bytes` bytes of `mem`.
    pub(crate) fn download(
        &self,
        mem: &DeviceMemory,
        bytes: usize,
    ) -> Result<Vec<u8>, DeviceError> {
        self.check_ordinal(mem, "the buffer to download")?;
        self.faults.check()?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let view = mem
            .slice
            .try_slice(..bytes)
            .ok_or(DeviceError::BufferSize {
                what: "the buffer to download".into(),
                needed: bytes,
                held: mem.slice.len(),
            })?;
        self.stream
            .clone_dtoh(&view)
            .map_err(|e| self.faults.error("copying a buffer from the GPU", e))
    }

    /// The first `bytes` bytes of a device view (queued on the device's stream, then
    /// waited for, as `download` does).
    pub(crate) fn download_view(&self, view: &View, bytes: usize) -> Result<Vec<u8>, DeviceError> {
        let ViewMemory::Cuda { ptr, ordinal } = view.memory else {
            return Err(DeviceError::WrongDevice {
                what: "the view to download".into(),
                buffer: "cpu".into(),
                device: "cuda".into(),
            });
        };
        self.check_view_ordinal(ordinal, "the view to download")?;
        self.faults.check()?;
        if bytes > view.bytes {
            return Err(DeviceError::BufferSize {
                what: "the view to download".into(),
                needed: bytes,
                held: view.bytes,
            });
        }
        let mut out = vec![0u8; bytes];
        if bytes == 0 {
            return Ok(out);
        }
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| self.faults.error("binding the context to this thread", e))?;
        // SAFETY: `ptr` holds `view.bytes >= bytes` bytes for the view's borrow (which
        // `view` is part of), `out` holds `bytes`, and the copy is waited for below, before
        // `out` is read or moved.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut out, ptr, self.stream.cu_stream())
        }
        .map_err(|e| self.faults.error("copying a view from the GPU", e))?;
        self.synchronize()?;
        Ok(out)
    }

    pub(crate) fn synchronize(&self) -> Result<(), DeviceError> {
        self.faults.check()?;
        self.stream
            .synchronize()
            .map_err(|e| self.faults.error("synchronizing", e))
    }

    /// The first sticky fault, as the error every later operation returns (`None` while
    /// the context is usable).
    pub(crate) fn lost(&self) -> Option<DeviceError> {
        self.faults.check().err()
    }

    fn check_ordinal(&self, mem: &DeviceMemory, what: &str) -> Result<(), DeviceError> {
        self.check_view_ordinal(mem.ordinal(), what)
    }

    fn check_view_ordinal(&self, ordinal: usize, what: &str) -> Result<(), DeviceError> {
        if ordinal == self.ordinal {
            return Ok(());
        }
        Err(DeviceError::WrongDevice {
            what: what.to_string(),
            buffer: format!("cuda (GPU {ordinal})"),
            device: format!("cuda (GPU {})", self.ordinal),
        })
    }

    /// Launches an already checked specialization (see `device::check_launch`).
    pub(crate) fn launch(
        &self,
        key: &SpecKey,
        kernel: &typed::Kernel,
        dims: LaunchDims,
        args: &mut [Arg],
    ) -> Result<(), crate::Error> {
        self.faults.check()?;
        let scalars = self.scalars(kernel, args)?;
        let function = self.function(key, kernel)?;
        let mut builder = self.stream.launch_builder(&function);
        let params = kernel.body.params.iter();
        for ((param, arg), scalar) in params.zip(args.iter_mut()).zip(&scalars) {
            let off_gpu = || not_on_gpu(kernel, param);
            match arg {
                Arg::Slice(raw) => match &raw.storage {
                    Storage::Cuda(mem) => {
                        builder.arg(&mem.slice);
                    }
                    Storage::View(View {
                        memory: ViewMemory::Cuda { ptr, .. },
                        ..
                    }) => {
                        builder.arg(ptr);
                    }
                    _ => return Err(off_gpu().into()),
                },
                Arg::SliceMut(raw) => match &mut raw.storage {
                    Storage::Cuda(mem) => {
                        builder.arg(&mut mem.slice);
                    }
                    Storage::View(View {
                        memory: ViewMemory::Cuda { ptr, .. },
                        writable: true,
                        ..
                    }) => {
                        builder.arg(&*ptr);
                    }
                    _ => return Err(off_gpu().into()),
                },
                Arg::Value(_) => {}
            }
            scalar.push(&mut builder);
        }
        let config = LaunchConfig {
            grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
            block_dim: (dims.block[0], dims.block[1], dims.block[2]),
            shared_mem_bytes: codegen::dynamic_shared_bytes(kernel),
        };
        // SAFETY: the arguments were checked against the kernel's parameters, and are
        // pushed in the entry's C ABI (pointer + u32 length per slice, values by size).
        self.faults
            .launched(&kernel.name, &kernel.config.to_string());
        unsafe { builder.launch(config) }
            .map_err(|e| self.faults.error("launching the kernel", e))?;
        Ok(())
    }

    /// Per argument, the scalar pushed after it: a slice's length, or a value's bits.
    fn scalars(&self, kernel: &typed::Kernel, args: &[Arg]) -> Result<Vec<Scalar>, DeviceError> {
        let mut out = Vec::with_capacity(args.len());
        for (param, arg) in kernel.body.params.iter().zip(args) {
            let raw: &RawBuffer = match arg {
                Arg::Value(v) => {
                    out.push(Scalar::of(*v));
                    continue;
                }
                Arg::Slice(raw) => raw,
                Arg::SliceMut(raw) => raw,
            };
            let ordinal = match &raw.storage {
                Storage::Cuda(mem) => mem.ordinal(),
                Storage::View(View {
                    memory: ViewMemory::Cuda { ordinal, .. },
                    ..
                }) => *ordinal,
                _ => return Err(not_on_gpu(kernel, param)),
            };
            let what = format!(
                "kernel `{}`, parameter `{}`: the buffer",
                kernel.name, param.name
            );
            self.check_view_ordinal(ordinal, &what)?;
            let elems = match param.kind {
                ParamKind::Slice { elem, .. } => raw.len_as(elem).unwrap_or(raw.len),
                ParamKind::Value { .. } => raw.len,
            };
            let len = u32::try_from(elems).map_err(|_| DeviceError::TooLong {
                kernel: kernel.name.clone(),
                param: param.name.clone(),
                len: elems,
            })?;
            out.push(Scalar::U32(len));
        }
        Ok(out)
    }

    /// The loaded entry of a specialization: generated, compiled and loaded on first use.
    fn function(
        &self,
        key: &SpecKey,
        kernel: &typed::Kernel,
    ) -> Result<CudaFunction, crate::Error> {
        if let Some(f) = lock(&self.functions).get(key) {
            return Ok(f.clone());
        }
        // Loading a module and setting a function attribute act on the calling thread's
        // current context: bind ours (a caller's thread may have none, or another GPU's).
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| self.faults.error("binding the context to this thread", e))?;
        let (source, line_map) = codegen::cuda_source_with_map(kernel);
        let supported = nvrtc::supported_archs()?;
        let target = Arch::compile_target(self.arch, supported).ok_or_else(|| {
            NvrtcError::UnsupportedArch {
                arch: self.arch,
                supported: supported.to_vec(),
            }
        })?;
        nvrtc::check_compile(kernel, target)?;
        let compiled = nvrtc::compile_cached(&source, target, &CompileOptions::default())
            .map_err(|e| line_map.annotate(e))?;
        // ptxas's static count (alignment padding included) plus the dynamic bytes the
        // launch passes, against what this GPU allows with the opt-in.
        let dynamic = codegen::dynamic_shared_bytes(kernel);
        let shared = compiled.resources.shared_bytes as u64 + dynamic as u64;
        if shared > self.limits.max_shared_per_block {
            check_shared(kernel, 0, &self.name).map_err(|e| match e {
                DeviceError::SharedMemory { arrays, .. } => DeviceError::SharedMemory {
                    kernel: kernel.name.clone(),
                    config: kernel.config.to_string(),
                    bytes: shared,
                    limit: self.limits.max_shared_per_block,
                    target: self.name.clone(),
                    arrays,
                },
                other => other,
            })?;
        }
        let module = if target == self.arch {
            self.module(&compiled.cubin, || Ptx::from_binary(compiled.cubin.clone()))?
        } else {
            self.module(compiled.ptx.as_bytes(), || {
                Ptx::from_src(compiled.ptx.clone())
            })?
        };
        let function = module.load_function(&kernel.symbol).map_err(|e| {
            self.faults
                .error("finding the kernel entry in its module", e)
        })?;
        opt_into_dynamic_shared(&function, dynamic).map_err(|e| match e {
            OptInError::Driver(during, e) => self.faults.error(&during, e),
        })?;
        lock(&self.functions).insert(key.clone(), function.clone());
        Ok(function)
    }

    fn module(
        &self,
        image: &[u8],
        ptx: impl FnOnce() -> Ptx,
    ) -> Result<Arc<CudaModule>, DeviceError> {
        let hash: [u8; 32] = Sha256::digest(image).into();
        if let Some(m) = lock(&self.modules).get(&hash) {
            return Ok(Arc::clone(m));
        }
        let module = self
            .stream
            .context()
            .load_module(ptx())
            .map_err(|e| self.faults.error("loading the compiled module", e))?;
        lock(&self.modules).insert(hash, Arc::clone(&module));
        Ok(module)
    }
}

/// Above 48 KiB, dynamic shared memory needs the function's opt-in; it stays set for the
/// loaded function.
fn opt_into_dynamic_shared(function: &CudaFunction, bytes: u32) -> Result<(), OptInError> {
    if bytes as u64 <= codegen::MAX_STATIC_SHARED_BYTES {
        return Ok(());
    }
    use cudarc::driver::sys::CUfunction_attribute as F;
    let during = format!("opting the kernel into {bytes} bytes of dynamic shared memory");
    let value = i32::try_from(bytes).unwrap_or(i32::MAX);
    function
        .set_attribute(F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, value)
        .map_err(|e| OptInError::Driver(during, e))
}

/// A failed attribute call, classified by the device's [`Faults`].
enum OptInError {
    Driver(String, DriverError),
}

/// The GPU's launch limits from its attributes; shared memory is the opt-in cap per block
/// (the most static plus dynamic shared memory one block can have).
fn device_limits(ctx: &CudaContext, name: &str) -> Result<DeviceLimits, DeviceError> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    let get = |a: A| -> Result<u32, DeviceError> {
        let v = ctx
            .attribute(a)
            .map_err(driver("reading the device limits"))?;
        Ok(v.max(0) as u32)
    };
    // Without an opt-in (pre-Volta) the attribute may read 0: the plain limit applies.
    let shared = get(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
        .max(get(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?) as u64;
    Ok(DeviceLimits {
        name: name.to_string(),
        max_threads_per_block: get(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        max_block: [
            get(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
        ],
        max_grid: [
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
            get(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
        ],
        max_shared_per_block: shared,
    })
}

/// Device::launch checks this before; kept as an error rather than a panic.
fn not_on_gpu(kernel: &typed::Kernel, param: &typed::Param) -> DeviceError {
    DeviceError::WrongDevice {
        what: format!(
            "kernel `{}`, parameter `{}`: the buffer",
            kernel.name, param.name
        ),
        buffer: "cpu".into(),
        device: "cuda".into(),
    }
}

/// A scalar kernel argument, by its size in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
}

impl Scalar {
    fn of(v: Value) -> Scalar {
        match v.ty.size_bytes() {
            1 => Scalar::U8(v.bits as u8),
            2 => Scalar::U16(v.bits as u16),
            4 => Scalar::U32(v.bits as u32),
            _ => Scalar::U64(v.bits),
        }
    }

    fn push<'a>(&'a self, builder: &mut cudarc::driver::LaunchArgs<'a>) {
        match self {
            Scalar::U8(b) => builder.arg(b),
            Scalar::U16(b) => builder.arg(b),
            Scalar::U32(b) => builder.arg(b),
            Scalar::U64(b) => builder.arg(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Device, Value};
    use crate::types::ScalarType;

    #[test]
    fn cuda_without_a_driver_is_an_error_not_a_panic() {
        match Device::cuda(0) {
            Err(e @ DeviceError::NoDriver { .. }) => {
                let msg = e.to_string();
                eprintln!("{msg}");
                assert!(msg.contains("libcuda.so.1"), "{msg}");
                assert!(msg.contains("Device::cpu()"), "{msg}");
            }
            Err(e @ DeviceError::NoDevice { .. }) => eprintln!("driver present, no GPU: {e}"),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(d) => eprintln!("a GPU is present ({}): nothing to check here", d.name()),
        }
    }

    /// The test hook: a sticky error injected as the driver would report it.
    #[test]
    fn a_sticky_fault_stops_later_work_and_names_the_kernel() {
        use cudarc::driver::sys::CUresult as R;
        let faults = Faults::default();
        faults.check().unwrap();
        faults.launched("gemm_tc_nt_f16_f32", "BM=128,BN=128");
        let plain = faults.error(
            "launching the kernel",
            DriverError(R::CUDA_ERROR_INVALID_VALUE),
        );
        assert!(matches!(plain, DeviceError::Driver { .. }), "{plain}");
        faults
            .check()
            .expect("a non-sticky error leaves the context usable");
        let first = faults.error(
            "copying a buffer from the GPU",
            DriverError(R::CUDA_ERROR_ILLEGAL_ADDRESS),
        );
        let DeviceError::Fault { after, .. } = &first else {
            panic!("expected Fault, got {first}");
        };
        assert_eq!(after, "gemm_tc_nt_f16_f32 (BM=128,BN=128)");
        assert!(first.to_string().contains("no more GPU work"), "{first}");
        // Later launches: cudarc would now report success or another error; we refuse.
        faults.launched("fp8_quantize", "T=256");
        let later = faults.check().unwrap_err();
        let msg = later.to_string();
        eprintln!("{msg}");
        assert!(
            msg.starts_with("not run (context lost after gemm_tc_nt_f16_f32 (BM=128,BN=128))"),
            "{msg}"
        );
        assert!(msg.contains("while copying a buffer from the GPU"), "{msg}");
        // A second sticky error does not replace the first.
        faults.error("synchronizing", DriverError(R::CUDA_ERROR_LAUNCH_FAILED));
        assert!(faults
            .check()
            .unwrap_err()
            .to_string()
            .contains("gemm_tc_nt"));
    }

    #[test]
    fn scalars_use_their_storage_size() {
        let of = |ty, bits| Scalar::of(Value { ty, bits });
        assert_eq!(of(ScalarType::Bool, 1), Scalar::U8(1));
        assert_eq!(of(ScalarType::F8E4M3, 0x7e), Scalar::U8(0x7e));
        assert_eq!(of(ScalarType::F16, 0x3c00), Scalar::U16(0x3c00));
        assert_eq!(of(ScalarType::BF16, 0x3f80), Scalar::U16(0x3f80));
        assert_eq!(of(ScalarType::F32, 0x3f80_0000), Scalar::U32(0x3f80_0000));
        assert_eq!(of(ScalarType::I32, 0xffff_ffff), Scalar::U32(u32::MAX));
        assert_eq!(of(ScalarType::U64, u64::MAX), Scalar::U64(u64::MAX));
    }
}
