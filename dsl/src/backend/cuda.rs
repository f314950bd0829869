//! The cuda backend: device discovery that never panics, device memory, launch.
//!
//! cudarc panics when it first needs libcuda and cannot load it, so [`CudaDevice::open`]
//! asks `is_culib_present()` (a `dlopen` by name, `libcuda.so.1` among them) before
//! anything else in `cudarc::driver` runs.
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
//! C ABI of an entry (from the code generator): a slice parameter is two C parameters,
//! the pointer and its length in elements as `u32`; a value parameter is its C type, which
//! has the size of its storage (bool and FP8 one byte, f16/bf16 their 16 bits).

use super::device::{check_shared, lock, DeviceError, DeviceLimits, SpecKey};
use super::{Arg, LaunchDims, RawBuffer, Storage, Value};
use crate::codegen;
use crate::nvrtc::{self, Arch, CompileOptions, NvrtcError};
use crate::typed::{self, ParamKind};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError, LaunchConfig,
    PushKernelArg,
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
}

fn driver(during: &str) -> impl FnOnce(DriverError) -> DeviceError + '_ {
    move |e| DeviceError::Driver {
        during: during.to_string(),
        message: e.to_string(),
    }
}

impl CudaDevice {
    pub(crate) fn open(ordinal: usize) -> Result<CudaDevice, DeviceError> {
        // SAFETY: only tries to dlopen the driver library by its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
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
        let ctx = CudaContext::new(ordinal).map_err(driver("creating the context"))?;
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let limits = device_limits(&ctx, &name)?;
        Ok(CudaDevice {
            ordinal,
            name,
            limits,
            arch: Arch::new(major.max(0) as u32, minor.max(0) as u32),
            stream: ctx.default_stream(),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
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

    pub(crate) fn limits(&self) -> &DeviceLimits {
        &self.limits
    }

    pub(crate) fn upload(&self, bytes: &[u8]) -> Result<DeviceMemory, DeviceError> {
        let slice = if bytes.is_empty() {
            self.stream.alloc_zeros::<u8>(1)
        } else {
            self.stream.clone_htod(bytes)
        };
        Ok(self.memory(slice.map_err(driver("copying a buffer to the GPU"))?))
    }

    pub(crate) fn zeros(&self, bytes: usize) -> Result<DeviceMemory, DeviceError> {
        let slice = self.stream.alloc_zeros::<u8>(bytes.max(1));
        Ok(self.memory(slice.map_err(driver("allocating a buffer"))?))
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
            .map_err(driver("copying a buffer from the GPU"))
    }

    pub(crate) fn synchronize(&self) -> Result<(), DeviceError> {
        self.stream.synchronize().map_err(driver("synchronizing"))
    }

    fn check_ordinal(&self, mem: &DeviceMemory, what: &str) -> Result<(), DeviceError> {
        if mem.ordinal() == self.ordinal {
            return Ok(());
        }
        Err(DeviceError::WrongDevice {
            what: what.to_string(),
            buffer: format!("cuda (GPU {})", mem.ordinal()),
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
        let scalars = self.scalars(kernel, args)?;
        let function = self.function(key, kernel)?;
        let mut builder = self.stream.launch_builder(&function);
        let params = kernel.body.params.iter();
        for ((param, arg), scalar) in params.zip(args.iter_mut()).zip(&scalars) {
            let off_gpu = || not_on_gpu(kernel, param);
            match arg {
                Arg::Slice(raw) => {
                    let Storage::Cuda(mem) = &raw.storage else {
                        return Err(off_gpu().into());
                    };
                    builder.arg(&mem.slice);
                }
                Arg::SliceMut(raw) => {
                    let Storage::Cuda(mem) = &mut raw.storage else {
                        return Err(off_gpu().into());
                    };
                    builder.arg(&mut mem.slice);
                }
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
        unsafe { builder.launch(config) }.map_err(driver("launching the kernel"))?;
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
            let Storage::Cuda(mem) = &raw.storage else {
                return Err(not_on_gpu(kernel, param));
            };
            let what = format!(
                "kernel `{}`, parameter `{}`: the buffer",
                kernel.name, param.name
            );
            self.check_ordinal(mem, &what)?;
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
        let function = module
            .load_function(&kernel.symbol)
            .map_err(driver("finding the kernel entry in its module"))?;
        opt_into_dynamic_shared(&function, dynamic)?;
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
            .map_err(driver("loading the compiled module"))?;
        lock(&self.modules).insert(hash, Arc::clone(&module));
        Ok(module)
    }
}

/// Above 48 KiB, dynamic shared memory needs the function's opt-in; it stays set for the
/// loaded function.
fn opt_into_dynamic_shared(function: &CudaFunction, bytes: u32) -> Result<(), DeviceError> {
    if bytes as u64 <= codegen::MAX_STATIC_SHARED_BYTES {
        return Ok(());
    }
    use cudarc::driver::sys::CUfunction_attribute as F;
    let during = format!("opting the kernel into {bytes} bytes of dynamic shared memory");
    let value = i32::try_from(bytes).unwrap_or(i32::MAX);
    function
        .set_attribute(F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, value)
        .map_err(driver(&during))
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
