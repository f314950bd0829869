//! The shared-memory layout and the carved (dynamic) arrays in the generated C.

use super::*;
use crate::codegen::cuda_source;
use crate::codegen::nvrtc_check::Nvrtc;
use crate::codegen::test_kernels::block_reduce;
use crate::test_ir::*;
use crate::typed::{Builtin, Dim};
use crate::types::{ScalarType, Type};

/// `stash(v) -> f32`: a device function with its own shared array of 32 f32.
fn stash() -> Function {
    let mut f = FnBuilder::default();
    let v = f.value_param("v", Type::F32);
    let (scratch, decl) = f.array("scratch", Type::F32, 32, ArraySpace::Shared);
    let lane_id = builtin(Builtin::LaneId);
    let body = vec![
        decl,
        scratch.store(lane_id.clone(), v.e()),
        ret(Some(scratch.at(lane_id))),
    ];
    f.finish("stash", Some(Type::F32), body)
}

/// 64 KiB and more of shared arrays: `flags` (12 bytes), `stage` (48 KiB of f32) at 16,
/// `tile` (16 KiB of f16) at 49168, and `stash::scratch` (128 bytes) at 65552; `acc` is
/// local and takes no shared memory.
fn large_shared() -> Kernel {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::F32, true);
    let (flags, d0) = f.array("flags", Type::U32, 3, ArraySpace::Shared);
    let (stage, d1) = f.array("stage", Type::F32, 12288, ArraySpace::Shared);
    let (acc, d2) = f.array("acc", Type::F32, 4, ArraySpace::Local);
    let (tile, d3) = f.array("tile", ty(ScalarType::F16), 8192, ArraySpace::Shared);
    let t = f.var("t", Type::U32);
    let v = f.var("v", Type::F32);
    let last = u32(12288 - 256);
    let body = vec![
        d0,
        d1,
        d2,
        d3,
        let_(t, tid(Dim::X)),
        stage.store(add(t.e(), last.clone()), cast(t.e(), Type::F32)),
        tile.store(t.e(), cast(t.e(), ty(ScalarType::F16))),
        if_(eq(t.e(), u32(0)), vec![flags.store(u32(2), u32(1))], vec![]),
        acc.store(u32(0), lit(1.0f32)),
        sync(),
        let_(
            v,
            add(stage.at(add(t.e(), last)), cast(tile.at(t.e()), Type::F32)),
        ),
        out.store(
            t.e(),
            add(call(0, vec![val(v.e())], Type::F32), acc.at(u32(0))),
        ),
    ];
    Kernel {
        symbol: "large_shared__T256".into(),
        block_dim: Some([256, 1, 1]),
        ..kernel(f.finish("large_shared", None, body), vec![stash()])
    }
}

#[test]
fn arrays_are_laid_out_at_16_byte_offsets_entry_first() {
    let layout = SharedLayout::of(&large_shared());
    let at = |func: Option<u32>, array: u32| layout.offset(func.map(FnId), ArrayId(array));
    assert_eq!(at(None, 0), Some(0));
    assert_eq!(at(None, 1), Some(16));
    assert_eq!(at(None, 2), None, "acc is local");
    assert_eq!(at(None, 3), Some(16 + 49152));
    assert_eq!(at(Some(0), 0), Some(16 + 49152 + 16384));
    assert_eq!(layout.bytes, 65552 + 128);
    assert!(layout.is_dynamic());
    assert_eq!(dynamic_shared_bytes(&large_shared()), 65680);
    assert_eq!(shared_bytes(&large_shared()), 65680);
}

#[test]
fn up_to_48_kib_stays_static() {
    let small = block_reduce();
    assert_eq!(shared_bytes(&small), 32);
    assert_eq!(dynamic_shared_bytes(&small), 0);
    let src = cuda_source(&small);
    assert!(src.contains("__shared__ float partial[8];"), "{src}");
    assert!(!src.contains(SMEM), "{src}");
}

#[test]
fn over_48_kib_arrays_are_carved_from_one_dynamic_buffer() {
    let src = cuda_source(&large_shared());
    for line in [
        "// 65680 bytes of shared arrays: over the 48 KiB static limit, so carved from \
         dynamic shared memory",
        "extern __shared__ __align__(16) unsigned char wf_smem[];",
        "    unsigned int* flags = reinterpret_cast<unsigned int*>(wf_smem + 0);",
        "    float* stage = reinterpret_cast<float*>(wf_smem + 16);",
        "    float acc[4] = {};",
        "    __half* tile = reinterpret_cast<__half*>(wf_smem + 49168);",
        "    float* scratch = reinterpret_cast<float*>(wf_smem + 65552);",
    ] {
        assert!(src.lines().any(|l| l == line), "missing `{line}`:\n{src}");
    }
    assert!(!src.contains("__shared__ float"), "{src}");
    // Declared once, before the device function that uses it.
    assert_eq!(src.matches("wf_smem[]").count(), 1, "{src}");
    assert!(src.find("wf_smem[]") < src.find("stash("), "{src}");
}

#[test]
fn the_carved_kernel_compiles_with_nvrtc_to_extern_shared() {
    let nvrtc = match Nvrtc::load() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("skipping the NVRTC compile of a 64 KiB shared kernel: {why}");
            return;
        }
    };
    let src = cuda_source(&large_shared());
    for arch in ["sm_80", "sm_89", "sm_90"] {
        let ptx = nvrtc
            .compile(&src, arch)
            .unwrap_or_else(|log| panic!("{arch}:\n{log}\n--- source ---\n{src}"));
        assert!(
            ptx.lines()
                .any(|l| l.contains(".extern .shared") && l.contains("wf_smem")),
            "{arch}: no `.extern .shared` wf_smem:\n{ptx}"
        );
        assert!(
            !ptx.lines()
                .any(|l| l.trim_start().starts_with(".shared") && l.contains(".b8")),
            "{arch}: a static shared array is left:\n{ptx}"
        );
    }
}
