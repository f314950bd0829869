//! T2½: the generated CUDA C of every library kernel, run on the CPU by the host harness
//! (`Device::host()`), against the interpreter on the same inputs, bit for bit; and the
//! whole library's default configs under the sanitized host build (ASan + UBSan on the
//! generated C).
//!
//! Configs: the default plus an even sample of 2 more for the first instance of each generic
//! source (`families()`), the default for the other instances (`WARPFORGE_HOST_CONFIGS=N`
//! samples N more everywhere). Each config costs one C++ compile (cached on disk).
//!
//! Where the interpreter's model is exact (everything but the inside of `mma`), the outputs
//! must be equal bit for bit. `mma.sync` leaves its accumulation order and rounding to the
//! hardware: both sides sum exact products in f64 and round once, the interpreter plainly,
//! the harness with compensation, so they may differ where the f64 sum is inexact — within
//! `MMA_BOUND` of the result's magnitude (relative, after rounding to the output type).
//!
//! Without a C++ compiler both tests say so and pass, unless `WARPFORGE_REQUIRE_NVRTC=1` (CI).

use warpforge::dsl::host::{HostError, HostOptions};
use warpforge::dsl::Config;
use warpforge::kernel;
use warpforge::kernels::check::Problem;
use warpforge::kernels::{families, Kernel};
use warpforge::prelude::*;

/// Relative difference allowed in kernels that use `mma.sync`, where the ISA leaves
/// accumulation unspecified: one unit in the last place of a bf16 output (2^-7), since an
/// f32 sum one ulp apart can round to neighbouring outputs.
const MMA_BOUND: f64 = 1.0 / 128.0;

