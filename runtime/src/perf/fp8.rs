//! The FP8 quantize/dequantize kernels' f32 instances at 8192×4096 f32 (128 MiB), default
//! configs (the f16/bf16 instances move 2 bytes less per element and are not timed here):
//! bandwidth from the bytes each kernel's documentation says it moves, against the DRAM
//! peak. The launches mirror `warpforge_kernels::fp8::host` (which also uploads and
//! downloads, so it cannot be timed as is).

use super::PerfOptions;
use super::{device_peak_bandwidth, measurement_json, policy, time, uniform, PerfError};
use serde_json::{json, Value};
use warpforge_autotune::bench::CudaTimer;
use warpforge_dsl::prelude::{F8E4M3, F8E5M2};
use warpforge_dsl::{Arg, Buffer, Config, Device, KernelDef, LaunchDims};
use warpforge_kernels::fp8::host::complete;
use warpforge_kernels::fp8::reference::Granularity;
use warpforge_kernels::fp8::{tensor, Fp8Type};

/// Rows and columns of the timed input: 32 Mi f32 = 128 MiB, far beyond any L2.
pub const ROWS: usize = 8192;
pub const COLS: usize = 4096;

/// Fraction of the DRAM peak the kernels should reach on an H200.
pub const TARGET_FRACTION: f64 = 0.85;

/// What is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `fp8_amax_f32`: reads 4 bytes per element.
    Amax,
    /// The per-tensor cast alone (amax given): 4 read + 1 written, and the scale.
    Tensor,
    /// Current scaling: the amax pass then the cast, two launches: 9 bytes per element.
    AmaxAndTensor,
    /// Delayed scaling: 4 read + 1 written, one launch.
    Delayed,
    /// 1×G groups: 4 + 1 per element, one f32 scale per group.
    Rows { g: usize },
    /// Transposed 1×G groups: 4 + 1 per element, one f32 scale per group of Xt.
    RowsT { g: usize },
    /// 128×128 tiles: 4 + 1 per element, one f32 scale per tile.
    Blocks,
    /// Per-tensor dequantization: 1 read + 4 written per element, one scale read.
    Dequantize,
}

/// Bytes an op moves on a `rows × cols` tensor (each input read once, each output
/// written once), as the kernels' doc comments count them.
pub fn bytes(op: Op, rows: usize, cols: usize) -> u64 {
    let n = (rows * cols) as u64;
    let groups = |a: usize, b: usize, g: usize| (a * b.div_ceil(g)) as u64;
    match op {
        Op::Amax => 4 * n,
        Op::Tensor => 5 * n + 4,
        Op::AmaxAndTensor => 9 * n + 4,
        Op::Delayed => 5 * n + 4,
        Op::Rows { g } => 5 * n + 4 * groups(rows, cols, g),
        Op::RowsT { g } => 5 * n + 4 * groups(cols, rows, g),
        Op::Blocks => 5 * n + 4 * groups(rows.div_ceil(128), cols, 128),
        Op::Dequantize => 5 * n + 4,
    }
}

