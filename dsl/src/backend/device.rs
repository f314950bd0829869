//! The device: cpu (interpreter) or cuda, behind one API; and the launch checks both share.

mod check;

#[cfg(feature = "cuda")]
pub(crate) use check::check_shared;
pub use check::DeviceLimits;

use super::cuda::CudaDevice;
use super::element::{from_bytes, to_bytes};
use super::{Arg, Buffer, Element, LaunchDims, RawBuffer, Storage};
use crate::host::{self, HostOptions};
use crate::interp::{self, InterpOptions};
use crate::ir::KernelDef;
use crate::nvrtc::Arch;
use crate::space::Config;
use crate::typed;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Which backend a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Cpu,
    Cuda,
    /// The generated CUDA C compiled for the CPU with the host harness ([`crate::host`]).
    Host,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Host => "host",
        })
    }
}

/// A device to allocate buffers on and launch kernels on.
pub struct Device {
    target: Target,
    /// Specializations already made, so a repeated launch skips the resolver.
    kernels: Mutex<HashMap<SpecKey, Arc<typed::Kernel>>>,
    /// How the cpu backend interprets launches (unused on cuda).
    interp: InterpOptions,
}

enum Target {
    Cpu,
    /// Boxed: the GPU's handles are a few hundred bytes, the other targets a word.
    Cuda(Box<CudaDevice>),
    Host(HostOptions),
}

/// Identifies one specialization: the kernel (by its source position and name) and config.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SpecKey {
    pub file: String,
    pub line: u32,
    pub name: String,
    pub config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "no CUDA driver: {detail}. The cuda backend needs an NVIDIA GPU driver; \
         the cpu backend (Device::cpu()) runs every kernel without one"
    )]
    NoDriver { detail: String },

    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice { ordinal: usize, count: usize },

    #[error("CUDA driver error while {during}: {message}")]
    Driver { during: String, message: String },

    #[error(
        "kernel `{kernel}` takes {expected} argument(s) ({params}), but the launch passed {got}"
    )]
    ArgCount {
        kernel: String,
        expected: usize,
        got: usize,
        params: String,
    },

    #[error("kernel `{kernel}`, parameter `{param}`: expected {expected}, got {got}")]
    ArgMismatch {
        kernel: String,
        param: String,
        expected: String,
        got: String,
    },

    #[error("{what} lives on the {buffer} backend, but this device is {device}")]
    WrongDevice {
        what: String,
        buffer: String,
        device: String,
    },

    #[error(
        "kernel `{kernel}`, parameter `{param}`: {len} elements is more than a kernel can \
         index (lengths are passed as u32)"
    )]
    TooLong {
        kernel: String,
        param: String,
        len: usize,
    },

    #[error("{what}: its length needs {needed} bytes but its storage holds {held}")]
    BufferSize {
        what: String,
        needed: usize,
        held: usize,
    },

    #[error(
        "kernel `{kernel}` (config {config}) uses {bytes} bytes of shared memory; \
         the limit is {limit} bytes per block on {target}. Shared arrays: {arrays}. \
         Choose a config with smaller tiles, or share fewer or smaller arrays"
    )]
    SharedMemory {
        kernel: String,
        config: String,
        bytes: u64,
        limit: u64,
        target: String,
        arrays: String,
    },

    #[error(
        "kernel `{kernel}` uses `{intrinsic}`, which needs {needs} or newer, but {device} is \
         older; run it on a newer GPU or on the cpu backend"
    )]
    ArchTooOld {
        kernel: String,
        intrinsic: &'static str,
        needs: Arch,
        device: String,
    },

    #[error(
        "CUDA fault while {during}, after launching {after}: {message}. The driver keeps this \
         error for the context: no more GPU work runs in this process"
    )]
    Fault {
        during: String,
        message: String,
        /// The last kernel launched before the fault was seen (`name (config)`).
        after: String,
    },

    #[error(
        "not run (context lost after {after}): the first fault was {fault}; rerun the process \
         to use the GPU again"
    )]
    ContextLost { after: String, fault: String },

    #[error("cannot make the buffer view: {reason}")]
    View { reason: String },

    #[error("kernel `{kernel}`: cannot launch grid {grid:?} × block {block:?}: {reason}")]
    BadDims {
        kernel: String,
        grid: [u32; 3],
        block: [u32; 3],
        reason: String,
    },
}

impl Device {
    /// The CPU interpreter, with its sanitizer on ([`InterpOptions::default`]).
    pub fn cpu() -> Device {
        Device::with_target(Target::Cpu)
    }

