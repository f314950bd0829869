//! `warpforge compile KERNEL --out DIR`: the exported files and manifest, read back and
//! checked against the kernel's definition, and a C++ launcher written from the manifest
//! alone compiled with g++ against the CUDA driver API (no GPU, no link). Needs NVRTC:
//! without it the tests say why they skip (and fail under WARPFORGE_REQUIRE_NVRTC=1).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use warpforge_dsl::nvrtc;
use warpforge_dsl::typed::ParamKind;

fn warpforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .args(args)
        .env("WARPFORGE_CACHE_DIR", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run warpforge")
}

fn nvrtc_or_skip(test: &str) -> bool {
    match nvrtc::version() {
        Ok(_) => true,
        Err(e) if std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_some() => {
            panic!("NVRTC is required here (WARPFORGE_REQUIRE_NVRTC is set): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: NVRTC not found: {e}");
            false
        }
    }
}

/// Runs the export of `kernel` for `archs` into a fresh directory; returns it and the
/// manifest.
fn export(kernel: &str, archs: &[&str]) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "compile",
        kernel,
        "--out",
        dir.path().to_str().unwrap(),
        "--json",
    ];
    for arch in archs {
        args.extend(["--arch", arch]);
    }
    let o = warpforge(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let all: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    let manifest = all[0].clone();
    let symbol = manifest["symbol"].as_str().unwrap();
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{symbol}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, manifest, "the printed manifest is the written one");
    (dir, manifest)
}

#[test]
fn the_manifest_matches_the_kernels_definition() {
    if !nvrtc_or_skip("the_manifest_matches_the_kernels_definition") {
        return;
    }
    let name = "gemm_tc_nt_f16_f32";
    let (dir, m) = export(name, &["sm_80", "sm_90"]);
    let kernel = warpforge_kernels::library()
        .into_iter()
        .find(|k| k.name() == name)
        .unwrap();
    let config = kernel.def().space.default_config();
    let typed = warpforge_dsl::resolve::specialize(kernel.def(), &config).unwrap();
    assert_eq!(m["kernel"], name);
    assert_eq!(m["symbol"], typed.symbol.as_str());
    for (k, v) in &config.values {
        assert_eq!(m["config"][k], *v, "config {k}");
    }
    // Each slice is a pointer then a u32 length; values by their C type and size.
    let params = m["params"].as_array().unwrap();
    let mut i = 0;
    for p in &typed.body.params {
        match p.kind {
            ParamKind::Slice { elem, mutable } => {
                assert_eq!(params[i]["name"], p.name.as_str());
                assert_eq!(params[i]["kind"], "pointer");
                assert_eq!(params[i]["mutable"], mutable);
                assert_eq!(params[i]["elem_bytes"], elem.size_bytes());
                let c_type = params[i]["c_type"].as_str().unwrap();
                assert_eq!(c_type.starts_with("const "), !mutable, "{c_type}");
                assert_eq!(params[i + 1]["kind"], "length");
                assert_eq!(params[i + 1]["c_type"], "unsigned int");
                i += 2;
            }
            ParamKind::Value { ty, .. } => {
                assert_eq!(params[i]["name"], p.name.as_str());
                assert_eq!(params[i]["kind"], "value");
                assert_eq!(params[i]["bytes"], ty.size_bytes());
                i += 1;
            }
        }
    }
    assert_eq!(i, params.len(), "no extra parameters");
    let dynamic = warpforge_dsl::codegen::dynamic_shared_bytes(&typed);
    assert_eq!(m["dynamic_shared_bytes"], dynamic);
    assert_eq!(m["dynamic_shared_opt_in"], dynamic > 48 * 1024);
    assert_eq!(m["block"], serde_json::json!(typed.block_dim));
    // The files: the source, and per arch a PTX whose entry is the symbol and an ELF cubin.
    let dir = dir.path();
    let source = std::fs::read_to_string(dir.join(m["source"].as_str().unwrap())).unwrap();
    assert!(source.contains("extern \"C\" __global__"), "{source}");
    assert!(source.contains(&typed.symbol), "{source}");
    let images = m["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for image in images {
        let ptx = std::fs::read_to_string(dir.join(image["ptx"].as_str().unwrap())).unwrap();
        assert!(
            ptx.contains(&format!(".entry {}", typed.symbol)),
            "{}",
            image["arch"]
        );
        let cubin = std::fs::read(dir.join(image["cubin"].as_str().unwrap())).unwrap();
        assert_eq!(&cubin[..4], b"\x7fELF");
        assert!(image["registers"].as_u64().unwrap() > 0);
    }
    compile_cpp_launcher(&m, dir);
}