/// The buffers every op shares (one format).
struct Tensors<F: Fp8Type> {
    x: Buffer<f32>,
    amax: Buffer<u32>,
    scale: Buffer<f32>,
    q: Buffer<F>,
    scales: Buffer<f32>,
    /// The dequantized output.
    y: Buffer<f32>,
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn tunable(config: &Config, name: &str) -> u32 {
    config.get(name).unwrap_or(1) as u32
}

/// A grid of `BLOCK` threads, `BLOCK × ITEMS` work items per block.
fn linear(config: &Config, items: usize) -> LaunchDims {
    let block = tunable(config, "BLOCK");
    let per_block = (block * tunable(config, "ITEMS")) as usize;
    LaunchDims::linear(u32_of(items.div_ceil(per_block).max(1)), block)
}

fn default_of(def: &KernelDef) -> Config {
    complete(def, &def.space.default_config())
}

fn launch_amax<F: Fp8Type>(d: &Device, t: &mut Tensors<F>) -> Result<(), PerfError> {
    let def = tensor::fp8_amax_f32::def();
    let config = default_of(def);
    let dims = linear(&config, ROWS * COLS / 4);
    tensor::fp8_amax_f32::launch(d, &config, dims, &t.x, &mut t.amax, u32_of(ROWS * COLS))?;
    Ok(())
}

fn launch_op<F: Fp8Type>(d: &Device, op: Op, t: &mut Tensors<F>) -> Result<(), PerfError> {
    let k = F::kernels::<f32>();
    let (n, rows, cols, ld) = (
        u32_of(ROWS * COLS),
        u32_of(ROWS),
        u32_of(COLS),
        u32_of(COLS),
    );
    let (def, items): (&KernelDef, usize) = match op {
        Op::Amax => return launch_amax(d, t),
        Op::AmaxAndTensor => {
            launch_amax(d, t)?;
            return launch_op(d, Op::Tensor, t);
        }
        Op::Tensor => ((k.quantize_tensor)(), ROWS * COLS / 4),
        Op::Delayed => ((k.quantize_delayed)(), ROWS * COLS / 4),
        Op::Rows { g } => ((k.quantize_rows)(), ROWS * COLS.div_ceil(g) * (g / 4)),
        Op::RowsT { .. } => ((k.quantize_rows_t)(), 0),
        Op::Blocks => ((k.quantize_blocks)(), 0),
        Op::Dequantize => ((k.dequantize)(), ROWS * COLS / 4),
    };
    let config = default_of(def);
    let dims = match op {
        Op::RowsT { .. } => LaunchDims::grid_2d(
            (u32_of(COLS.div_ceil(32)), u32_of(ROWS.div_ceil(128))),
            (256, 1),
        ),
        Op::Blocks => LaunchDims::grid_2d(
            (u32_of(COLS.div_ceil(128)), u32_of(ROWS.div_ceil(128))),
            (tunable(&config, "BLOCK"), 1),
        ),
        _ => linear(&config, items),
    };
    let Tensors {
        x,
        amax,
        scale,
        q,
        scales,
        y,
    } = t;
    let mut args: Vec<Arg> = match op {
        Op::Tensor => vec![
            Arg::slice(x),
            Arg::slice(amax),
            Arg::slice_mut(q),
            Arg::slice_mut(scale),
            Arg::value(n),
        ],
        Op::Delayed => vec![
            Arg::slice(x),
            Arg::slice(scale),
            Arg::slice_mut(q),
            Arg::slice_mut(amax),
            Arg::value(n),
        ],
        Op::Rows { .. } | Op::Blocks => vec![
            Arg::slice(x),
            Arg::slice_mut(q),
            Arg::slice_mut(scales),
            Arg::value(rows),
            Arg::value(cols),
            Arg::value(ld),
        ],
        Op::RowsT { .. } => vec![
            Arg::slice(x),
            Arg::slice_mut(q),
            Arg::slice_mut(scales),
            Arg::value(rows),
            Arg::value(cols),
            Arg::value(ld),
            Arg::value(u32_of(ROWS)),
        ],
        _ => {
            let (row_shift, col_shift, scale_ld) = Granularity::Tensor.scale_indexing(COLS);
            vec![
                Arg::slice(q),
                Arg::slice(scale),
                Arg::slice_mut(y),
                Arg::value(rows),
                Arg::value(cols),
                Arg::value(ld),
                Arg::value(row_shift),
                Arg::value(col_shift),
                Arg::value(scale_ld),
            ]
        }
    };
    d.launch(def, &config, dims, &mut args)?;
    Ok(())
}

/// The ops timed for one format (f32 instances), with the kernel names they stand for.
pub fn ops(format: &str) -> Vec<(String, Op)> {
    let g = 128;
    vec![
        ("fp8_amax_f32".into(), Op::Amax),
        (format!("fp8_quantize_tensor_f32_{format}"), Op::Tensor),
        (
            format!("fp8_amax_f32 + fp8_quantize_tensor_f32_{format}"),
            Op::AmaxAndTensor,
        ),
        (format!("fp8_quantize_delayed_f32_{format}"), Op::Delayed),
        (
            format!("fp8_quantize_rows_f32_{format} (G={g})"),
            Op::Rows { g },
        ),
        (
            format!("fp8_quantize_rows_t_f32_{format} (G={g})"),
            Op::RowsT { g },
        ),
        (format!("fp8_quantize_blocks_f32_{format}"), Op::Blocks),
        (
            format!("fp8_dequantize_{format}_f32 (per tensor)"),
            Op::Dequantize,
        ),
    ]
}

fn tensors<F: Fp8Type>(device: &Device) -> Result<Tensors<F>, PerfError> {
    let n = ROWS * COLS;
    // Magnitudes over several binades, as activations have.
    let host: Vec<f32> = (0..n as u64)
        .map(|i| uniform(3, i) * (1 << (i % 7)) as f32)
        .collect();
    let scales = ROWS.max(COLS) * ROWS.max(COLS).div_ceil(16);
    Ok(Tensors {
        x: device.upload(&host)?,
        amax: device.zeros(1)?,
        scale: device.upload(&[1.0f32 / 64.0])?,
        q: device.zeros(n)?,
        scales: device.zeros(scales)?,
        y: device.zeros(n)?,
    })
}

fn format_entries<F: Fp8Type>(
    device: &Device,
    timer: &mut CudaTimer,
    peak: Option<f64>,
    out: &mut Vec<Value>,
) -> Result<(), PerfError> {
    let mut t = tensors::<F>(device)?;
    // The amax the cast and the dequantization read.
    launch_amax(device, &mut t)?;
    for (name, op) in ops(F::NAME) {
        let measured = time(timer, &policy(), || launch_op(device, op, &mut t));
        let entry = entry(&name, op, peak, measured);
        println!("  {}", summary_line(&entry));
        out.push(entry);
    }
    Ok(())
}

fn entry(
    name: &str,
    op: Op,
    peak: Option<f64>,
    measured: Result<warpforge_autotune::Measurement, PerfError>,
) -> Value {
    let b = bytes(op, ROWS, COLS);
    let mut e = json!({ "kernel": name, "rows": ROWS, "cols": COLS, "bytes": b });
    match measured {
        Ok(m) => {
            e["time"] = measurement_json(&m);
            let rate = b as f64 / m.median;
            e["gb_per_s"] = (rate / 1e9).into();
            if let Some(peak) = peak {
                e["fraction_of_peak"] = (rate / peak).into();
                e["meets_target"] = (rate / peak >= TARGET_FRACTION).into();
            }
        }
        Err(err) => e["error"] = err.to_string().into(),
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
    let mut errors = Vec::new();
    if let Err(e) = format_entries::<F8E4M3>(device, &mut timer, peak_value, &mut results) {
        errors.push(format!("e4m3: {e}"));
    }
    if !options.quick {
        if let Err(e) = format_entries::<F8E5M2>(device, &mut timer, peak_value, &mut results) {
            errors.push(format!("e5m2: {e}"));
        }
    }
    json!({
        "peak_gb_per_s": peak_value.map(|p| p / 1e9),
        "peak_error": peak.err().map(|e| e.to_string()),
        "target_fraction": TARGET_FRACTION,
        "kernels": results,
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_accounting_follows_the_kernel_docs() {
        let n = (ROWS * COLS) as u64;
        assert_eq!(bytes(Op::Amax, ROWS, COLS), 4 * n);
        assert_eq!(bytes(Op::AmaxAndTensor, ROWS, COLS), 9 * n + 4);
        // 8192 rows × 32 groups of 128, one f32 scale each.
        assert_eq!(
            bytes(Op::Rows { g: 128 }, ROWS, COLS),
            5 * n + 4 * 8192 * 32
        );
        // Xt has 4096 rows of 8192: 64 groups each.
        assert_eq!(
            bytes(Op::RowsT { g: 128 }, ROWS, COLS),
            5 * n + 4 * 4096 * 64
        );
        assert_eq!(bytes(Op::Blocks, ROWS, COLS), 5 * n + 4 * 64 * 32);
        assert_eq!(bytes(Op::Blocks, 130, 129), 5 * 130 * 129 + 4 * 2 * 2);
        assert_eq!(bytes(Op::Dequantize, 1, 4), 24);
    }

    #[test]
    fn the_input_is_over_64_mib() {
        const { assert!(ROWS * COLS * 4 >= 64 << 20) };
    }

    #[test]
    fn every_library_fp8_quantizer_is_timed() {
        let timed: Vec<String> = ops("e4m3").into_iter().map(|(n, _)| n).collect();
        let lib = warpforge_kernels::library();
        let f32_e4m3 = |name: &str| {
            warpforge_kernels::fp8::instance_of(name)
                .is_some_and(|i| i.float == "f32" && i.format != Some("e5m2"))
        };
        for k in lib.iter().filter(|k| f32_e4m3(k.name())) {
            assert!(
                timed.iter().any(|t| t.split(' ').any(|w| w == k.name())),
                "{} is not timed",
                k.name()
            );
        }
    }

    #[test]
    fn entry_reports_bandwidth_against_the_peak() {
        let m = warpforge_autotune::Measurement {
            median: 1e-3,
            spread: 0.0,
            samples: 10,
        };
        let e = entry("k", Op::Amax, Some(4.8e12), Ok(m));
        let gbs = e["gb_per_s"].as_f64().unwrap();
        assert!((gbs - 4.0 * (ROWS * COLS) as f64 / 1e-3 / 1e9).abs() < 1e-6);
        assert_eq!(e["meets_target"], false);
        assert!(e["fraction_of_peak"].as_f64().unwrap() < 0.1);
        let e = entry("k", Op::Amax, None, Err(PerfError::device("x", "y")));
        assert_eq!(e["error"], "x: y");
        assert!(summary_line(&e).contains("ERROR x: y"));
    }
}