    /// The CPU interpreter with `options` (e.g. [`InterpOptions::fast`] for speed on
    /// kernels already checked, or a smaller step budget).
    pub fn cpu_with(options: InterpOptions) -> Device {
        Device {
            interp: options,
            ..Device::with_target(Target::Cpu)
        }
    }

    /// GPU `ordinal`. Never panics: a missing driver is [`DeviceError::NoDriver`], a
    /// missing GPU [`DeviceError::NoDevice`].
    pub fn cuda(ordinal: usize) -> Result<Device, DeviceError> {
        Ok(Device::with_target(Target::Cuda(Box::new(
            CudaDevice::open(ordinal)?,
        ))))
    }

    /// A device on a caller's cudarc stream: launches are queued on `stream` (in its
    /// context) and never synchronized unless asked ([`Device::synchronize`],
    /// [`Device::download`]); buffers the caller allocated in that context are used in place
    /// through [`BufferView::cuda`](super::BufferView::cuda) /
    /// [`BufferViewMut::cuda`](super::BufferViewMut::cuda).
    #[cfg(feature = "cuda")]
    pub fn from_cuda_stream(
        stream: Arc<cudarc::driver::CudaStream>,
    ) -> Result<Device, DeviceError> {
        let gpu = CudaDevice::on_stream(stream)?;
        Ok(Device::with_target(Target::Cuda(Box::new(gpu))))
    }

    /// A device on a stream that an engine without cudarc owns (a `CUstream` /
    /// `cudaStream_t`), in GPU `ordinal`'s primary context — the one the CUDA runtime API
    /// uses, so runtime-API engines share it. With
    /// [`BufferView::from_raw_cuda`](super::BufferView::from_raw_cuda) for its memory,
    /// the engine needs nothing of cudarc.
    ///
    /// # Safety
    /// `stream` must be a valid stream of that context, alive for as long as the device.
    #[cfg(feature = "cuda")]
    pub unsafe fn from_raw_cuda_stream(
        ordinal: usize,
        stream: cudarc::driver::sys::CUstream,
    ) -> Result<Device, DeviceError> {
        // SAFETY: the caller's contract.
        let gpu = unsafe { CudaDevice::on_raw_stream(ordinal, stream) }?;
        Ok(Device::with_target(Target::Cuda(Box::new(gpu))))
    }

    /// A device on a caller's cudarc context, launching on its default stream.
    #[cfg(feature = "cuda")]
    pub fn from_cuda_context(
        context: Arc<cudarc::driver::CudaContext>,
    ) -> Result<Device, DeviceError> {
        Device::from_cuda_stream(context.default_stream())
    }

    /// The host backend: the CUDA C the cuda backend would compile, built by the system C++
    /// compiler with the host harness and run on the CPU (see [`crate::host`]). Buffers are
    /// host memory, as on the cpu backend. Fails when no C++ compiler is installed.
    pub fn host() -> Result<Device, crate::host::HostError> {
        Device::host_with(HostOptions::default())
    }

    /// The host backend with `options` (e.g. [`HostOptions::sanitized`]: ASan and UBSan on
    /// the generated C, in a child process).
    pub fn host_with(options: HostOptions) -> Result<Device, crate::host::HostError> {
        host::Compiler::find()?;
        Ok(Device::with_target(Target::Host(options)))
    }

    fn with_target(target: Target) -> Device {
        Device {
            target,
            kernels: Mutex::new(HashMap::new()),
            interp: InterpOptions::default(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.target {
            Target::Cpu => Backend::Cpu,
            Target::Cuda(_) => Backend::Cuda,
            Target::Host(_) => Backend::Host,
        }
    }

    /// `"cpu interpreter"` or the GPU's name.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Cpu => "cpu interpreter".to_string(),
            Target::Cuda(gpu) => gpu.name().to_string(),
            Target::Host(o) => format!(
                "host harness ({}{})",
                host::Compiler::find().map_or("?", |c| c.version.as_str()),
                if o.sanitize { ", sanitized" } else { "" }
            ),
        }
    }

    /// The GPU's compute capability (`None` on the cpu backend).
    pub fn arch(&self) -> Option<Arch> {
        match &self.target {
            Target::Cpu | Target::Host(_) => None,
            Target::Cuda(gpu) => Some(gpu.arch()),
        }
    }

