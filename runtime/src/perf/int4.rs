//! The int4 dequant-GEMM (`int4_gemm_oc_f16`, symmetric group-128 weights, the heuristic
//! config for each batch) against cuBLAS's f16 GEMM (`cublasGemmEx`, f16 A and W, f32
//! accumulation and C) on the same problem in the same run: `C[m, n] = A[m, k] · W[k, n]`
//! with (k, n) = (4096, 4096), (8192, 8192), (8192, 28672) at batch m = 1, 8, 16, 32, 64,
//! 128. Reports each time, the speedup over cuBLAS beside its target (≥ 3.5× at m ≤ 16,
//! ≥ 1.5× at m = 128; MARLIN's ideal is 3.87× at group 128), and at m = 1 the fraction of
//! the DRAM peak reached (the bytes the library description counts: codes, scales, A, C).
//! Our C at m = 1 is checked against the host reference with MARLIN's criterion.

use super::cublas::{Cublas, CublasError};
use super::{
    device_peak_bandwidth, measurement_json, policy, time, uniform, PerfError, PerfOptions,
};
use cudarc::driver::CudaSlice;
use serde_json::{json, Value};
use warpforge_autotune::bench::CudaTimer;
use warpforge_dsl::prelude::f16;
use warpforge_dsl::{Buffer, Device, Element};
use warpforge_kernels::gemm_tc::Layout;
use warpforge_kernels::int4::family::{random_weight, Shape};
use warpforge_kernels::int4::host::{
    def_of, default_config, launch, reference, workspace_len, DeviceInt4,
};
use warpforge_kernels::int4::layout::pack;
use warpforge_kernels::int4::GroupDim;

/// (k, n) of the timed weights.
pub const WEIGHTS: [(usize, usize); 3] = [(4096, 4096), (8192, 8192), (8192, 28672)];

/// Batch sizes.
pub const BATCHES: [usize; 6] = [1, 8, 16, 32, 64, 128];

/// The speedup over cuBLAS f16 the kernel should reach at batch `m`.
pub fn target(m: usize) -> Option<f64> {
    match m {
        0..=16 => Some(3.5),
        128 => Some(1.5),
        _ => None,
    }
}

/// The shapes timed: every (k, n) × batch; `quick` keeps the largest weight at m = 1, 16,
/// 128.
pub fn shapes(quick: bool) -> Vec<(usize, usize, Vec<usize>)> {
    if quick {
        return vec![(8192, 28672, vec![1, 16, 128])];
    }
    WEIGHTS
        .iter()
        .map(|&(k, n)| (k, n, BATCHES.to_vec()))
        .collect()
}

