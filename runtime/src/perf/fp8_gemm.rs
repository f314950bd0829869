//! `fp8_gemm_e4m3_bf16` (E4M3 × E4M3, f32 accumulation, bf16 C) at the f16 GEMM's shapes,
//! block-scaled (and per-tensor at 4096³): default config and the tuned one when the cache
//! has one, against our f16 tensor-core GEMM (`gemm_tc_nt_f16_f32`, whose times the
//! [`super::gemm`] section already holds). Correctness is checked once, at a small shape,
//! against the kernel library's f64 reference.
//!
//! FP8 `mma.sync` is native on sm_89 (Ada: about twice the f16 rate); on sm_90 ptxas
//! lowers it to a conversion to f16 and an f16 MMA (F2FP + HMMA), so there it cannot beat
//! the f16 GEMM: only `wgmma` runs FP8 at full rate on Hopper.

use super::gemm::{shapes, tflops, Shape};
use super::{measurement_json, policy, time, uniform, PerfError, PerfOptions};
use serde_json::{json, Value};
use warpforge_autotune::bench::CudaTimer;
use warpforge_autotune::{probe, Measurement, Source, TuneCache, TuneKernel, TuneTable};
use warpforge_dsl::nvrtc::Arch;
use warpforge_dsl::prelude::{bf16, F8E4M3};
use warpforge_dsl::{resolve, Buffer, Config, Device, KernelDef};
use warpforge_kernels::check::Problem;
use warpforge_kernels::fp8::gemm::{self as fp8_gemm, ScaledOperands, Scaling};

/// The instance timed.
pub const KERNEL: &str = "fp8_gemm_e4m3_bf16";

/// The f16 GEMM it is compared with (same K-major B, f32 accumulation).
pub const F16_KERNEL: &str = "gemm_tc_nt_f16_f32";

/// The shape of the correctness check: four 128-groups of K, 2×2 blocks of the default
/// 128×128 tile, 2×2 B scale tiles.
pub const CHECK_SHAPE: (usize, usize, usize) = (256, 256, 512);

/// One timed problem: a shape and how its operands are scaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub shape: Shape,
    pub scaling: Scaling,
}

/// Every shape of the f16 GEMM section with block scales, and 4096³ per-tensor too (once:
/// `qkvo m=4096` has the same dims).
pub fn cases(quick: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut per_tensor = false;
    for shape in shapes(quick) {
        let square_4096 = (shape.m, shape.n, shape.k) == (4096, 4096, 4096);
        out.push(Case {
            shape: shape.clone(),
            scaling: Scaling::Blocks,
        });
        if square_4096 && !per_tensor {
            per_tensor = true;
            out.push(Case {
                shape,
                scaling: Scaling::Tensor,
            });
        }
    }
    out
}

/// The report's name of a scaling.
pub fn scaling_name(scaling: Scaling) -> &'static str {
    match scaling {
        Scaling::Tensor => "tensor",
        Scaling::Blocks => "blocks",
    }
}

/// What to expect of the FP8/f16 ratio on `arch`, when it is not the native ~2×.
pub fn note(arch: Arch) -> Option<&'static str> {
    (arch.major == 9).then_some(
        "sm_90: ptxas emulates FP8 mma.sync (F2FP + HMMA); expect vs_f16 <= 1 \
         (full-rate FP8 on Hopper needs wgmma)",
    )
}

/// Why the kernel cannot run on `arch` (`needs`: its newest intrinsic's arch), if so.
pub fn skip_reason(arch: Arch, needs: Option<(Arch, &str)>) -> Option<String> {
    match needs {
        Some((needs, intrinsic)) if needs > arch => Some(format!(
            "skipped: needs {needs} (`{intrinsic}`); this GPU is {arch}"
        )),
        _ => None,
    }
}

/// The newest arch an intrinsic of `def`'s default config needs.
fn required_arch(def: &KernelDef) -> Result<Option<(Arch, &'static str)>, PerfError> {
    let typed = resolve::specialize(def, &def.space.default_config())
        .map_err(|e| PerfError::device("specializing the FP8 GEMM", e))?;
    Ok(warpforge_dsl::min_arch(&typed))
}

