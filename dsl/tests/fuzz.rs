//! Fuzzing the typed IR with random well-typed, race-free kernels (`fuzz/gen.rs`).
//!
//! Properties, per kernel:
//! (a) the interpreter never panics, and a kernel the generator guarantees to be valid runs
//!     without error;
//! (b) the generated CUDA C compiles with NVRTC for sm_90 (skipped with a message when NVRTC
//!     is not installed, unless `WARPFORGE_REQUIRE_NVRTC=1`);
//! (c) the outputs do not depend on how blocks are scheduled: the parallel and the
//!     sequential interpreter agree bit for bit;
//! (d) the generated CUDA C itself, compiled by the host C++ compiler with the host harness
//!     (`dsl/host/`), gives the interpreter's outputs bit for bit (the fuzz kernels use
//!     integer arithmetic, f32 `+ - * /`, `abs`, `floor`, `sqrt`, `fma`, `min`/`max`, casts,
//!     shuffles and ballots, all exact in the interpreter's model). Skipped with a message
//!     when no C++ compiler is installed, unless `WARPFORGE_REQUIRE_NVRTC=1` (CI).
//!     `WARPFORGE_FUZZ_HOST_CASES` bounds how many of the cases run it (default 120: each
//!     costs a C++ compile; `scripts/fuzz` runs it on every case).
//!
//! `WARPFORGE_FUZZ_CASES` sets the number of kernels (default 200, what CI runs);
//! `WARPFORGE_FUZZ_SEED` the first seed (default fixed, so CI is reproducible).
//! `scripts/fuzz [CASES]` runs a longer campaign. A failure prints its seed and source;
//! rerun it alone with `WARPFORGE_FUZZ_SEED=<seed> WARPFORGE_FUZZ_CASES=1`.

#[path = "fuzz/expr.rs"]
mod expr;
#[path = "fuzz/gen.rs"]
mod gen;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use warpforge_dsl::backend::{Arg, LaunchDims, RawBuffer, Storage};
use warpforge_dsl::codegen;
use warpforge_dsl::host::{self, HostError, HostOptions};
use warpforge_dsl::interp::{self, InterpOptions};
use warpforge_dsl::nvrtc::{self, Arch, CompileOptions, NvrtcError};
use warpforge_dsl::typed::Kernel;
use warpforge_dsl::types::Type;

const DEFAULT_CASES: u64 = 200;
const DEFAULT_HOST_CASES: u64 = 120;
const DEFAULT_SEED: u64 = 0x5eed_f022;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn buffer(elem: Type, len: usize, bytes: Vec<u8>) -> RawBuffer {
    RawBuffer {
        elem,
        len,
        storage: Storage::Host(bytes),
    }
}

/// Inputs derived from the seed: 37 i32 values and 23 f32 values (odd lengths, so `% len`
/// indexing is exercised).
fn inputs(seed: u64) -> (RawBuffer, RawBuffer) {
    let mut rng = gen::Rng::new(seed ^ 0xa5a5);
    let ints: Vec<u8> = (0..37)
        .flat_map(|_| (rng.next() as i32 >> rng.below(24)).to_le_bytes())
        .collect();
    let floats: Vec<u8> = (0..23)
        .flat_map(|_| ((rng.below(4001) as f32 - 2000.0) / 16.0).to_le_bytes())
        .collect();
    (buffer(Type::I32, 37, ints), buffer(Type::F32, 23, floats))
}

