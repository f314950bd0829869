//! The launch checks both backends share: arguments against the kernel's parameters, the
//! launch shape and shared memory against the device's limits.

use super::DeviceError;
use crate::backend::{Arg, LaunchDims};
use crate::typed::{self, ParamKind};

/// A kernel using an intrinsic newer than the device's arch cannot run there.
pub(crate) fn check_arch(
    kernel: &typed::Kernel,
    arch: crate::nvrtc::Arch,
    device: &str,
) -> Result<(), DeviceError> {
    match crate::nvrtc::min_arch(kernel) {
        Some((needs, intrinsic)) if needs > arch => Err(DeviceError::ArchTooOld {
            kernel: kernel.name.clone(),
            intrinsic,
            needs,
            device: format!("{device} ({arch})"),
        }),
        _ => Ok(()),
    }
}

/// Checks a launch against the kernel's signature and the device's limits: the argument
/// count, each argument's kind (slice/value), element type, mutability and length, the
/// dims, and the kernel's shared memory.
pub(crate) fn check_launch(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    args: &[Arg],
    limits: &DeviceLimits,
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
        check_length(kernel, param, arg)?;
    }
    check_dims(kernel, dims, limits)?;
    check_shared(kernel, limits.max_shared_per_block, &limits.name)
}

/// Lengths reach the kernel as `u32`: a longer buffer could not be indexed.
fn check_length(
    kernel: &typed::Kernel,
    param: &typed::Param,
    arg: &Arg,
) -> Result<(), DeviceError> {
    let raw = match arg {
        Arg::Slice(raw) => &**raw,
        Arg::SliceMut(raw) => &**raw,
        Arg::Value(_) => return Ok(()),
    };
    let ParamKind::Slice { elem, .. } = &param.kind else {
        return Ok(());
    };
    let len = raw.len_as(*elem).unwrap_or(raw.len);
    if u32::try_from(len).is_err() {
        return Err(DeviceError::TooLong {
            kernel: kernel.name.clone(),
            param: param.name.clone(),
            len,
        });
    }
    Ok(())
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

/// What a device allows a launch: the generic limits of every GPU warpforge targets (sm_80
/// and later; also used by the cpu backend, so a kernel that runs there can run on a GPU),
/// or a GPU's own attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Where the limits come from, for messages (`"every GPU"`, the GPU's name).
    pub name: String,
    pub max_threads_per_block: u32,
    pub max_block: [u32; 3],
    pub max_grid: [u32; 3],
    /// Shared memory per block with the opt-in beyond 48 KiB (static plus dynamic; the
    /// generated code switches to dynamic shared memory above 48 KiB and the cuda backend
    /// opts in): `CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN` on a GPU.
    pub max_shared_per_block: u64,
}

/// 99 KiB: the opt-in shared memory per block every GPU warpforge targets allows, the
/// smallest of sm_80 (163 KiB), sm_86/sm_89 (99 KiB) and sm_90 (227 KiB). The cpu backend
/// checks against it, so that a kernel that runs there fits on any of them.
pub(crate) const GENERIC_MAX_SHARED: u64 = 99 * 1024;

impl DeviceLimits {
    pub fn generic() -> DeviceLimits {
        DeviceLimits {
            name: "every GPU".into(),
            max_threads_per_block: 1024,
            max_block: [1024, 1024, 64],
            max_grid: [i32::MAX as u32, 65535, 65535],
            max_shared_per_block: GENERIC_MAX_SHARED,
        }
    }
}

/// The kernel's shared arrays (entry and device functions) with their sizes in bytes.
fn shared_arrays(kernel: &typed::Kernel) -> Vec<(String, u64)> {
    let entry = std::iter::once((None, &kernel.body));
    let device = kernel.device_fns.iter().map(|f| (Some(&f.name), f));
    entry
        .chain(device)
        .flat_map(|(owner, f)| {
            f.arrays
                .iter()
                .filter(|a| a.space == typed::ArraySpace::Shared)
                .map(move |a| {
                    let name = match owner {
                        Some(fname) => format!("{fname}::{}", a.name),
                        None => a.name.clone(),
                    };
                    let bytes = a.len as u64 * a.elem.size_bytes() as u64;
                    (format!("{name}: [{}; {}]", a.elem, a.len), bytes)
                })
        })
        .collect()
}

/// The kernel's shared memory as the generator lays it out (alignment padding included)
/// against `limit` bytes.
pub(crate) fn check_shared(
    kernel: &typed::Kernel,
    limit: u64,
    target: &str,
) -> Result<(), DeviceError> {
    let bytes = crate::codegen::shared_bytes(kernel);
    if bytes <= limit {
        return Ok(());
    }
    Err(DeviceError::SharedMemory {
        kernel: kernel.name.clone(),
        config: kernel.config.to_string(),
        bytes,
        limit,
        target: target.to_string(),
        arrays: describe_arrays(&shared_arrays(kernel)),
    })
}

