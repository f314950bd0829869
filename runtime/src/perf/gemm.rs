//! `gemm_tc_nt_f16_f32` / `gemm_tc_nn_f16_f32` against cuBLAS on square and LLM shapes: default config,
//! and the tuned one when the tuning cache has one; cuBLAS's C is compared with ours.

use super::cublas::{Cublas, CublasError};
use super::{measurement_json, policy, time, uniform, PerfError, PerfOptions};
use cudarc::driver::{CudaSlice, CudaStream};
use serde_json::{json, Value};
use std::sync::Arc;
use warpforge_autotune::bench::CudaTimer;
use warpforge_autotune::{probe, Source, TuneCache, TuneKernel, TuneTable};
use warpforge_dsl::nvrtc::Arch;
use warpforge_dsl::prelude::f16;
use warpforge_dsl::{Buffer, Config, Device};
use warpforge_kernels::gemm_tc::{self, Layout};

/// One timed shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// 4096³, 8192³ and M ∈ {1, 16, 128, 4096} × (N, K) of a 7B Llama's projections; `quick`
/// keeps 4096³ and M ∈ {1, 4096}.
pub fn shapes(quick: bool) -> Vec<Shape> {
    let square = if quick { vec![4096] } else { vec![4096, 8192] };
    let ms: &[usize] = if quick {
        &[1, 4096]
    } else {
        &[1, 16, 128, 4096]
    };
    let mut out: Vec<Shape> = square
        .into_iter()
        .map(|s| Shape {
            name: format!("{s}^3"),
            m: s,
            n: s,
            k: s,
        })
        .collect();
    for &(n, k, what) in &[
        (4096, 4096, "qkvo"),
        (11008, 4096, "up/gate"),
        (4096, 11008, "down"),
    ] {
        for &m in ms {
            out.push(Shape {
                name: format!("{what} m={m}"),
                m,
                n,
                k,
            });
        }
    }
    out
}

/// 2·m·n·k.
pub fn flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// TFLOP/s of `m×n×k` in `seconds`.
pub fn tflops(m: usize, n: usize, k: usize, seconds: f64) -> f64 {
    flops(m, n, k) / seconds / 1e12
}

/// The ours/cuBLAS throughput target for `m` on `arch`: 0.9 on sm_80-class, 0.6 on sm_90
/// (where cuBLAS uses `wgmma`, which `mma.sync` cannot reach), for M ≥ 1024 only (small M
/// is bandwidth-bound and has no target).
pub fn target(arch: Arch, m: usize) -> Option<f64> {
    if m < 1024 {
        return None;
    }
    match arch.major {
        8 => Some(0.9),
        9.. => Some(0.6),
        _ => None,
    }
}

/// Tuned configs from a cache directory, for this device.
struct Tuned {
    table: TuneTable,
}

impl Tuned {
    fn open(device: &Device, options: &PerfOptions) -> Result<Option<Tuned>, String> {
        let Some(dir) = &options.tune_cache else {
            return Ok(None);
        };
        let key = probe::device_key(device).map_err(|e| e.to_string())?;
        let cache = TuneCache::open(dir, &key).map_err(|e| e.to_string())?;
        let mut kernels = Vec::new();
        for name in [kernel_name(Layout::Nt), kernel_name(Layout::Nn)] {
            let lib = warpforge_kernels::find(name).ok_or(format!("no kernel {name}"))?;
            kernels.push(TuneKernel::new(lib).map_err(|e| e.to_string())?);
        }
        let table = TuneTable::new(&cache, &kernels);
        Ok((!table.is_empty()).then_some(Tuned { table }))
    }

    /// The tuned config of `kernel` at `shape` and where it comes from, if not the default.
    fn config(&self, kernel: &str, s: &Shape) -> Option<(Config, String)> {
        let handle = self.table.handle(kernel)?;
        let choice = self.table.lookup(handle, &[s.m, s.n, s.k]);
        let source = match choice.source {
            Source::Exact => "exact bucket".to_string(),
            Source::Nearest(d) => format!("nearest bucket ({d} doublings away)"),
            Source::Default => return None,
        };
        Some((choice.config.clone(), source))
    }
}