/// The 17 E4M3 codes of -8..=8: exact, so any sum of 128 products is exact in f32.
fn small_codes() -> [F8E4M3; 17] {
    std::array::from_fn(|j| F8E4M3::from_f32(j as f32 - 8.0))
}

/// `len` codes in -8..=8 from a table (no float conversion per element: 8192³'s operands
/// are 64 Mi codes each).
pub fn codes(seed: u64, len: usize) -> Vec<F8E4M3> {
    let table = small_codes();
    (0..len as u64)
        .map(|i| table[(((uniform(seed, i) + 1.0) * 8.5) as usize).min(16)])
        .collect()
}

/// `len` scales, powers of two in 2^-2..=2^2 (exact products with any code).
pub fn scales(seed: u64, len: usize) -> Vec<f32> {
    (0..len as u64)
        .map(|i| 2f32.powi((((uniform(seed, i) + 1.0) * 2.5) as i32).min(4) - 2))
        .collect()
}

/// The scale table lengths `(a, b)` of `scaling` (as [`fp8_gemm::ScaledOperands`] lays
/// them out: A per row and 128 of K, B per 128×128 tile).
pub fn scale_lens(scaling: Scaling, m: usize, n: usize, k: usize) -> (usize, usize) {
    let groups = k.div_ceil(fp8_gemm::GROUP as usize).max(1);
    match scaling {
        Scaling::Tensor => (1, 1),
        Scaling::Blocks => (m * groups, n.div_ceil(fp8_gemm::GROUP as usize) * groups),
    }
}

/// One shape's device buffers (K-major A and B; every K here is a multiple of 16, so the
/// leading dimension is K).
struct Operands {
    a: Buffer<F8E4M3>,
    b: Buffer<F8E4M3>,
    a_scale: Buffer<f32>,
    b_scale: Buffer<f32>,
    c: Buffer<bf16>,
}

/// The host operands of `case`: codes in -8..=8, power-of-two scales.
pub fn host_operands(case: &Case) -> ScaledOperands {
    let Shape { m, n, k, .. } = case.shape;
    let ld = fp8_gemm::padded(k);
    let (la, lb) = scale_lens(case.scaling, m, n, k);
    ScaledOperands {
        a: codes(11, m * ld),
        b: codes(12, n * ld),
        a_scale: scales(13, la),
        b_scale: scales(14, lb),
        scaling: case.scaling,
    }
}

impl Operands {
    fn new(device: &Device, case: &Case) -> Result<Operands, PerfError> {
        let host = host_operands(case);
        Ok(Operands {
            a: device.upload(&host.a)?,
            b: device.upload(&host.b)?,
            a_scale: device.upload(&host.a_scale)?,
            b_scale: device.upload(&host.b_scale)?,
            c: device.zeros(case.shape.m * case.shape.n)?,
        })
    }

    fn launch(&mut self, device: &Device, config: &Config, case: &Case) -> Result<(), PerfError> {
        let s = &case.shape;
        fp8_gemm::launch::<bf16>(
            device,
            config,
            case.scaling,
            (&self.a, &self.b),
            (&self.a_scale, &self.b_scale),
            &mut self.c,
            (s.m as u32, s.n as u32, s.k as u32),
        )?;
        Ok(())
    }
}

/// The tuned configs of [`KERNEL`] in a cache directory, for this device.
fn open_tuned(device: &Device, options: &PerfOptions) -> Result<Option<TuneTable>, String> {
    let Some(dir) = &options.tune_cache else {
        return Ok(None);
    };
    let key = probe::device_key(device).map_err(|e| e.to_string())?;
    let cache = TuneCache::open(dir, &key).map_err(|e| e.to_string())?;
    let lib = warpforge_kernels::find(KERNEL).ok_or(format!("no kernel {KERNEL}"))?;
    let kernel = TuneKernel::new(lib).map_err(|e| e.to_string())?;
    let table = TuneTable::new(&cache, &[kernel]);
    Ok((!table.is_empty()).then_some(table))
}

/// The tuned config at `s` (the tuner keys the FP8 GEMM by `[m, n, k]`) and its source,
/// unless it is the default.
fn tuned_config(table: &TuneTable, s: &Shape) -> Option<(Config, String)> {
    let choice = table.lookup(table.handle(KERNEL)?, &[s.m, s.n, s.k]);
    let source = match choice.source {
        Source::Exact => "exact bucket".to_string(),
        Source::Nearest(d) => format!("nearest bucket ({d} doublings away)"),
        Source::Default => return None,
    };
    Some((choice.config.clone(), source))
}