fn describe_arrays(arrays: &[(String, u64)]) -> String {
    arrays
        .iter()
        .map(|(what, bytes)| format!("{what} = {bytes} B"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_dims(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    limits: &DeviceLimits,
) -> Result<(), DeviceError> {
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
    let on = &limits.name;
    if threads > limits.max_threads_per_block as u64 {
        return Err(bad(format!(
            "{threads} threads per block; the limit is {} on {on}",
            limits.max_threads_per_block
        )));
    }
    for (axis, i) in ["x", "y", "z"].iter().zip(0..3) {
        if dims.block[i] > limits.max_block[i] {
            let max = limits.max_block[i];
            return Err(bad(format!("block.{axis} is limited to {max} on {on}")));
        }
        if dims.grid[i] > limits.max_grid[i] {
            let max = limits.max_grid[i];
            return Err(bad(format!("grid.{axis} is limited to {max} on {on}")));
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
pub(super) mod tests {
    use super::*;
    use crate::backend::{RawBuffer, Storage};
    use crate::space::Config;
    use crate::typed::{Function, Param, VarId};
    use crate::types::Type;

    /// `fn axpy(x: &[f32], y: &mut [f32], a: f32)`, optionally with a declared block.
    pub(in crate::backend) fn axpy(block_dim: Option<[u32; 3]>) -> typed::Kernel {
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

    pub(in crate::backend) fn host(elem: Type, len: usize) -> RawBuffer {
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
        check_launch(&axpy(None), &LaunchDims::linear(1, 4), &args, &generic()).unwrap();
    }

    #[test]
    fn wrong_count_names_the_parameters() {
        let x = host(Type::F32, 4);
        let err = check_launch(
            &axpy(None),
            &LaunchDims::linear(1, 4),
            &[Arg::Slice(&x)],
            &generic(),
        );
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.contains("takes 3 argument(s)") && msg.contains("passed 1"),
            "{msg}"
        );
        assert!(msg.contains("x: &[f32], y: &mut [f32], a: f32"), "{msg}");
    }

    /// The parameter an `ArgMismatch` names, and the message.
    fn mismatch(args: &[Arg]) -> (String, String) {
        let err =
            check_launch(&axpy(None), &LaunchDims::linear(1, 4), args, &generic()).unwrap_err();
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
        match check_dims(kernel, &dims, &generic()) {
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
        check_dims(&k, &LaunchDims::linear(1 << 20, 1024), &generic()).unwrap();
    }

    #[test]
    fn declared_block_shape_must_match() {
        let k = axpy(Some([256, 1, 1]));
        check_dims(&k, &LaunchDims::linear(8, 256), &generic()).unwrap();
        let msg = dims_error(&k, LaunchDims::linear(8, 128));
        assert!(msg.contains("written for blocks of [256, 1, 1]"), "{msg}");
        assert!(msg.contains("kernel `axpy`"), "{msg}");
    }

    fn generic() -> DeviceLimits {
        DeviceLimits::generic()
    }

    #[test]
    fn the_device_limits_are_used_and_named() {
        let h200 = DeviceLimits {
            name: "NVIDIA H200".into(),
            max_threads_per_block: 512,
            ..DeviceLimits::generic()
        };
        let err = check_dims(&axpy(None), &LaunchDims::linear(1, 1024), &h200).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("1024 threads per block; the limit is 512 on NVIDIA H200"),
            "{msg}"
        );
    }

    #[test]
    fn a_buffer_longer_than_u32_is_refused() {
        // check_launch reads only the length, never the storage, so no 16 GiB is needed.
        let x = RawBuffer {
            elem: Type::F32,
            len: 1 << 32,
            storage: Storage::Host(Vec::new()),
        };
        let mut y = host(Type::F32, 4);
        let args = [Arg::Slice(&x), Arg::SliceMut(&mut y), Arg::value(1.0f32)];
        let err = check_launch(&axpy(None), &LaunchDims::linear(1, 4), &args, &generic());
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("parameter `x`: 4294967296 elements"), "{msg}");
        assert!(msg.contains("lengths are passed as u32"), "{msg}");
    }

    #[test]
    fn a_vector_buffer_of_the_wrong_length_is_refused() {
        let mut k = axpy(None);
        k.body.params[0].kind = ParamKind::Slice {
            elem: Type::Vector(crate::types::ScalarType::F32, 4),
            mutable: false,
        };
        let (x, mut y) = (host(Type::F32, 6), host(Type::F32, 4));
        let args = [Arg::Slice(&x), Arg::SliceMut(&mut y), Arg::value(1.0f32)];
        let msg = check_launch(&k, &LaunchDims::linear(1, 4), &args, &generic())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("parameter `x`: expected &[Vec4<f32>]"),
            "{msg}"
        );
    }

    /// `axpy` with shared arrays of `lens` f32 elements in the entry, and one of 1024 f16 in
    /// a device function.
    fn with_shared(lens: &[u32]) -> typed::Kernel {
        let mut k = axpy(None);
        k.config = Config::new().with("BM", 128);
        let array = |name: &str, elem, len| typed::ArrayInfo {
            name: name.into(),
            elem,
            len,
            space: typed::ArraySpace::Shared,
        };
        for (i, &len) in lens.iter().enumerate() {
            k.body
                .arrays
                .push(array(&format!("tile{i}"), Type::F32, len));
        }
        let mut helper = k.body.clone();
        helper.name = "reduce__f16".into();
        helper.arrays = vec![array(
            "scratch",
            Type::Scalar(crate::types::ScalarType::F16),
            1024,
        )];
        k.device_fns.push(helper);
        k.body.arrays.push(typed::ArrayInfo {
            space: typed::ArraySpace::Local,
            ..array("acc", Type::F32, 1 << 20)
        });
        k
    }

    #[test]
    fn shared_memory_over_the_opt_in_cap_is_refused_naming_the_arrays() {
        // 2 × 8192 × 4 + 2048 = 67584 bytes: over the 48 KiB static limit, dynamic, fits.
        let limit = GENERIC_MAX_SHARED;
        check_shared(&with_shared(&[8192, 8192]), limit, "every GPU").unwrap();
        // 2 × 15360 × 4 + 2048 = 124928 bytes: over 99 KiB.
        let err = check_shared(&with_shared(&[15360, 15360]), limit, "every GPU").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kernel `axpy` (config BM=128) uses 124928 bytes of shared memory"),
            "{msg}"
        );
        assert!(
            msg.contains("the limit is 101376 bytes per block on every GPU"),
            "{msg}"
        );
        assert!(msg.contains("tile0: [f32; 15360] = 61440 B"), "{msg}");
        assert!(
            msg.contains("reduce__f16::scratch: [f16; 1024] = 2048 B"),
            "{msg}"
        );
        assert!(!msg.contains("acc"), "local arrays are not shared: {msg}");
        let (mut y, x) = (host(Type::F32, 4), host(Type::F32, 4));
        let args = [Arg::Slice(&x), Arg::SliceMut(&mut y), Arg::value(1.0f32)];
        let dims = LaunchDims::linear(1, 4);
        let k = with_shared(&[15360, 15360]);
        let launch = check_launch(&k, &dims, &args, &generic());
        assert!(matches!(launch, Err(DeviceError::SharedMemory { .. })));
        let fits = with_shared(&[8192, 8192]);
        check_launch(&fits, &dims, &args, &generic()).unwrap();
    }

    #[test]
    fn alignment_padding_counts_against_the_cap() {
        let entry_only = |lens: &[u32]| {
            let mut k = with_shared(lens);
            k.device_fns.clear();
            k
        };
        // tile0 takes 4 bytes, tile1 starts at 16: 16 + 101360 = 101376, exactly the cap.
        check_shared(
            &entry_only(&[1, 101360 / 4]),
            GENERIC_MAX_SHARED,
            "every GPU",
        )
        .unwrap();
        // 4 bytes more is over, though the arrays alone (101368 bytes) would fit.
        let msg = check_shared(
            &entry_only(&[1, 101364 / 4]),
            GENERIC_MAX_SHARED,
            "every GPU",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("uses 101380 bytes"), "{msg}");
    }

    #[test]
    fn a_kernel_newer_than_the_device_is_refused() {
        use crate::typed::{Expr, ExprKind, Intrinsic, Stmt, StmtKind};
        use crate::types::{ScalarType, Type};
        let mut k = axpy(None);
        let frag = |s: ScalarType, n: u8| Expr::lit(Type::Vector(s, n), 0);
        let mma = Expr {
            kind: ExprKind::Intrinsic(
                Intrinsic::MmaF16F32,
                vec![
                    frag(ScalarType::U32, 4),
                    frag(ScalarType::U32, 2),
                    frag(ScalarType::F32, 4),
                ],
            ),
            ty: Type::Vector(ScalarType::F32, 4),
        };
        k.body.body.push(Stmt {
            kind: StmtKind::Eval(mma),
            span: Default::default(),
        });
        let old = crate::nvrtc::Arch::new(7, 5);
        let msg = check_arch(&k, old, "Tesla T4").unwrap_err().to_string();
        assert!(msg.contains("`mma_m16n8k16_f16_f32`"), "{msg}");
        assert!(msg.contains("needs sm_80"), "{msg}");
        assert!(msg.contains("Tesla T4 (sm_75)"), "{msg}");
        check_arch(&k, crate::nvrtc::Arch::SM80, "A100").unwrap();
        check_arch(&axpy(None), old, "Tesla T4").unwrap();
    }
}