/// Device buffers of one shape: ours (dsl buffers) and cuBLAS's (raw copies of the same
/// values, since cuBLAS needs device pointers).
struct Operands {
    a: Buffer<f16>,
    b: Buffer<f16>,
    c: Buffer<f32>,
    raw: Option<RawOperands>,
}

/// cuBLAS's A, B (f16 bits) and C.
type RawOperands = (CudaSlice<u16>, CudaSlice<u16>, CudaSlice<f32>);

impl Operands {
    fn new(device: &Device, s: &Shape, with_raw: bool) -> Result<Operands, PerfError> {
        let host = |len: usize, seed: u64| -> Vec<f16> {
            (0..len as u64)
                .map(|i| f16::from_f32(uniform(seed, i)))
                .collect()
        };
        // Every dimension here is a multiple of 8: the leading dimensions are dense.
        let (ha, hb) = (host(s.m * s.k, 1), host(s.n * s.k, 2));
        let raw = match (with_raw, device.cuda_stream()) {
            (true, Some(stream)) => Some(raw_copies(&stream, &ha, &hb, s.m * s.n)?),
            _ => None,
        };
        Ok(Operands {
            a: device.upload(&ha)?,
            b: device.upload(&hb)?,
            c: device.zeros(s.m * s.n)?,
            raw,
        })
    }
}

fn raw_copies(
    stream: &Arc<CudaStream>,
    a: &[f16],
    b: &[f16],
    c_len: usize,
) -> Result<RawOperands, PerfError> {
    let bits = |x: &[f16]| x.iter().map(|v| v.to_bits()).collect::<Vec<u16>>();
    let err = |e| PerfError::device("copying cuBLAS's operands", e);
    Ok((
        stream.clone_htod(&bits(a)).map_err(err)?,
        stream.clone_htod(&bits(b)).map_err(err)?,
        stream.alloc_zeros::<f32>(c_len).map_err(err)?,
    ))
}

fn launch(
    device: &Device,
    layout: Layout,
    config: &Config,
    s: &Shape,
    ops: &mut Operands,
) -> Result<(), PerfError> {
    let (m, n, k) = (s.m as u32, s.n as u32, s.k as u32);
    let ldb = layout.ldb(s.n, s.k) as u32;
    let Operands { a, b, c, .. } = ops;
    gemm_tc::launch(device, config, layout, a, b, c, (m, n, k), (k, ldb, n))?;
    Ok(())
}

/// ‖x − y‖ / ‖y‖ and max |x − y|.
pub fn relative_error(x: &[f32], y: &[f32]) -> (f64, f64) {
    let (mut diff, mut norm, mut max) = (0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        let d = (a as f64 - b as f64).abs();
        diff += d * d;
        norm += b as f64 * b as f64;
        max = if d.is_nan() { f64::NAN } else { max.max(d) };
    }
    let rel = if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        diff.sqrt()
    };
    (rel, max)
}

/// f16 inputs, f32 accumulation in both: only the summation order differs.
const AGREEMENT: f64 = 1e-4;

struct Context<'a> {
    device: &'a Device,
    timer: CudaTimer,
    cublas: Result<Cublas, CublasError>,
    tuned: Option<Tuned>,
    arch: Arch,
}

/// The GEMM part of the perf report.
pub fn run(device: &Device, options: &PerfOptions) -> Value {
    let (Some(stream), Some(arch)) = (device.cuda_stream(), device.arch()) else {
        return json!({ "error": "not a GPU" });
    };
    let timer = match CudaTimer::new(device) {
        Ok(t) => t,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let (tuned, tune_note) = match Tuned::open(device, options) {
        Ok(Some(t)) => (Some(t), Value::from("used")),
        Ok(None) => (None, Value::from("no tuned GEMM configs")),
        Err(e) => (None, Value::from(format!("unreadable: {e}"))),
    };
    let mut cx = Context {
        device,
        timer,
        cublas: Cublas::new(stream),
        tuned,
        arch,
    };
    let cublas_note = match &cx.cublas {
        Ok(c) => Value::from(format!("available ({})", c.path.display())),
        Err(e) => Value::from(format!("skipped: {e}")),
    };
    println!("  cuBLAS: {cublas_note}; tune cache: {tune_note}");
    let mut results = Vec::new();
    for s in shapes(options.quick) {
        for layout in [Layout::Nt, Layout::Nn] {
            results.push(shape_entry(&mut cx, layout, &s));
        }
    }
    json!({ "cublas": cublas_note, "tune_cache": tune_note, "shapes": results })
}

/// The instance timed against cuBLAS's f16 × f16 → f32 `cublasGemmEx`.
fn kernel_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Nt => "gemm_tc_nt_f16_f32",
        Layout::Nn => "gemm_tc_nn_f16_f32",
        Layout::Tn => "gemm_tc_tn_f16_f32",
    }
}