    /// The CUDA stream this device launches on (`None` on the cpu backend), for callers
    /// that time launches with events recorded on the same stream (the autotuner).
    #[cfg(feature = "cuda")]
    pub fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        match &self.target {
            Target::Cpu | Target::Host(_) => None,
            Target::Cuda(gpu) => Some(Arc::clone(gpu.stream())),
        }
    }

    /// The opened GPU, on the cuda backend.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_target(&self) -> Option<&CudaDevice> {
        match &self.target {
            Target::Cuda(gpu) => Some(gpu),
            _ => None,
        }
    }

    /// A buffer holding a copy of `data`.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Buffer<T>, DeviceError> {
        let bytes = to_bytes(data);
        let storage = match &self.target {
            Target::Cpu | Target::Host(_) => Storage::Host(bytes),
            Target::Cuda(gpu) => Storage::Cuda(gpu.upload(&bytes)?),
        };
        Ok(Buffer::from_raw(RawBuffer {
            elem: T::TYPE,
            len: data.len(),
            storage,
        }))
    }

    /// A buffer of `len` zero elements.
    pub fn zeros<T: Element>(&self, len: usize) -> Result<Buffer<T>, DeviceError> {
        let bytes = len * T::SCALAR.size_bytes();
        let storage = match &self.target {
            Target::Cpu | Target::Host(_) => Storage::Host(vec![0; bytes]),
            Target::Cuda(gpu) => Storage::Cuda(gpu.zeros(bytes)?),
        };
        Ok(Buffer::from_raw(RawBuffer {
            elem: T::TYPE,
            len,
            storage,
        }))
    }

    /// The buffer's elements (waits for work on the buffer to finish).
    pub fn download<T: Element>(&self, buf: &Buffer<T>) -> Result<Vec<T>, DeviceError> {
        let bytes = buf.len() * T::SCALAR.size_bytes();
        match (&self.target, &buf.raw.storage) {
            (Target::Cpu | Target::Host(_), Storage::Host(host)) => match host.get(..bytes) {
                Some(held) => Ok(from_bytes(held)),
                None => Err(DeviceError::BufferSize {
                    what: "the buffer to download".into(),
                    needed: bytes,
                    held: host.len(),
                }),
            },
            (Target::Cuda(gpu), Storage::Cuda(mem)) => Ok(from_bytes(&gpu.download(mem, bytes)?)),
            (Target::Cpu | Target::Host(_), Storage::View(v)) if v.host_bytes().is_some() => {
                let held = v.host_bytes().unwrap_or_default();
                Ok(from_bytes(held.get(..bytes).ok_or(
                    DeviceError::BufferSize {
                        what: "the view to download".into(),
                        needed: bytes,
                        held: held.len(),
                    },
                )?))
            }
            (Target::Cuda(gpu), Storage::View(v)) if !v.is_host() => {
                Ok(from_bytes(&gpu.download_view(v, bytes)?))
            }
            (_, storage) => Err(self.wrong_device("the buffer to download".into(), storage)),
        }
    }

    /// Specializes `kernel` for `config` (cached per device) and runs it over `dims`.
    pub fn launch(
        &self,
        kernel: &KernelDef,
        config: &Config,
        dims: LaunchDims,
        args: &mut [Arg],
    ) -> Result<(), crate::Error> {
        let (key, typed) = self.specialized(kernel, config)?;
        check::check_launch(&typed, &dims, args, &self.limits())?;
        self.check_storage(&typed, args)?;
        match &self.target {
            Target::Cpu => {
                interp::run(&typed, &dims, args, &self.interp)?;
            }
            Target::Host(options) => host::run(&typed, &dims, args, options)?,
            Target::Cuda(gpu) => {
                if let Some(arch) = self.arch() {
                    check::check_arch(&typed, arch, &self.name())?;
                }
                gpu.launch(&key, &typed, dims, args)?
            }
        }
        Ok(())
    }

    /// What this device allows a launch: its own attributes on cuda, the limits of every
    /// GPU on cpu (so a kernel that runs on the interpreter can run on a GPU).
    pub fn limits(&self) -> DeviceLimits {
        match &self.target {
            Target::Cpu | Target::Host(_) => DeviceLimits::generic(),
            Target::Cuda(gpu) => gpu.limits().clone(),
        }
    }

    /// After a sticky driver fault, the [`DeviceError::ContextLost`] that every later GPU
    /// operation returns; `None` while the device is usable (always on cpu).
    pub fn context_lost(&self) -> Option<DeviceError> {
        match &self.target {
            Target::Cuda(gpu) => gpu.lost(),
            _ => None,
        }
    }

    /// Waits until all launched work has finished.
    pub fn synchronize(&self) -> Result<(), DeviceError> {
        match &self.target {
            Target::Cpu | Target::Host(_) => Ok(()),
            Target::Cuda(gpu) => gpu.synchronize(),
        }
    }

    fn specialized(
        &self,
        def: &KernelDef,
        config: &Config,
    ) -> Result<(SpecKey, Arc<typed::Kernel>), crate::Error> {
        let key = SpecKey {
            file: def.file.clone(),
            line: def.line,
            name: def.name.clone(),
            config: config.clone(),
        };
        if let Some(k) = lock(&self.kernels).get(&key) {
            return Ok((key, Arc::clone(k)));
        }
        // Specialize without holding the lock; a concurrent duplicate is harmless.
        let typed = Arc::new(crate::resolve::specialize(def, config)?);
        lock(&self.kernels).insert(key.clone(), Arc::clone(&typed));
        Ok((key, typed))
    }

    /// Every buffer argument lives on this device's backend.
    fn check_storage(&self, kernel: &typed::Kernel, args: &[Arg]) -> Result<(), DeviceError> {
        for (param, arg) in kernel.body.params.iter().zip(args) {
            let raw = match arg {
                Arg::Slice(raw) => &**raw,
                Arg::SliceMut(raw) => &**raw,
                Arg::Value(_) => continue,
            };
            let here = matches!(
                (&self.target, &raw.storage),
                (Target::Cpu | Target::Host(_), Storage::Host(_))
                    | (Target::Cuda(_), Storage::Cuda(_))
            ) || matches!(&raw.storage, Storage::View(v) if v.is_host() != (self.backend() == Backend::Cuda));
            let what = format!(
                "kernel `{}`, parameter `{}`: the buffer",
                kernel.name, param.name
            );
            if !here {
                return Err(self.wrong_device(what, &raw.storage));
            }
            let needed = raw.len * raw.elem.size_bytes();
            let held = storage_bytes(&raw.storage);
            if held < needed {
                return Err(DeviceError::BufferSize { what, needed, held });
            }
        }
        Ok(())
    }

    fn wrong_device(&self, what: String, storage: &Storage) -> DeviceError {
        let buffer = match storage {
            // Host memory serves the cpu and host backends alike.
            Storage::Host(_) => Backend::Cpu,
            Storage::Cuda(_) => Backend::Cuda,
            Storage::View(v) if v.is_host() => Backend::Cpu,
            Storage::View(_) => Backend::Cuda,
        };
        DeviceError::WrongDevice {
            what,
            buffer: buffer.to_string(),
            device: format!("{} ({})", self.backend(), self.name()),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("backend", &self.backend())
            .field("name", &self.name())
            .field("arch", &self.arch())
            .finish()
    }
}

