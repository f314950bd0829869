//! The FP8 quantize/dequantize kernels' f32 instances at 8192×4096 f32 (128 MiB), default
//! configs (the f16/bf16 instances move 2 bytes less per element and are not timed here):
//! bandwidth from the bytes each kernel's library description says it moves
//! ([`LibraryKernel::bytes`](warpforge_kernels::LibraryKernel::bytes)), against the DRAM
//! peak. Inputs and launches are the library's cases, the same ones `check` and the tuner
//! run.

use super::PerfOptions;
use super::{device_peak_bandwidth, measurement_json, policy, time, PerfError};
use serde_json::{json, Value};
use warpforge_autotune::bench::CudaTimer;
use warpforge_autotune::Measurement;
use warpforge_dsl::Device;
use warpforge_kernels::check::Problem;

/// Rows and columns of the timed input: 32 Mi f32 = 128 MiB, far beyond any L2.
pub const ROWS: usize = 8192;
pub const COLS: usize = 4096;

/// Fraction of the DRAM peak the kernels should reach on an H200.
pub const TARGET_FRACTION: f64 = 0.85;

/// One timed entry: library kernels launched back to back on their cases (the per-tensor
/// current scaling is two: the amax, then the cast).
pub struct Timed {
    pub label: String,
    pub kernels: Vec<(&'static str, Problem)>,
}

/// The timed entries for one format, every f32 FP8 instance at `ROWS × COLS` (1×128
/// groups, per-tensor dequantization), with the library names they stand for.
pub fn timed(format: &str) -> Vec<Timed> {
    let flat = || Problem::new("flat", vec![ROWS * COLS]);
    let entry = |label: String, kernels: Vec<(String, Problem)>| Timed {
        label,
        kernels: kernels
            .into_iter()
            .map(|(n, p)| (warpforge_kernels::find(&n).map_or("?", |k| k.name()), p))
            .collect(),
    };
    let one = |name: String, p: Problem| entry(name.clone(), vec![(name, p)]);
    let tensor = format!("fp8_quantize_tensor_f32_{format}");
    vec![
        one("fp8_amax_f32".into(), flat()),
        one(tensor.clone(), flat()),
        entry(
            format!("fp8_amax_f32 + {tensor}"),
            vec![("fp8_amax_f32".into(), flat()), (tensor, flat())],
        ),
        one(format!("fp8_quantize_delayed_f32_{format}"), flat()),
        one(
            format!("fp8_quantize_rows_f32_{format}"),
            Problem::new("G=128", vec![ROWS, COLS, 128]),
        ),
        one(
            format!("fp8_quantize_rows_t_f32_{format}"),
            Problem::new("G=128", vec![ROWS, COLS, 128]),
        ),
        one(
            format!("fp8_quantize_blocks_f32_{format}"),
            Problem::new("tiles", vec![ROWS, COLS]),
        ),
        one(
            format!("fp8_dequantize_{format}_f32"),
            Problem::new("per tensor", vec![ROWS, COLS, 0]),
        ),
    ]
}

/// The bytes an entry moves, as its kernels' descriptions count them.
pub fn bytes(t: &Timed) -> Option<u64> {
    t.kernels
        .iter()
        .map(|(name, p)| warpforge_kernels::find(name)?.bytes(p))
        .sum()
}

/// Times one entry: each kernel's case built from its library description, default
/// configs, launched back to back.
fn measure(device: &Device, timer: &mut CudaTimer, t: &Timed) -> Result<Measurement, PerfError> {
    let mut cases = Vec::new();
    for (name, problem) in &t.kernels {
        let k = warpforge_kernels::find(name)
            .ok_or_else(|| PerfError::device("finding the kernel", name))?;
        cases.push((k.default_config(), k.case(device, problem)?));
    }
    time(timer, &policy(), || {
        for (config, case) in &mut cases {
            case.launch(device, config)?;
        }
        Ok(())
    })
}

fn format_entries(
    device: &Device,
    timer: &mut CudaTimer,
    format: &str,
    peak: Option<f64>,
    out: &mut Vec<Value>,
) {
    for t in timed(format) {
        let measured = measure(device, timer, &t);
        let entry = entry(&t.label, bytes(&t), peak, measured);
        println!("  {}", summary_line(&entry));
        out.push(entry);
    }
}

fn entry(
    name: &str,
    bytes: Option<u64>,
    peak: Option<f64>,
    measured: Result<Measurement, PerfError>,
) -> Value {
    let mut e = json!({ "kernel": name, "rows": ROWS, "cols": COLS, "bytes": bytes });
    match (measured, bytes) {
        (Err(err), _) => e["error"] = err.to_string().into(),
        (Ok(_), None) => e["error"] = "the kernel's description states no byte count".into(),
        (Ok(m), Some(b)) => {
            e["time"] = measurement_json(&m);
            let rate = b as f64 / m.median;
            e["gb_per_s"] = (rate / 1e9).into();
            if let Some(peak) = peak {
                e["fraction_of_peak"] = (rate / peak).into();
                e["meets_target"] = (rate / peak >= TARGET_FRACTION).into();
            }
        }
    }
    e
}

/// One progress line of an entry.
pub fn summary_line(e: &Value) -> String {
    let f = |v: &Value, p: usize| v.as_f64().map_or("-".into(), |x| format!("{x:.p$}"));
    let mut line = format!(
        "{:<44} {:>8} ms {:>7} GB/s {:>5} of peak",
        e["kernel"].as_str().unwrap_or(""),
        f(&e["time"]["ms"], 3),
        f(&e["gb_per_s"], 0),
        f(&e["fraction_of_peak"], 2),
    );
    if let Some(err) = e["error"].as_str() {
        line += &format!(" ERROR {err}");
    }
    line
}

/// The FP8 part of the perf report.
pub fn run(device: &Device, options: &PerfOptions) -> Value {
    let peak = device_peak_bandwidth(device);
    let mut timer = match CudaTimer::new(device) {
        Ok(t) => t,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let peak_value = peak.as_ref().ok().copied();
    if let Some(p) = peak_value {
        println!(
            "  DRAM peak {:.0} GB/s (memory clock × bus width × 2)",
            p / 1e9
        );
    }
    let mut results = Vec::new();
    format_entries(device, &mut timer, "e4m3", peak_value, &mut results);
    if !options.quick {
        format_entries(device, &mut timer, "e5m2", peak_value, &mut results);
    }
    json!({
        "peak_gb_per_s": peak_value.map(|p| p / 1e9),
        "peak_error": peak.err().map(|e| e.to_string()),
        "target_fraction": TARGET_FRACTION,
        "kernels": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_named<'a>(entries: &'a [Timed], prefix: &str) -> &'a Timed {
        entries
            .iter()
            .find(|t| t.label.starts_with(prefix))
            .unwrap()
    }

    #[test]
    fn byte_accounting_comes_from_the_descriptions() {
        let n = (ROWS * COLS) as u64;
        let e = timed("e4m3");
        assert_eq!(bytes(entry_named(&e, "fp8_amax_f32")), Some(4 * n));
        // The amax pass, then the cast (reads the amax, writes the scale).
        assert_eq!(bytes(entry_named(&e, "fp8_amax_f32 +")), Some(9 * n + 8));
        // 8192 rows × 32 groups of 128, one f32 scale each.
        assert_eq!(
            bytes(entry_named(&e, "fp8_quantize_rows_f32")),
            Some(5 * n + 4 * 8192 * 32)
        );
        // Xt has 4096 rows of 8192: 64 groups each.
        assert_eq!(
            bytes(entry_named(&e, "fp8_quantize_rows_t")),
            Some(5 * n + 4 * 4096 * 64)
        );
        assert_eq!(
            bytes(entry_named(&e, "fp8_quantize_blocks")),
            Some(5 * n + 4 * 64 * 32)
        );
        assert_eq!(bytes(entry_named(&e, "fp8_dequantize")), Some(5 * n + 4));
    }

    #[test]
    fn the_input_is_over_64_mib() {
        const { assert!(ROWS * COLS * 4 >= 64 << 20) };
    }

    #[test]
    fn every_f32_fp8_kernel_of_the_library_is_timed_and_names_resolve() {
        for format in ["e4m3", "e5m2"] {
            let entries = timed(format);
            for t in &entries {
                for (name, p) in &t.kernels {
                    let k = warpforge_kernels::find(name).expect("a library kernel");
                    assert_eq!(p.dims.len(), k.rank(), "{name}");
                }
            }
            let timed: Vec<&str> = entries
                .iter()
                .flat_map(|t| t.kernels.iter().map(|k| k.0))
                .collect();
            for k in warpforge_kernels::library() {
                let name = k.name();
                let f32_fp8 = name.starts_with("fp8_")
                    && !name.starts_with("fp8_gemm")
                    && (name == "fp8_amax_f32"
                        || name.ends_with(&format!("_f32_{format}"))
                        || name == format!("fp8_dequantize_{format}_f32"));
                if f32_fp8 {
                    assert!(timed.contains(&name), "{name} is not timed");
                }
            }
        }
    }

    #[test]
    fn entry_reports_bandwidth_against_the_peak() {
        let m = Measurement {
            median: 1e-3,
            spread: 0.0,
            samples: 10,
        };
        let b = Some(4 * (ROWS * COLS) as u64);
        let e = entry("k", b, Some(4.8e12), Ok(m));
        let gbs = e["gb_per_s"].as_f64().unwrap();
        assert!((gbs - 4.0 * (ROWS * COLS) as f64 / 1e-3 / 1e9).abs() < 1e-6);
        assert_eq!(e["meets_target"], false);
        assert!(e["fraction_of_peak"].as_f64().unwrap() < 0.1);
        let e = entry("k", b, None, Err(PerfError::device("x", "y")));
        assert_eq!(e["error"], "x: y");
        assert!(summary_line(&e).contains("ERROR x: y"));
    }
}