/// Both outputs as bytes, or the interpreter's error message.
fn run(
    kernel: &Kernel,
    dims: &LaunchDims,
    seed: u64,
    options: &InterpOptions,
) -> Result<Vec<u8>, String> {
    run_on(dims, seed, |args| {
        interp::run(kernel, dims, args, options)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// Both outputs as bytes from the host harness, or its error message.
fn run_host(kernel: &Kernel, dims: &LaunchDims, seed: u64) -> Result<Vec<u8>, String> {
    run_on(dims, seed, |args| {
        host::run(kernel, dims, args, &HostOptions::default()).map_err(|e| e.to_string())
    })
}

fn run_on(
    dims: &LaunchDims,
    seed: u64,
    launch: impl FnOnce(&mut [Arg]) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let threads = dims.blocks() as usize * dims.threads_per_block() as usize;
    let (in_i, in_f) = inputs(seed);
    let mut out_i = buffer(Type::I32, threads, vec![0; threads * 4]);
    let mut out_f = buffer(Type::F32, threads, vec![0; threads * 4]);
    let mut args = [
        Arg::Slice(&in_i),
        Arg::Slice(&in_f),
        Arg::SliceMut(&mut out_i),
        Arg::SliceMut(&mut out_f),
    ];
    launch(&mut args)?;
    let mut bytes = out_i.host_bytes().expect("host buffer").to_vec();
    bytes.extend(out_f.host_bytes().expect("host buffer"));
    Ok(bytes)
}

/// What NVRTC can do here: `None` when it is not installed (and not required).
fn nvrtc_available() -> bool {
    match nvrtc::version() {
        Ok(_) => true,
        Err(e @ NvrtcError::NotFound { .. }) => {
            if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("WARPFORGE_REQUIRE_NVRTC=1 but NVRTC is missing: {e}");
            }
            eprintln!("fuzz: NVRTC not found, skipping property (b) (compiles): {e}");
            false
        }
        Err(e) => panic!("NVRTC failed to load: {e}"),
    }
}

/// Whether the host C++ compiler is there (property (d)); a skip says why, and CI fails.
fn host_available() -> bool {
    match host::Compiler::find() {
        Ok(_) => true,
        Err(e @ HostError::NoCompiler { .. }) => {
            if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("WARPFORGE_REQUIRE_NVRTC=1 but the host C++ compiler is missing: {e}");
            }
            eprintln!("fuzz: skipping property (d) (host harness): {e}");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

/// The first differing output element of two runs (`out_i` then `out_f`, each `threads`
/// long), described with both values and the generated line that stores it.
fn first_difference(interp: &[u8], host: &[u8], source: &str) -> String {
    let at = (0..interp.len() / 4)
        .find(|i| interp[i * 4..i * 4 + 4] != host[i * 4..i * 4 + 4])
        .unwrap_or(0);
    let word = |b: &[u8]| u32::from_le_bytes(b[at * 4..at * 4 + 4].try_into().unwrap());
    let (a, b) = (word(interp), word(host));
    let threads = interp.len() / 8;
    let (name, index, shown) = if at < threads {
        (
            "out_i",
            at,
            format!("interpreter {} host {}", a as i32, b as i32),
        )
    } else {
        (
            "out_f",
            at - threads,
            format!(
                "interpreter {:e} ({a:#010x}) host {:e} ({b:#010x})",
                f32::from_bits(a),
                f32::from_bits(b)
            ),
        )
    };
    let line = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with(&format!("{name}[")))
        .map_or(String::new(), |(n, l)| {
            format!("; generated line {}: {}", n + 1, l.trim())
        });
    format!("the host harness differs from the interpreter at {name}[{index}]: {shown}{line}")
}

/// Checks the properties on the kernel of `seed`; the failure, with what is needed to
/// reproduce it.
fn check(seed: u64, compile: bool, on_host: bool) -> Result<(), String> {
    let case = gen::generate(seed);
    let dims = LaunchDims::linear(case.grid, case.block);
    let (source, map) = codegen::cuda_source_with_map(&case.kernel);
    let fail = |what: String| format!("seed {seed}: {what}\n--- CUDA C ---\n{source}");
    let attempt = |options: InterpOptions| {
        catch_unwind(AssertUnwindSafe(|| {
            run(&case.kernel, &dims, seed, &options)
        }))
        .map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            fail(format!(
                "the interpreter panicked: {}",
                msg.unwrap_or_default()
            ))
        })
    };
    let parallel = attempt(InterpOptions::default())?;
    // Sequential and without the sanitizer: its checks must not change results.
    let sequential = attempt(InterpOptions {
        parallel: false,
        ..InterpOptions::fast()
    })?;
    let expected = match (parallel, sequential) {
        (Ok(p), Ok(s)) if p == s => p,
        (Ok(_), Ok(_)) => return Err(fail("parallel and sequential outputs differ".into())),
        (Err(e), _) | (_, Err(e)) => {
            return Err(fail(format!("the interpreter refused a valid kernel: {e}")))
        }
    };
    if on_host {
        let got = run_host(&case.kernel, &dims, seed)
            .map_err(|e| fail(format!("the host harness failed: {e}")))?;
        if got != expected {
            return Err(fail(format!(
                "grid {} x block {}: {}",
                case.grid,
                case.block,
                first_difference(&expected, &got, &source)
            )));
        }
    }
    if compile {
        nvrtc::compile(&source, Arch::SM90, &CompileOptions::default())
            .map_err(|e| fail(format!("NVRTC: {}", map.annotate(e))))?;
    }
    Ok(())
}

#[test]
fn random_kernels_interpret_compile_and_do_not_depend_on_block_order() {
    let cases = env_u64("WARPFORGE_FUZZ_CASES", DEFAULT_CASES);
    let first = env_u64("WARPFORGE_FUZZ_SEED", DEFAULT_SEED);
    let compile = nvrtc_available();
    let host_cases = if host_available() {
        env_u64("WARPFORGE_FUZZ_HOST_CASES", DEFAULT_HOST_CASES).min(cases)
    } else {
        0
    };
    let start = Instant::now();
    let failures: Vec<String> = (first..first + cases)
        .filter_map(|seed| check(seed, compile, seed < first + host_cases).err())
        .collect();
    // Written to stderr directly, not through `println!`, so that it shows in CI's log even
    // though the test harness captures the output of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz: {cases} cases in {:.1} s (seeds {first}..{}, NVRTC {}, host harness on {host_cases})",
        start.elapsed().as_secs_f64(),
        first + cases,
        if compile { "on" } else { "skipped" }
    );
    if let Some(first_failure) = failures.first() {
        panic!(
            "{} of {cases} cases failed; the first:\n{first_failure}",
            failures.len()
        );
    }
}

/// The generator itself: deterministic per seed, and its kernels vary.
#[test]
fn generator_is_deterministic_and_varied() {
    let a = codegen::cuda_source(&gen::generate(7).kernel);
    assert_eq!(a, codegen::cuda_source(&gen::generate(7).kernel));
    let distinct: std::collections::HashSet<String> = (0..20)
        .map(|s| codegen::cuda_source(&gen::generate(s).kernel))
        .collect();
    assert_eq!(distinct.len(), 20);
    let all: String = distinct.into_iter().collect();
    for feature in ["__syncthreads", "__shfl", "for (", "while (", "if (", "% "] {
        assert!(all.contains(feature), "no kernel uses `{feature}`");
    }
}