struct Context<'a> {
    device: &'a Device,
    timer: CudaTimer,
    tuned: Option<TuneTable>,
    default: Config,
}

/// The FP8 GEMM part of the perf report; `gemm` is the f16 GEMM section, whose times
/// the ratios divide.
pub fn run(device: &Device, options: &PerfOptions, gemm: &Value) -> Value {
    let Some(arch) = device.arch() else {
        return json!({ "status": "error: not a GPU" });
    };
    let Some(def) = fp8_gemm::def_of(warpforge_dsl::ScalarType::BF16) else {
        return json!({ "status": format!("error: no kernel {KERNEL}") });
    };
    let needs = match required_arch(def) {
        Ok(needs) => needs,
        Err(e) => return json!({ "status": format!("error: {e}") }),
    };
    if let Some(why) = skip_reason(arch, needs) {
        println!("  {why}");
        return json!({ "arch": arch.to_string(), "status": why });
    }
    let timer = match CudaTimer::new(device) {
        Ok(t) => t,
        Err(e) => return json!({ "status": format!("error: {e}") }),
    };
    let (tuned, tune_note) = match open_tuned(device, options) {
        Ok(Some(t)) => (Some(t), Value::from("used")),
        Ok(None) => (None, Value::from("no tuned FP8 GEMM configs")),
        Err(e) => (None, Value::from(format!("unreadable: {e}"))),
    };
    let mut cx = Context {
        device,
        timer,
        tuned,
        default: def.space.default_config(),
    };
    let check = check(device, &cx.default, CHECK_SHAPE);
    println!("  tune cache: {tune_note}; check {}", check_line(&check));
    if let Some(n) = note(arch) {
        println!("  note: {n}");
    }
    let results: Vec<Value> = cases(options.quick)
        .iter()
        .map(|case| case_entry(&mut cx, case, gemm))
        .collect();
    json!({
        "status": "run", "arch": arch.to_string(), "note": note(arch), "tune_cache": tune_note,
        "check": check, "shapes": results,
    })
}

/// Both scalings at `(m, n, k)` against the f64 reference rounded once to bf16: integer
/// codes and power-of-two scales make every sum exact, so they must be equal.
fn check(device: &Device, config: &Config, (m, n, k): (usize, usize, usize)) -> Vec<Value> {
    [Scaling::Blocks, Scaling::Tensor]
        .into_iter()
        .map(|scaling| {
            let blocked = usize::from(scaling == Scaling::Blocks);
            let problem = Problem::new(format!("{m}x{n}x{k}"), vec![m, n, k, blocked]);
            let (ops, shape) = fp8_gemm::inputs(&problem);
            let mut e = json!({ "shape": problem.name, "scaling": scaling_name(scaling) });
            match fp8_gemm::run::<bf16>(device, config, &ops, shape) {
                Ok(c) => {
                    let max = max_abs_error(&c, &fp8_gemm::reference(&ops, shape));
                    e["max_abs_error"] = max.into();
                    e["agrees"] = (max == 0.0).into();
                }
                Err(err) => {
                    e["agrees"] = false.into();
                    e["error"] = err.to_string().into();
                }
            }
            e
        })
        .collect()
}

/// max |c − bf16(reference)| (NaN if any element is NaN).
pub fn max_abs_error(c: &[bf16], reference: &[f32]) -> f64 {
    c.iter().zip(reference).fold(0f64, |max, (x, r)| {
        let d = (x.to_f32() as f64 - bf16::from_f32(*r).to_f32() as f64).abs();
        if d.is_nan() || max.is_nan() {
            f64::NAN
        } else {
            max.max(d)
        }
    })
}

fn check_line(check: &[Value]) -> String {
    let parts: Vec<String> = check
        .iter()
        .map(|e| {
            let verdict = match e["agrees"].as_bool() {
                Some(true) => "agrees",
                _ => "DISAGREES",
            };
            format!(
                "{} {}: {verdict}",
                e["shape"].as_str().unwrap_or(""),
                e["scaling"]
            )
        })
        .collect();
    parts.join(", ")
}