fn storage_bytes(storage: &Storage) -> usize {
    match storage {
        Storage::Host(bytes) => bytes.len(),
        Storage::Cuda(mem) => mem.bytes(),
        Storage::View(v) => v.bytes,
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::check::tests::{axpy, host};
    use super::*;
    use crate::types::Type;
    use half::f16;

    #[test]
    fn buffer_whose_storage_is_too_small_is_refused() {
        let cpu = Device::cpu();
        let x = host(Type::F32, 4);
        let mut y = host(Type::F32, 4);
        y.len = 5;
        let args = [Arg::Slice(&x), Arg::SliceMut(&mut y), Arg::value(1.0f32)];
        let msg = cpu
            .check_storage(&axpy(None), &args)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("parameter `y`"), "{msg}");
        assert!(
            msg.contains("needs 20 bytes but its storage holds 16"),
            "{msg}"
        );
        let mut buf = cpu.upload(&[1u32, 2]).unwrap();
        buf.raw.len = 3;
        assert!(matches!(
            cpu.download(&buf),
            Err(DeviceError::BufferSize { .. })
        ));
    }

    #[test]
    fn cpu_upload_download_round_trip() {
        let cpu = Device::cpu();
        assert_eq!(cpu.backend(), Backend::Cpu);
        assert_eq!(cpu.name(), "cpu interpreter");
        assert_eq!(cpu.arch(), None);
        let data = [1.5f32, -0.0, f32::MAX, 3.25];
        let buf = cpu.upload(&data).unwrap();
        assert_eq!(buf.len(), 4);
        assert_eq!(buf.raw.elem, Type::F32);
        assert_eq!(cpu.download(&buf).unwrap(), data);
        let halves = [f16::from_f32(0.5), f16::from_f32(-2.0)];
        assert_eq!(cpu.download(&cpu.upload(&halves).unwrap()).unwrap(), halves);
        let zeros = cpu.zeros::<u64>(3).unwrap();
        assert_eq!(zeros.raw.host_bytes().unwrap().len(), 24);
        assert_eq!(cpu.download(&zeros).unwrap(), [0u64; 3]);
        assert!(cpu
            .download(&cpu.upload::<i32>(&[]).unwrap())
            .unwrap()
            .is_empty());
        cpu.synchronize().unwrap();
    }
}
