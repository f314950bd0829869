//! The device: cpu (interpreter) or cuda, behind one API; and the launch checks both share.

use super::cuda::CudaDevice;
use super::element::{from_bytes, to_bytes};
use super::{Arg, Buffer, Element, LaunchDims, RawBuffer, Storage};
use crate::interp::{self, InterpOptions};
use crate::ir::KernelDef;
use crate::nvrtc::Arch;
use crate::space::Config;
use crate::typed::{self, ParamKind};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Which backend a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Cpu,
    Cuda,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
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
    Cuda(CudaDevice),
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
        Ok(Device::with_target(Target::Cuda(CudaDevice::open(
            ordinal,
        )?)))
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
        }
    }

    /// `"cpu interpreter"` or the GPU's name.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Cpu => "cpu interpreter".to_string(),
            Target::Cuda(gpu) => gpu.name().to_string(),
        }
    }

    /// The GPU's compute capability (`None` on the cpu backend).
    pub fn arch(&self) -> Option<Arch> {
        match &self.target {
            Target::Cpu => None,
            Target::Cuda(gpu) => Some(gpu.arch()),
        }
    }

    /// A buffer holding a copy of `data`.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Buffer<T>, DeviceError> {
        let bytes = to_bytes(data);
        let storage = match &self.target {
            Target::Cpu => Storage::Host(bytes),
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
            Target::Cpu => Storage::Host(vec![0; bytes]),
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
            (Target::Cpu, Storage::Host(host)) => match host.get(..bytes) {
                Some(held) => Ok(from_bytes(held)),
                None => Err(DeviceError::BufferSize {
                    what: "the buffer to download".into(),
                    needed: bytes,
                    held: host.len(),
                }),
            },
            (Target::Cuda(gpu), Storage::Cuda(mem)) => Ok(from_bytes(&gpu.download(mem, bytes)?)),
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
        check_launch(&typed, &dims, args)?;
        self.check_storage(&typed, args)?;
        match &self.target {
            Target::Cpu => {
                interp::run(&typed, &dims, args, &self.interp)?;
            }
            Target::Cuda(gpu) => gpu.launch(&key, &typed, dims, args)?,
        }
        Ok(())
    }

    /// Waits until all launched work has finished.
    pub fn synchronize(&self) -> Result<(), DeviceError> {
        match &self.target {
            Target::Cpu => Ok(()),
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
                (Target::Cpu, Storage::Host(_)) | (Target::Cuda(_), Storage::Cuda(_))
            );
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
            Storage::Host(_) => Backend::Cpu,
            Storage::Cuda(_) => Backend::Cuda,
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
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a launch against the kernel's signature and the hardware limits: the argument
/// count, each argument's kind (slice/value), element type and mutability, and the dims.
pub(crate) fn check_launch(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    args: &[Arg],
) -> Result<(), DeviceError> {
    let params = &kernel.body.params;
    if params.len() != args.len() {
        return Err(DeviceError::ArgCount {
            kernel: kernel.name.clone(),
            expected: params.len(),
            got: args.len(),
            params: params
                .iter()
                .map(describe_param)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for (param, arg) in params.iter().zip(args) {
        if !param_accepts(&param.kind, arg) {
            return Err(DeviceError::ArgMismatch {
                kernel: kernel.name.clone(),
                param: param.name.clone(),
                expected: describe_kind(&param.kind),
                got: arg.describe(),
            });
        }
    }
    check_dims(kernel, dims)
}

fn param_accepts(kind: &ParamKind, arg: &Arg) -> bool {
    match (kind, arg) {
        (
            ParamKind::Slice {
                elem,
                mutable: false,
            },
            Arg::Slice(b),
        ) => b.len_as(*elem).is_some(),
        (
            ParamKind::Slice {
                elem,
                mutable: true,
            },
            Arg::SliceMut(b),
        ) => b.len_as(*elem).is_some(),
        (ParamKind::Value { ty, .. }, Arg::Value(v)) => *ty == v.ty.into(),
        _ => false,
    }
}

/// How a parameter is written in Rust: `&[f32]`, `&mut [u32]`, `u32`.
fn param_type(kind: &ParamKind) -> String {
    match kind {
        ParamKind::Slice {
            elem,
            mutable: false,
        } => format!("&[{elem}]"),
        ParamKind::Slice {
            elem,
            mutable: true,
        } => format!("&mut [{elem}]"),
        ParamKind::Value { ty, .. } => ty.to_string(),
    }
}

fn describe_kind(kind: &ParamKind) -> String {
    match kind {
        ParamKind::Value { ty, .. } => format!("a {ty} value"),
        slice => param_type(slice),
    }
}

fn describe_param(p: &typed::Param) -> String {
    format!("{}: {}", p.name, param_type(&p.kind))
}

/// Limits of every GPU warpforge targets (sm_80 and later).
const MAX_BLOCK_THREADS: u32 = 1024;
const MAX_BLOCK: [u32; 3] = [1024, 1024, 64];
const MAX_GRID: [u32; 3] = [i32::MAX as u32, 65535, 65535];

fn check_dims(kernel: &typed::Kernel, dims: &LaunchDims) -> Result<(), DeviceError> {
    let bad = |reason: String| DeviceError::BadDims {
        kernel: kernel.name.clone(),
        grid: dims.grid,
        block: dims.block,
        reason,
    };
    if dims.grid.contains(&0) || dims.block.contains(&0) {
        return Err(bad("every dimension must be at least 1".into()));
    }
    let threads = dims.block.iter().map(|&b| b as u64).product::<u64>();
    if threads > MAX_BLOCK_THREADS as u64 {
        return Err(bad(format!(
            "{threads} threads per block; the limit is {MAX_BLOCK_THREADS}"
        )));
    }
    for (axis, i) in ["x", "y", "z"].iter().zip(0..3) {
        if dims.block[i] > MAX_BLOCK[i] {
            return Err(bad(format!("block.{axis} is limited to {}", MAX_BLOCK[i])));
        }
        if dims.grid[i] > MAX_GRID[i] {
            return Err(bad(format!("grid.{axis} is limited to {}", MAX_GRID[i])));
        }
    }
    match kernel.block_dim {
        Some(declared) if declared != dims.block => Err(bad(format!(
            "the kernel is written for blocks of {declared:?} (its `block = ...`)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::{Function, Param, VarId};
    use crate::types::Type;
    use half::f16;

    /// `fn axpy(x: &[f32], y: &mut [f32], a: f32)`, optionally with a declared block.
    fn axpy(block_dim: Option<[u32; 3]>) -> typed::Kernel {
        let slice = |name: &str, mutable| Param {
            name: name.into(),
            kind: ParamKind::Slice {
                elem: Type::F32,
                mutable,
            },
        };
        let value = Param {
            name: "a".into(),
            kind: ParamKind::Value {
                ty: Type::F32,
                var: VarId(0),
            },
        };
        typed::Kernel {
            name: "axpy".into(),
            symbol: "axpy__".into(),
            file: "kernels/axpy.rs".into(),
            line: 3,
            config: Config::new(),
            block_dim,
            body: Function {
                name: "axpy__".into(),
                params: vec![slice("x", false), slice("y", true), value],
                ret: None,
                vars: vec![],
                arrays: vec![],
                body: vec![],
                line: 3,
            },
            device_fns: vec![],
        }
    }

    fn host(elem: Type, len: usize) -> RawBuffer {
        RawBuffer {
            elem,
            len,
            storage: Storage::Host(vec![0; len * elem.size_bytes()]),
        }
    }

    #[test]
    fn accepts_matching_arguments() {
        let (x, mut y) = (host(Type::F32, 4), host(Type::F32, 4));
        let args = [Arg::Slice(&x), Arg::SliceMut(&mut y), Arg::value(2.0f32)];
        check_launch(&axpy(None), &LaunchDims::linear(1, 4), &args).unwrap();
    }

    #[test]
    fn wrong_count_names_the_parameters() {
        let x = host(Type::F32, 4);
        let err = check_launch(&axpy(None), &LaunchDims::linear(1, 4), &[Arg::Slice(&x)]);
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.contains("takes 3 argument(s)") && msg.contains("passed 1"),
            "{msg}"
        );
        assert!(msg.contains("x: &[f32], y: &mut [f32], a: f32"), "{msg}");
    }

    /// The parameter an `ArgMismatch` names, and the message.
    fn mismatch(args: &[Arg]) -> (String, String) {
        let err = check_launch(&axpy(None), &LaunchDims::linear(1, 4), args).unwrap_err();
        let msg = err.to_string();
        match err {
            DeviceError::ArgMismatch { param, .. } => (param, msg),
            other => panic!("expected ArgMismatch, got {other:?}"),
        }
    }

    #[test]
    fn wrong_kind_type_or_mutability_is_refused() {
        let (x, mut y) = (host(Type::F32, 4), host(Type::F32, 4));
        let (mut x2, y2) = (host(Type::F32, 4), host(Type::F32, 4));
        let (param, msg) = mismatch(&[Arg::Slice(&x), Arg::Slice(&y2), Arg::value(1.0f32)]);
        assert_eq!(param, "y");
        assert!(
            msg.contains("expected &mut [f32], got &[f32] of length 4"),
            "{msg}"
        );
        let (param, _) = mismatch(&[
            Arg::SliceMut(&mut x2),
            Arg::SliceMut(&mut y),
            Arg::value(1.0f32),
        ]);
        assert_eq!(param, "x", "a &mut buffer for a & parameter is refused too");
        let h = host(Type::Scalar(crate::types::ScalarType::F16), 4);
        let mut y3 = host(Type::F32, 4);
        let (param, msg) = mismatch(&[Arg::Slice(&h), Arg::SliceMut(&mut y3), Arg::value(1.0f32)]);
        assert_eq!(param, "x");
        assert!(msg.contains("expected &[f32], got &[f16]"), "{msg}");
        let (x4, mut y4) = (host(Type::F32, 4), host(Type::F32, 4));
        let (param, msg) = mismatch(&[Arg::Slice(&x4), Arg::SliceMut(&mut y4), Arg::value(1u32)]);
        assert_eq!(param, "a");
        assert!(msg.contains("expected a f32 value, got u32 value"), "{msg}");
        let (x5, mut y5) = (host(Type::F32, 4), host(Type::F32, 4));
        let args = [Arg::value(1.0f32), Arg::SliceMut(&mut y5), Arg::Slice(&x5)];
        assert_eq!(mismatch(&args).0, "x", "a value for a slice parameter");
    }

    fn dims_error(kernel: &typed::Kernel, dims: LaunchDims) -> String {
        match check_dims(kernel, &dims) {
            Err(e @ DeviceError::BadDims { .. }) => e.to_string(),
            other => panic!("expected BadDims for {dims:?}, got {other:?}"),
        }
    }

    #[test]
    fn launch_dims_are_checked() {
        let k = axpy(None);
        assert!(dims_error(&k, LaunchDims::linear(0, 32)).contains("at least 1"));
        assert!(dims_error(&k, LaunchDims::linear(1, 0)).contains("at least 1"));
        let msg = dims_error(&k, LaunchDims::grid_2d((1, 1), (64, 32)));
        assert!(
            msg.contains("2048 threads per block; the limit is 1024"),
            "{msg}"
        );
        let tall = LaunchDims {
            grid: [1, 1, 1],
            block: [1, 1, 128],
        };
        assert!(dims_error(&k, tall).contains("block.z is limited to 64"));
        let wide = LaunchDims {
            grid: [1, 70000, 1],
            block: [32, 1, 1],
        };
        assert!(dims_error(&k, wide).contains("grid.y"));
        check_dims(&k, &LaunchDims::linear(1 << 20, 1024)).unwrap();
    }

    #[test]
    fn declared_block_shape_must_match() {
        let k = axpy(Some([256, 1, 1]));
        check_dims(&k, &LaunchDims::linear(8, 256)).unwrap();
        let msg = dims_error(&k, LaunchDims::linear(8, 128));
        assert!(msg.contains("written for blocks of [256, 1, 1]"), "{msg}");
        assert!(msg.contains("kernel `axpy`"), "{msg}");
    }

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