fn shape_entry(cx: &mut Context, layout: Layout, s: &Shape) -> Value {
    let name = kernel_name(layout);
    let mut entry = json!({
        "kernel": name, "shape": s.name, "m": s.m, "n": s.n, "k": s.k,
        "target_ratio": target(cx.arch, s.m),
    });
    if let Err(e) = measure_shape(cx, layout, s, &mut entry) {
        entry["error"] = e.to_string().into();
    }
    println!("  {}", summary_line(&entry));
    entry
}

fn measure_shape(
    cx: &mut Context,
    layout: Layout,
    s: &Shape,
    entry: &mut Value,
) -> Result<(), PerfError> {
    let mut ops = Operands::new(cx.device, s, cx.cublas.is_ok())?;
    let default = warpforge_kernels::find(kernel_name(layout))
        .map(|k| k.default_config())
        .unwrap_or_default();
    let device = cx.device;
    let ours = time(&mut cx.timer, &policy(), || {
        launch(device, layout, &default, s, &mut ops)
    })?;
    entry["config"] = default.to_string().into();
    entry["ours"] = throughput(s, &ours);
    if let Some((config, source)) = cx
        .tuned
        .as_ref()
        .and_then(|t| t.config(kernel_name(layout), s))
    {
        let tuned = time(&mut cx.timer, &policy(), || {
            launch(device, layout, &config, s, &mut ops)
        });
        entry["tuned"] = match tuned {
            Ok(m) => with(
                throughput(s, &m),
                &[
                    ("config", config.to_string().into()),
                    ("source", source.into()),
                ],
            ),
            Err(e) => json!({ "config": config.to_string(), "error": e.to_string() }),
        };
    }
    if let Ok(cublas) = &cx.cublas {
        compare_with_cublas(cx.device, &mut cx.timer, cublas, layout, s, &mut ops, entry)?;
    }
    Ok(())
}