fn host_device(options: HostOptions) -> Option<Device> {
    match Device::host_with(options) {
        Ok(d) => Some(d),
        Err(e @ HostError::NoCompiler { .. }) => {
            if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("WARPFORGE_REQUIRE_NVRTC=1 but the host backend is unavailable: {e}");
            }
            eprintln!("skipping the host backend tests: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn uses_mma(k: &Kernel) -> bool {
    k.name().contains("gemm_tc") || k.name().contains("fp8_gemm")
}

/// The first element where `host` differs from `interp` beyond what the kernel allows.
fn first_difference(k: &Kernel, interp: &[f32], host: &[f32]) -> Option<String> {
    if interp.len() != host.len() {
        return Some(format!("{} vs {} elements", interp.len(), host.len()));
    }
    let bound = if uses_mma(k) { MMA_BOUND } else { 0.0 };
    interp
        .iter()
        .zip(host)
        .enumerate()
        .find_map(|(i, (&a, &b))| {
            let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let close = bound > 0.0
                && ((a as f64) - (b as f64)).abs() <= bound * (a.abs().max(b.abs()) as f64);
            (!same && !close).then(|| {
                format!(
                "first differing index {i}: interpreter {a:e} ({:#010x}), host {b:e} ({:#010x})",
                a.to_bits(),
                b.to_bits()
            )
            })
        })
}

fn jobs() -> Vec<(Kernel, Vec<Config>)> {
    let extra: usize = std::env::var("WARPFORGE_HOST_CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    for family in families() {
        for (i, k) in family.into_iter().enumerate() {
            let n = if i == 0 { extra.max(2) } else { extra };
            let mut configs = vec![k.default_config()];
            let sampled = if n == 0 {
                Vec::new()
            } else {
                k.sample_configs(n)
            };
            for c in sampled {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
            out.push((k, configs));
        }
    }
    out
}

/// Runs `work` over the jobs on two threads; the failures.
fn in_parallel(
    jobs: &[(Kernel, Vec<Config>)],
    work: impl Fn(&Kernel, &Config) -> Result<usize, String> + Sync,
) -> (usize, Vec<String>) {
    let workers = 2;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let work = &work;
                s.spawn(move || {
                    let (mut runs, mut bad) = (0, Vec::new());
                    for (k, configs) in jobs.iter().skip(w).step_by(workers) {
                        for config in configs {
                            match work(k, config) {
                                Ok(n) => runs += n,
                                Err(e) => bad.push(e),
                            }
                        }
                    }
                    (runs, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .fold((0, Vec::new()), |(r, mut b), (r2, b2)| {
                b.extend(b2);
                (r + r2, b)
            })
    })
}

#[test]
fn library_on_the_host_harness_matches_the_interpreter() {
    let Some(host) = host_device(HostOptions::default()) else {
        return;
    };
    let cpu = Device::cpu();
    let jobs = jobs();
    let configs: usize = jobs.iter().map(|(_, c)| c.len()).sum();
    let start = std::time::Instant::now();
    let within_bound = std::sync::atomic::AtomicUsize::new(0);
    let (runs, failures) = in_parallel(&jobs, |k, config| {
        let mut runs = 0;
        // The default runs every problem (the case sets layout tunables such as attention's
        // HEAD_DIM from the problem); a sampled config, the problems laid out as it is (an
        // override could break its constraints).
        let default = k.default_config();
        let runs_on = |p: &Problem| *config == default || k.admits(config, p);
        for problem in k.problems().into_iter().filter(runs_on) {
            let at = format!("{} {config} {}", k.name(), problem.name);
            let want = k
                .output(&cpu, config, &problem)
                .map_err(|e| format!("{at}: interpreter: {e}"))?;
            let got = k
                .output(&host, config, &problem)
                .map_err(|e| format!("{at}: host: {e}"))?;
            if let Some(diff) = first_difference(k, &want, &got) {
                return Err(format!("{at}: {diff}"));
            }
            let inexact = want
                .iter()
                .zip(&got)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            within_bound.fetch_add(inexact, std::sync::atomic::Ordering::Relaxed);
            runs += 1;
        }
        Ok(runs)
    });
    eprintln!(
        "host vs interpreter: {} kernels, {configs} configs, {runs} runs in {:.1} s; {} \
         elements not bit-identical (within the mma bound)",
        jobs.len(),
        start.elapsed().as_secs_f64(),
        within_bound.into_inner()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn library_default_configs_run_clean_under_asan_and_ubsan() {
    let Some(host) = host_device(HostOptions::sanitized()) else {
        return;
    };
    let jobs: Vec<(Kernel, Vec<Config>)> = families()
        .into_iter()
        .flatten()
        .map(|k| {
            let c = k.default_config();
            (k, vec![c])
        })
        .collect();
    let start = std::time::Instant::now();
    let (runs, failures) = in_parallel(&jobs, |k, config| {
        let mut runs = 0;
        for problem in k.problems() {
            let report = k
                .check(&host, config, &problem)
                .map_err(|e| format!("{} {config} {}: {e}", k.name(), problem.name))?;
            if !report.passed() {
                return Err(format!("{} {config}: {report}", k.name()));
            }
            runs += 1;
        }
        Ok(runs)
    });
    eprintln!(
        "sanitized host build: {} kernels, {runs} runs in {:.1} s",
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Number formats and PTX bit/packed instructions on edge values, through the C the
/// generator prints for them: f16/bf16 arithmetic rounded back, FP8 encodings with
/// saturation, float→int casts that saturate, packed f16x2/bf16x2 ops, lop3, prmt, ex2.
#[kernel(block = (64), tune(UNUSED = [1]))]
fn formats<const UNUSED: u32>(
    a: &[f16],
    b: &[f16],
    bits: &[u32],
    halves: &mut [f16],
    brains: &mut [bf16],
    e4m3: &mut [F8E4M3],
    e5m2: &mut [F8E5M2],
    ints: &mut [i32],
    words: &mut [u32],
    floats: &mut [f32],
) {
    let i = block_idx_x() * 64 + thread_idx_x();
    if i < a.len() {
        let x = a[i];
        let y = b[i];
        let fx = x.to_f32();
        let fy = y.to_f32();
        halves[i * 3] = x + y;
        halves[i * 3 + 1] = x * y;
        halves[i * 3 + 2] = x - y;
        let bx = bf16::from_f32(fx * 3.0);
        let by = bf16::from_f32(fy * 1.0e30);
        brains[i * 2] = bx * by;
        brains[i * 2 + 1] = bx + by;
        e4m3[i * 2] = F8E4M3::from_f32(fx * fy);
        e4m3[i * 2 + 1] = F8E4M3::from_f32(fx * 0.001);
        e5m2[i * 2] = F8E5M2::from_f32(fx * fy);
        e5m2[i * 2 + 1] = F8E5M2::from_f32(fy * 0.0001);
        ints[i * 3] = (fx * fy * 1.0e6) as i32;
        ints[i * 3 + 1] = (fy * 1.0e6) as u32 as i32;
        ints[i * 3 + 2] = (fx * 1.0e20) as i64 as i32;
        let p = bits[i % bits.len()];
        let q = bits[(i + 1) % bits.len()];
        let r = bits[(i + 2) % bits.len()];
        words[i * 8] = fma_f16x2(p, q, r);
        words[i * 8 + 1] = fma_bf16x2(p, q, r);
        words[i * 8 + 2] = add_bf16x2(p, q);
        words[i * 8 + 3] = sub_bf16x2(p, q);
        words[i * 8 + 4] = max_f16x2(p, q);
        words[i * 8 + 5] = min_bf16x2(p, q);
        words[i * 8 + 6] = lop3(p, q, r, 0x96) ^ prmt(p, q, r);
        words[i * 8 + 7] = mul_bf16x2(p, q);
        floats[i * 3] = ex2_approx(fx * 0.25);
        floats[i * 3 + 1] = fx.mul_add(fy, 0.1) + fx.min(fy) - fx.max(-fy);
        floats[i * 3 + 2] = F8E4M3::from_f32(fy).to_f32() + F8E5M2::from_f32(fx).to_f32();
    }
}

/// Whether `bits` of output `name` is a NaN. NaN encodings are compared as "a NaN": the
/// PTX ISA leaves the NaN a conversion produces unspecified (the harness gives CUDA's
/// canonical 0x7fff for f16/bf16 and 0x7f for FP8, the interpreter keeps sign and payload).
fn is_nan(name: &str, bits: u64) -> bool {
    match name {
        "halves" => bits & 0x7c00 == 0x7c00 && bits & 0x3ff != 0,
        "brains" => bits & 0x7f80 == 0x7f80 && bits & 0x7f != 0,
        "e4m3" => bits & 0x7f == 0x7f,
        "e5m2" => bits & 0x7c == 0x7c && bits & 3 != 0,
        "floats" => f32::from_bits(bits as u32).is_nan(),
        _ => false,
    }
}

/// Edge values of f16: zeros, subnormals, the largest finite, ties, NaN, infinities.
fn edge_halves(seed: u16) -> Vec<f16> {
    let mut v: Vec<f16> = [
        0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3c00, 0xbc00, 0x7c00,
        0xfc00, 0x7e00, 0x3555, 0x5bff, 0x1400, 0x2e66, 0xc7ff,
    ]
    .iter()
    .map(|&b| f16::from_bits(b))
    .collect();
    let mut s = seed as u32;
    while v.len() < 150 {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        v.push(f16::from_bits((s >> 8) as u16));
    }
    v
}

#[test]
fn number_formats_and_bit_instructions_match_the_interpreter() {
    let Some(host) = host_device(HostOptions::default()) else {
        return;
    };
    let n = 150;
    let (a, b) = (edge_halves(1), edge_halves(7));
    let mut b = b;
    b.rotate_left(5);
    let bits: Vec<u32> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.to_bits() as u32) << 16 | y.to_bits() as u32)
        .collect();
    let run = |d: &Device| {
        let (ab, bb, wb) = (
            d.upload(&a).unwrap(),
            d.upload(&b).unwrap(),
            d.upload(&bits).unwrap(),
        );
        let mut halves = d.zeros::<f16>(n * 3).unwrap();
        let mut brains = d.zeros::<bf16>(n * 2).unwrap();
        let mut e4 = d.zeros::<F8E4M3>(n * 2).unwrap();
        let mut e5 = d.zeros::<F8E5M2>(n * 2).unwrap();
        let mut ints = d.zeros::<i32>(n * 3).unwrap();
        let mut words = d.zeros::<u32>(n * 8).unwrap();
        let mut floats = d.zeros::<f32>(n * 3).unwrap();
        formats::launch(
            d,
            &formats::default_config(),
            LaunchDims::cover(n as u32, 64),
            &ab,
            &bb,
            &wb,
            &mut halves,
            &mut brains,
            &mut e4,
            &mut e5,
            &mut ints,
            &mut words,
            &mut floats,
        )
        .unwrap();
        let mut out: Vec<(&str, Vec<u64>)> = vec![(
            "halves",
            d.download(&halves)
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
        )];
        out.push((
            "brains",
            d.download(&brains)
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
        ));
        out.push((
            "e4m3",
            d.download(&e4)
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
        ));
        out.push((
            "e5m2",
            d.download(&e5)
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
        ));
        out.push((
            "ints",
            d.download(&ints)
                .unwrap()
                .iter()
                .map(|&x| x as u32 as u64)
                .collect(),
        ));
        out.push((
            "words",
            d.download(&words)
                .unwrap()
                .iter()
                .map(|&x| x as u64)
                .collect(),
        ));
        out.push((
            "floats",
            d.download(&floats)
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
        ));
        out
    };
    let (want, got) = (run(&Device::cpu()), run(&host));
    let mut diffs = Vec::new();
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        let nan = |x: u64| is_nan(name, x);
        let differs = |i: usize| w[i] != g[i] && !(nan(w[i]) && nan(g[i]));
        if let Some(i) = (0..w.len()).find(|&i| differs(i)) {
            let count = (0..w.len()).filter(|&i| differs(i)).count();
            diffs.push(format!(
                "{name}[{i}] (input {}): interpreter {:#x}, host {:#x} ({count} differ)",
                i / (w.len() / n),
                w[i],
                g[i]
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "host harness vs interpreter:\n{}",
        diffs.join("\n")
    );
}

/// The two halves of the block wait at different barriers.
#[kernel(block = (64), tune(UNUSED = [1]))]
fn divergent_barrier<const UNUSED: u32>(out: &mut [u32]) {
    let t = thread_idx_x();
    if t < 16 {
        sync_threads();
        out[t] = t;
    } else {
        out[t] = 2 * t;
        sync_threads();
    }
}

/// Threads at barriers on different lines are an error naming the thread and both lines
/// (on a GPU, undefined behaviour); a thread that exits does not block a barrier, as
/// `bar.sync` waits for the threads that have not exited.
#[test]
fn a_divergent_barrier_is_reported_not_hung() {
    let Some(host) = host_device(HostOptions::default()) else {
        return;
    };
    let mut out = host.zeros::<u32>(64).unwrap();
    let err = divergent_barrier::launch(
        &host,
        &divergent_barrier::default_config(),
        LaunchDims::linear(1, 64),
        &mut out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("a barrier in divergent code"), "{err}");
    assert!(err.contains("thread (16, 0, 0)"), "{err}");
}