/// The int4 part of the perf report.
pub fn run(device: &Device, options: &PerfOptions) -> Value {
    println!("perf: int4 GEMM vs cuBLAS f16");
    let Some(stream) = device.cuda_stream() else {
        return json!({ "error": "not a GPU" });
    };
    let mut timer = match CudaTimer::new(device) {
        Ok(t) => t,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let cublas = Cublas::new(stream);
    let note = match &cublas {
        Ok(c) => Value::from(format!("available ({})", c.path.display())),
        Err(e) => Value::from(format!("skipped: {e}")),
    };
    println!("  cuBLAS: {note}");
    let peak = device_peak_bandwidth(device).ok();
    let mut results = Vec::new();
    for (k, n, batches) in shapes(options.quick) {
        match weight_entries(device, &mut timer, &cublas, peak, (k, n), &batches) {
            Ok(entries) => results.extend(entries),
            Err(e) => {
                println!("  int4 {k}x{n}: ERROR {e}");
                results.push(json!({ "k": k, "n": n, "error": e.to_string() }));
            }
        }
    }
    json!({ "kernel": "int4_gemm_oc_f16", "weights": "symmetric, group 128", "cublas": note,
            "peak_dram_bytes_per_s": peak, "shapes": results })
}

/// One weight (k × n): packed and uploaded once, with cuBLAS's f16 copy, then every batch.
fn weight_entries(
    device: &Device,
    timer: &mut CudaTimer,
    cublas: &Result<Cublas, CublasError>,
    peak: Option<f64>,
    (k, n): (usize, usize),
    batches: &[usize],
) -> Result<Vec<Value>, PerfError> {
    let shape = |m| Shape {
        m,
        n,
        k,
        group: 128,
        act_order: false,
        asym: false,
    };
    let w = random_weight(GroupDim::Oc, shape(1));
    let packed = pack::<f16>(&w).map_err(|e| PerfError::device("packing", e))?;
    let weight = DeviceInt4::upload(device, packed)?;
    // cuBLAS's W: an f16 weight of the same shape, n rows of k (a Linear's layout). Its
    // values do not change the time; ours is checked against the host reference instead.
    let raw_w = match (cublas, device.cuda_stream()) {
        (Ok(_), Some(stream)) => {
            let bits: Vec<u16> = (0..(k * n) as u64)
                .map(|i| f16::from_f32(uniform(5, i)).to_bits())
                .collect();
            Some(
                stream
                    .clone_htod(&bits)
                    .map_err(|e| PerfError::device("copying W", e))?,
            )
        }
        _ => None,
    };
    let def = def_of(GroupDim::Oc, f16::SCALAR).expect("the f16 Oc instance");
    let kernel = warpforge_kernels::find(def.name.as_str()).expect("registered");
    let mut out = Vec::new();
    for &m in batches {
        let a_host: Vec<f16> = (0..(m * k) as u64)
            .map(|i| f16::from_f32(uniform(3, i)))
            .collect();
        let a = device.upload(&a_host)?;
        let mut c: Buffer<f16> = device.zeros(m * n)?;
        let config = default_config(def, m);
        let mut ws = device.zeros::<f32>(workspace_len(&config, m, &weight.packed).max(1))?;
        let ours = time(timer, &policy(), || {
            Ok(launch(
                device, &config, &weight, &a, k as u32, m as u32, &mut c, &mut ws,
            )?)
        })?;
        let mut entry = json!({
            "k": k, "n": n, "m": m, "config": config.to_string(),
            "ours": measurement_json(&ours),
        });
        if let Some(t) = target(m) {
            entry["target_speedup"] = t.into();
        }
        if m == 1 {
            let got: Vec<f32> = device.download(&c)?.iter().map(|x| x.to_f32()).collect();
            let want = reference::<f16>(&w, &a_host, 1, k);
            let (err, mag) = got
                .iter()
                .zip(&want)
                .fold((0f64, 0f64), |(e, s), (&g, &r)| {
                    (e + (g - r).abs() as f64, s + r.abs() as f64)
                });
            entry["marlin_error"] = (err / mag).into();
            entry["correct"] = (err / mag < 1e-3).into();
            let problem = shape(1).problem();
            if let (Some(bytes), Some(peak)) = (kernel.bytes(&problem), peak) {
                entry["dram_fraction"] = (bytes as f64 / ours.median / peak).into();
            }
        }
        if let (Ok(cublas), Some(raw_w), Some(stream)) = (cublas, &raw_w, device.cuda_stream()) {
            let bits: Vec<u16> = a_host.iter().map(|x| x.to_bits()).collect();
            let err = |e| PerfError::device("cuBLAS operands", e);
            let raw_a: CudaSlice<u16> = stream.clone_htod(&bits).map_err(err)?;
            let mut raw_c: CudaSlice<f32> = stream.alloc_zeros(m * n).map_err(err)?;
            let dims = (m, n, k);
            let lds = (k, k, n);
            let base = time(timer, &policy(), || {
                Ok(cublas.gemm(Layout::Nt, dims, lds, &raw_a, raw_w, &mut raw_c)?)
            })?;
            let speedup = base.median / ours.median;
            entry["cublas_f16"] = measurement_json(&base);
            entry["speedup"] = speedup.into();
            if let Some(t) = target(m) {
                entry["meets_target"] = (speedup >= t).into();
            }
        }
        println!("  {}", summary_line(&entry));
        out.push(entry);
    }
    Ok(out)
}

/// One progress line.
pub fn summary_line(e: &Value) -> String {
    let f = |v: &Value, d: usize| v.as_f64().map_or("-".to_string(), |x| format!("{x:.d$}"));
    let mut line = format!(
        "int4 k={} n={} m={:<3} ours {} ms",
        e["k"],
        e["n"],
        e["m"],
        f(&e["ours"]["ms"], 4)
    );
    if e["cublas_f16"].is_object() {
        line += &format!(
            ", cuBLAS f16 {} ms, speedup {}x",
            f(&e["cublas_f16"]["ms"], 4),
            f(&e["speedup"], 2)
        );
    }
    if let Some(t) = e["target_speedup"].as_f64() {
        line += &format!(" (target >= {t}x)");
    }
    if e["dram_fraction"].is_number() {
        line += &format!(
            ", DRAM {}% of peak",
            f(
                &(e["dram_fraction"].as_f64().unwrap_or(0.0) * 100.0).into(),
                1
            )
        );
    }
    if e["marlin_error"].is_number() {
        line += &format!(", mean rel err {}", f(&e["marlin_error"], 6));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_targets_follow_the_issue() {
        let all = shapes(false);
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|(_, _, b)| b == &BATCHES.to_vec()));
        assert_eq!(target(16), Some(3.5));
        assert_eq!(target(32), None);
        assert_eq!(target(128), Some(1.5));
        assert_eq!(shapes(true), vec![(8192, 28672, vec![1, 16, 128])]);
    }

    #[test]
    fn summary_line_shows_speedup_and_bandwidth() {
        let e = json!({ "k": 4096, "n": 4096, "m": 1, "ours": { "ms": 0.01 },
            "cublas_f16": { "ms": 0.04 }, "speedup": 4.0, "target_speedup": 3.5,
            "dram_fraction": 0.8, "marlin_error": 0.0002 });
        let line = summary_line(&e);
        assert!(line.contains("speedup 4.00x (target >= 3.5x)"), "{line}");
        assert!(line.contains("DRAM 80.0% of peak"), "{line}");
    }
}