fn compare_with_cublas(
    device: &Device,
    timer: &mut CudaTimer,
    cublas: &Cublas,
    layout: Layout,
    s: &Shape,
    ops: &mut Operands,
    entry: &mut Value,
) -> Result<(), PerfError> {
    let Some((ra, rb, rc)) = &mut ops.raw else {
        return Ok(());
    };
    let (dims, lds) = ((s.m, s.n, s.k), (s.k, layout.ldb(s.n, s.k), s.n));
    let base = time(timer, &policy(), || {
        Ok(cublas.gemm(layout, dims, lds, ra, rb, rc)?)
    })?;
    entry["cublas"] = throughput(s, &base);
    let best = entry["tuned"]["ms"]
        .as_f64()
        .into_iter()
        .chain(entry["ours"]["ms"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let ratio = base.median * 1e3 / best;
    entry["ratio"] = ratio.into();
    if let Some(t) = entry["target_ratio"].as_f64() {
        entry["meets_target"] = (ratio >= t).into();
    }
    // The C of the last timed launch of each (the default config ran before the tuned
    // one, so `ops.c` holds the tuned config's C when there is one).
    let ours = device.download(&ops.c)?;
    let theirs = s_download(device, rc)?;
    let (rel, max) = relative_error(&ours, &theirs);
    entry["vs_cublas"] = json!({
        "relative_l2_error": rel, "max_abs_error": max, "agrees": rel <= AGREEMENT,
    });
    Ok(())
}

fn s_download(device: &Device, c: &CudaSlice<f32>) -> Result<Vec<f32>, PerfError> {
    let stream = device
        .cuda_stream()
        .ok_or_else(|| PerfError::device("reading cuBLAS's C", "not a GPU"))?;
    stream
        .clone_dtoh(c)
        .map_err(|e| PerfError::device("reading cuBLAS's C", e))
}

/// `ms`, `spread`, `samples` and `tflops` of a measurement of `s`.
fn throughput(s: &Shape, m: &warpforge_autotune::Measurement) -> Value {
    with(
        measurement_json(m),
        &[("tflops", tflops(s.m, s.n, s.k, m.median).into())],
    )
}

fn with(mut v: Value, fields: &[(&str, Value)]) -> Value {
    for (k, x) in fields {
        v[*k] = x.clone();
    }
    v
}

/// One progress line of a shape's entry.
pub fn summary_line(e: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut line = format!(
        "{:<10} {:<16} ours {} ms {} TFLOP/s",
        e["kernel"].as_str().unwrap_or(""),
        e["shape"].as_str().unwrap_or(""),
        f(&e["ours"]["ms"]),
        f(&e["ours"]["tflops"]),
    );
    if e["tuned"].is_object() {
        line += &format!(", tuned {} ms", f(&e["tuned"]["ms"]));
    }
    if e["cublas"].is_object() {
        line += &format!(
            ", cuBLAS {} ms {} TFLOP/s, ratio {}",
            f(&e["cublas"]["ms"]),
            f(&e["cublas"]["tflops"]),
            f(&e["ratio"])
        );
    }
    if let Some(err) = e["error"].as_str() {
        line += &format!(" ERROR {err}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_the_square_and_llm_problems() {
        let all = shapes(false);
        assert_eq!(all.len(), 2 + 3 * 4);
        assert!(all.iter().any(|s| (s.m, s.n, s.k) == (8192, 8192, 8192)));
        assert!(all.iter().any(|s| (s.m, s.n, s.k) == (16, 4096, 11008)));
        assert!(all.iter().all(|s| s.k % 8 == 0 && s.n % 8 == 0));
        assert_eq!(shapes(true).len(), 1 + 3 * 2);
    }

    #[test]
    fn flop_accounting() {
        assert_eq!(flops(2, 3, 4), 48.0);
        // 4096³ in 1 ms: 137.4 TFLOP/s.
        assert!((tflops(4096, 4096, 4096, 1e-3) - 137.438_953_472).abs() < 1e-6);
    }

    #[test]
    fn targets_apply_to_large_m_only() {
        assert_eq!(target(Arch::SM80, 4096), Some(0.9));
        assert_eq!(target(Arch::SM89, 1024), Some(0.9));
        assert_eq!(target(Arch::SM90, 4096), Some(0.6));
        assert_eq!(target(Arch::SM90, 128), None);
        assert_eq!(target(Arch { major: 7, minor: 5 }, 4096), None);
    }

    #[test]
    fn relative_error_is_a_norm_ratio() {
        assert_eq!(relative_error(&[1.0, 2.0], &[1.0, 2.0]), (0.0, 0.0));
        let (rel, max) = relative_error(&[3.0, 4.0], &[0.0, 0.0]);
        assert_eq!((rel, max), (5.0, 4.0));
        let (rel, max) = relative_error(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((rel - 2f64.sqrt()).abs() < 1e-12 && max == 1.0);
        assert!(relative_error(&[f32::NAN], &[1.0]).1.is_nan());
    }

    #[test]
    fn summary_line_shows_the_comparison() {
        let e = json!({
            "kernel": "gemm_tc_nt_f16_f32", "shape": "4096^3",
            "ours": { "ms": 0.5, "tflops": 274.9 },
            "cublas": { "ms": 0.25, "tflops": 549.8 }, "ratio": 0.5,
        });
        let line = summary_line(&e);
        assert!(line.contains("ours 0.500 ms 274.900 TFLOP/s"), "{line}");
        assert!(line.contains("ratio 0.500"), "{line}");
        assert!(!line.contains("tuned"));
    }
}
