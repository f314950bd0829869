use super::compile::{build, Artifact, Compiler};
use super::*;
use crate::test_ir::*;
use crate::typed::Dim;
use crate::types::Type;

/// `out[tid] = tid`.
fn identity() -> crate::typed::Kernel {
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let body = vec![out.store(tid(Dim::X), tid(Dim::X))];
    kernel(f.finish("identity", None, body), vec![])
}

#[test]
fn a_missing_compiler_says_how_to_install_one() {
    let err = Compiler::probe(&["/nonexistent/warpforge-cxx".to_string()]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HostError::NoCompiler { .. }), "{msg}");
    assert!(msg.contains("/nonexistent/warpforge-cxx"), "{msg}");
    assert!(msg.contains("apt-get install g++"), "{msg}");
    assert!(msg.contains("WARPFORGE_HOST_CXX"), "{msg}");
}

#[test]
fn the_host_source_is_the_generated_file_behind_the_harness() {
    let kernel = identity();
    let generated = crate::codegen::cuda_source(&kernel);
    let source = host_source(&kernel, &HostOptions::default());
    assert!(source.starts_with("#define WARPFORGE_HOST 1\n#include \"warpforge_host.h\"\n"));
    assert!(
        source.contains(&generated),
        "the generated text is included unchanged"
    );
    assert!(source.contains(&format!("launch_kernel(&{},", kernel.symbol)));
    assert!(!source.contains("warpforge_host_main.h"));
    assert!(host_source(&kernel, &HostOptions::sanitized()).contains("warpforge_host_main.h"));
}

#[test]
fn a_compile_error_shows_the_compiler_log() {
    if let Err(e) = Compiler::find() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let err = build(
        "#include \"warpforge_host.h\"\nint broken( {\n",
        Artifact::Library,
        &HostOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HostError::Compile { .. }), "{msg}");
    assert!(msg.contains("error"), "{msg}");
}

/// The sanitized build turns an out-of-bounds write in the generated C into an error with
/// ASan's report naming the generated line (every buffer is its own allocation of its
/// exact size there).
#[test]
fn the_sanitized_build_reports_an_out_of_bounds_write() {
    if let Err(e) = Compiler::find() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let mut f = FnBuilder::default();
    let out = f.slice_param("out", Type::U32, true);
    let body = vec![out.store(add(tid(Dim::X), u32(1)), tid(Dim::X))];
    let k = kernel(f.finish("past_the_end", None, body), vec![]);
    let mut buf = crate::backend::RawBuffer {
        elem: Type::U32,
        len: 32,
        storage: crate::backend::Storage::Host(vec![0; 32 * 4]),
    };
    let dims = crate::backend::LaunchDims::linear(1, 32);
    let mut args = [crate::backend::Arg::SliceMut(&mut buf)];
    let err = run(&k, &dims, &mut args, &HostOptions::sanitized()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HostError::Sanitizer { .. }), "{msg}");
    assert!(msg.contains("heap-buffer-overflow"), "{msg}");
    assert!(msg.contains("past_the_end.cu:"), "{msg}");
}