fn case_entry(cx: &mut Context, case: &Case, gemm: &Value) -> Value {
    let s = &case.shape;
    let mut entry = json!({
        "kernel": KERNEL, "scaling": scaling_name(case.scaling), "shape": s.name,
        "m": s.m, "n": s.n, "k": s.k,
    });
    if let Err(e) = measure(cx, case, &mut entry) {
        entry["error"] = e.to_string().into();
    }
    compare_with_f16(&mut entry, gemm);
    println!("  {}", summary_line(&entry));
    entry
}

fn measure(cx: &mut Context, case: &Case, entry: &mut Value) -> Result<(), PerfError> {
    let mut ops = Operands::new(cx.device, case)?;
    let (device, default) = (cx.device, cx.default.clone());
    let ours = time(&mut cx.timer, &policy(), || {
        ops.launch(device, &default, case)
    })?;
    entry["config"] = default.to_string().into();
    entry["ours"] = throughput(&case.shape, &ours);
    let tuned = cx.tuned.as_ref().and_then(|t| tuned_config(t, &case.shape));
    if let Some((config, source)) = tuned {
        let m = time(&mut cx.timer, &policy(), || {
            ops.launch(device, &config, case)
        });
        let mut t = match m {
            Ok(m) => throughput(&case.shape, &m),
            Err(e) => json!({ "error": e.to_string() }),
        };
        t["config"] = config.to_string().into();
        t["source"] = source.into();
        entry["tuned"] = t;
    }
    Ok(())
}

/// `ms`, `spread`, `samples` and `tflops` of a measurement of `s`.
fn throughput(s: &Shape, m: &Measurement) -> Value {
    let mut v = measurement_json(m);
    v["tflops"] = tflops(s.m, s.n, s.k, m.median).into();
    v
}

/// The best (default or tuned) time of an entry of either section, ms.
pub fn best_ms(entry: &Value) -> Option<f64> {
    [&entry["ours"]["ms"], &entry["tuned"]["ms"]]
        .into_iter()
        .filter_map(Value::as_f64)
        .reduce(f64::min)
}

/// Adds `f16` (the f16 GEMM's best time at this shape, from the `gemm` section) and
/// `vs_f16` (its time / ours: > 1 when FP8 is faster), or why there is none.
pub fn compare_with_f16(entry: &mut Value, gemm: &Value) {
    let shape = entry["shape"].as_str().unwrap_or("");
    let f16 = gemm["shapes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kernel"] == F16_KERNEL && e["shape"] == shape);
    let Some(f16) = f16 else {
        entry["f16"] = format!("not measured ({F16_KERNEL} has no {shape} entry)").into();
        return;
    };
    let Some(f16_ms) = best_ms(f16) else {
        let why = f16["error"].as_str().unwrap_or("no time");
        entry["f16"] = format!("not measured ({why})").into();
        return;
    };
    let (m, n, k) = (f16["m"].as_u64(), f16["n"].as_u64(), f16["k"].as_u64());
    let flops = match (m, n, k) {
        (Some(m), Some(n), Some(k)) => tflops(m as usize, n as usize, k as usize, f16_ms / 1e3),
        _ => f64::NAN,
    };
    entry["f16"] = json!({ "kernel": F16_KERNEL, "ms": f16_ms, "tflops": flops });
    if let Some(ours) = best_ms(entry) {
        entry["vs_f16"] = (f16_ms / ours).into();
    }
}

/// One progress line of a shape's entry.
pub fn summary_line(e: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut line = format!(
        "{:<18} {:<6} {:<16} ours {} ms {} TFLOP/s",
        e["kernel"].as_str().unwrap_or(""),
        e["scaling"].as_str().unwrap_or(""),
        e["shape"].as_str().unwrap_or(""),
        f(&e["ours"]["ms"]),
        f(&e["ours"]["tflops"]),
    );
    if e["tuned"].is_object() {
        line += &format!(", tuned {} ms", f(&e["tuned"]["ms"]));
    }
    if e["f16"].is_object() {
        line += &format!(
            ", f16 {} ms, vs f16 {}",
            f(&e["f16"]["ms"]),
            f(&e["vs_f16"])
        );
    }
    if let Some(err) = e["error"].as_str() {
        line += &format!(" ERROR {err}");
    }
    line
}

#[cfg(test)]
mod tests;