#[test]
fn archs_below_the_kernels_minimum_are_left_out() {
    if !nvrtc_or_skip("archs_below_the_kernels_minimum_are_left_out") {
        return;
    }
    let (_dir, m) = export("fp8_gemm_e4m3_f32", &["sm_80", "sm_90"]);
    assert_eq!(m["requires_arch"], "sm_89");
    assert_eq!(
        m["requires_intrinsic"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );
    assert_eq!(m["min_arch"], "sm_90");
    let archs: Vec<_> = m["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["arch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(archs, ["sm_90"]);
}

/// A C++ launcher generated from the manifest alone: loads the cubin, opts into the dynamic
/// shared memory when the manifest says so, and passes one argument per C parameter.
/// Compiled (not linked, not run) with g++ against the toolkit's `cuda.h`.
fn compile_cpp_launcher(m: &Value, dir: &Path) {
    let Some(include) = nvrtc::toolkit()
        .ok()
        .map(|t| t.include.clone())
        .filter(|i| i.join("cuda.h").exists())
    else {
        eprintln!("SKIPPED the C++ launcher: no cuda.h in the toolkit's include directory");
        return;
    };
    if Command::new("g++").arg("--version").output().is_err() {
        eprintln!("SKIPPED the C++ launcher: no g++");
        return;
    }
    let mut decls = String::new();
    let mut args = Vec::new();
    for (i, p) in m["params"].as_array().unwrap().iter().enumerate() {
        let ty = match p["kind"].as_str().unwrap() {
            "pointer" => "CUdeviceptr".to_string(),
            "length" => "unsigned int".to_string(),
            _ => match p["bytes"].as_u64().unwrap() {
                1 => "unsigned char",
                2 => "unsigned short",
                4 => "unsigned int",
                _ => "unsigned long long",
            }
            .to_string(),
        };
        decls += &format!("    {ty} a{i} = 0; // {} ({})\n", p["name"], p["c_type"]);
        args.push(format!("&a{i}"));
    }
    let block = m["block"]
        .as_array()
        .map(|b| format!("{}, {}, {}", b[0], b[1], b[2]))
        .unwrap_or_else(|| "128, 1, 1".into());
    let image = &m["images"][0];
    let stub = format!(
        r#"#include <cuda.h>
// Launches {symbol} from {cubin} with the manifest's ABI (generated by the export test).
CUresult launch(CUstream stream, unsigned grid_x) {{
    CUmodule module;
    CUfunction f;
    CUresult r = cuModuleLoad(&module, "{cubin}");
    if (r != CUDA_SUCCESS) return r;
    if ((r = cuModuleGetFunction(&f, module, "{symbol}")) != CUDA_SUCCESS) return r;
    const unsigned dynamic = {dynamic};
    if ({opt_in}) {{
        r = cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamic);
        if (r != CUDA_SUCCESS) return r;
    }}
{decls}    void* params[] = {{ {args} }};
    return cuLaunchKernel(f, grid_x, 1, 1, {block}, dynamic, stream, params, nullptr);
}}
"#,
        symbol = m["symbol"].as_str().unwrap(),
        cubin = image["cubin"].as_str().unwrap(),
        dynamic = m["dynamic_shared_bytes"],
        opt_in = m["dynamic_shared_opt_in"],
        args = args.join(", "),
    );
    let path = dir.join("launch.cpp");
    std::fs::write(&path, stub).unwrap();
    let o = Command::new("g++")
        .args(["-std=c++17", "-Wall", "-Werror", "-c", "-o"])
        .arg(dir.join("launch.o"))
        .arg("-I")
        .arg(&include)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
