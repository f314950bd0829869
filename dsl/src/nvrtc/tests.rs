//! Tests that run the real NVRTC (from the `.venv` wheels here and in CI).

use super::*;

const KERNEL: &str = r#"
#include <cuda_fp16.h>
extern "C" __global__ void __launch_bounds__(256) scale(const __half* x, unsigned n, float* y, float a) {
    __shared__ float tile[256];
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? __half2float(x[i]) : 0.0f;
    __syncthreads();
    if (i < n) {
        y[i] = a * tile[255 - threadIdx.x];
    }
}
"#;

/// NVRTC, or `None` after printing why the test skips.
fn nvrtc_or_skip(test: &str) -> Option<&'static Toolkit> {
    match toolkit() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("SKIP {test}: NVRTC is not available here:\n{e}");
            None
        }
    }
}

#[test]
fn compiles_for_sm80_sm89_sm90() {
    if nvrtc_or_skip("compiles_for_sm80_sm89_sm90").is_none() {
        return;
    }
    for arch in [Arch::SM80, Arch::SM89, Arch::SM90] {
        let c = compile(KERNEL, arch, &CompileOptions::default()).unwrap();
        assert_eq!(&c.cubin[..4], b"\x7fELF", "{arch}: cubin is an ELF file");
        assert!(c.ptx.contains(".entry scale"), "{arch}: PTX has the entry");
        assert!(
            c.resources.registers > 0,
            "{arch}: {:?}\n{}",
            c.resources,
            c.log
        );
        assert_eq!(c.resources.shared_bytes, 1024, "{arch}: 256 floats of smem");
        assert_eq!(c.resources.barriers, 1, "{arch}");
        assert!(!c.resources.spills());
        assert_eq!(c.functions.len(), 1);
        assert_eq!(c.functions[0].name, "scale");
        assert!(c.nvrtc_version.0 >= 12);
        assert!(!c.cached);
    }
}

#[test]
fn options_reach_nvrtc() {
    if nvrtc_or_skip("options_reach_nvrtc").is_none() {
        return;
    }
    let opts = CompileOptions {
        extra: vec!["-DSCALE_TWICE".into()],
        ..CompileOptions::default()
    };
    let src = "#ifndef SCALE_TWICE\n#error needs the define\n#endif\n\
               extern \"C\" __global__ void k(float* y) { y[0] = 2.0f; }\n";
    assert!(compile(src, Arch::SM90, &opts).is_ok());
    let err = compile(src, Arch::SM90, &CompileOptions::default()).unwrap_err();
    assert!(err.to_string().contains("needs the define"), "{err}");
}

#[test]
fn compile_error_shows_log_and_numbered_source() {
    if nvrtc_or_skip("compile_error_shows_log_and_numbered_source").is_none() {
        return;
    }
    let mut src: String = (1..=30).map(|i| format!("// filler {i}\n")).collect();
    src.push_str(
        "extern \"C\" __global__ void broken(float* y) {\n    y[0] = undefined_name;\n}\n",
    );
    let err = compile(&src, Arch::SM90, &CompileOptions::default()).unwrap_err();
    let NvrtcError::Compile {
        log,
        numbered_source,
        ..
    } = &err
    else {
        panic!("expected a compile error, got {err}")
    };
    assert!(
        log.contains("kernel.cu(32)") && log.contains("undefined_name"),
        "{log}"
    );
    assert!(
        numbered_source.contains(">32 |     y[0] = undefined_name;"),
        "{numbered_source}"
    );
    assert!(numbered_source.contains(" 27 | // filler 27"));
    assert!(
        !numbered_source.contains("filler 26\n"),
        "only ±5 lines: {numbered_source}"
    );
    let shown = err.to_string();
    assert!(shown.find("undefined_name").unwrap() < shown.find("--- generated source").unwrap());
}

#[test]
fn unsupported_arch_lists_supported_ones() {
    if nvrtc_or_skip("unsupported_arch_lists_supported_ones").is_none() {
        return;
    }
    let err = compile(KERNEL, Arch::new(9, 9), &CompileOptions::default()).unwrap_err();
    let NvrtcError::UnsupportedArch { arch, supported } = &err else {
        panic!("expected UnsupportedArch, got {err}")
    };
    assert_eq!(*arch, Arch::new(9, 9));
    assert!(supported.contains(&Arch::SM90));
    assert!(err.to_string().contains("sm_99") && err.to_string().contains("sm_80"));
}

#[test]
fn second_cache_on_same_dir_hits_disk() {
    if nvrtc_or_skip("second_cache_on_same_dir_hits_disk").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = CompileOptions::default();
    let first = CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM89, &opts)
        .unwrap();
    assert!(!first.cached);
    let cache = CompileCache::at(dir.path());
    let second = cache.compile(KERNEL, Arch::SM89, &opts).unwrap();
    assert!(
        second.cached,
        "a fresh cache on the same directory reads the entry"
    );
    assert_eq!(second.cubin, first.cubin);
    assert_eq!(second.ptx, first.ptx);
    assert_eq!(second.resources, first.resources);
    assert!(
        cache.compile(KERNEL, Arch::SM89, &opts).unwrap().cached,
        "memory hit"
    );
    let entries = entry_files(dir.path());
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary files left: {entries:?}"
    );
}

#[test]
fn corrupt_entry_is_recompiled_and_replaced() {
    if nvrtc_or_skip("corrupt_entry_is_recompiled_and_replaced").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = CompileOptions::default();
    let good = CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM80, &opts)
        .unwrap();
    let entry = entry_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let again = CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM80, &opts)
        .unwrap();
    assert!(!again.cached, "a corrupt entry is not used");
    assert_eq!(again.cubin, good.cubin);
    std::fs::write(&entry, &bytes[..100]).unwrap();
    let truncated = CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM80, &opts)
        .unwrap();
    assert!(!truncated.cached, "a truncated entry is not used");
    let fixed = CompileCache::at(dir.path())
        .compile(KERNEL, Arch::SM80, &opts)
        .unwrap();
    assert!(
        fixed.cached,
        "the recompiled entry replaced the corrupt one"
    );
}

fn entry_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}
