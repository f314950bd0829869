//! Decode attention on the GPU (`flash_attn_decode_bf16`, Llama-3-8B's attention: 32 query
//! heads, 8 KV heads, d = 128, bf16, pages of 16 keys), two parts:
//!
//! - **decode**: one new token per sequence over 1K and 4K cached keys, batch 1 to 256,
//!   split as `decode_splits` chooses for this GPU's SM count; GB/s from the bytes the
//!   kernel's library description counts (K and V once, Q, O, LSE) against the DRAM peak,
//!   beside PyTorch's `scaled_dot_product_attention` on the same shapes when
//!   `scripts/gpu-check-attention-decode.py` measured it (`--torch-decode-json`).
//! - **hydragen**: batch 64 / 256 sequences sharing a 1K–16K prefix, each with its own
//!   128-key suffix (the new token's key last), one new token each. With sharing: ONE
//!   non-causal `flash_attn_fwd_bf16` over the prefix for all the batch's queries (one
//!   varlen sequence of `batch` rows: the prefix is read once), decode over the suffixes,
//!   `attn_merge_bf16` of the two parts. Without: decode over each full sequence (the
//!   prefix pages are shared through the block tables, as a paged cache with prefix caching
//!   holds them, but every sequence's blocks read them again). Attention throughput in
//!   decoded tokens per second (one layer), the ratio, and the drop from a 1K to a 16K
//!   prefix, printed next to the issue's targets (Hydragen paper: ≥ 10× at batch 256 with a
//!   16K prefix; < 15% drop from 1K to 16K).
//!
//! The page pool (K and V, 2 GiB each at batch 256 × 4K keys) is filled once with random
//! bf16 values and shared by every shape; each sequence's pages are a shuffled, disjoint set
//! of it (the prefix's pages shared in the Hydragen part). The merge of the sharing path
//! reads a stacked copy of the two parts (the DSL's buffers have no sub-views, so the two
//! launches cannot write one stacked buffer; the bytes are the same), made once from the
//! parts' real outputs, which also check the two paths against each other on the GPU.

use super::{device_peak_bandwidth, measurement_json, policy, time, uniform, PerfError};
use super::{torch_section, PerfOptions};
use serde_json::{json, Value};
use warpforge_autotune::bench::CudaTimer;
use warpforge_autotune::Measurement;
use warpforge_dsl::prelude::bf16;
use warpforge_dsl::{Buffer, Config, Device};
use warpforge_kernels::attention::{
    decode_default_config, decode_launch, decode_splits, default_config, launch, merge_launch,
    row_tiles, AttnBuffers, AttnShape, DecodeProblem, DecodeWorkspace, KvLayout, MergeShape,
};

pub const HEADS: usize = 32;
pub const KV_HEADS: usize = 8;
pub const HEAD_DIM: usize = 128;
pub const PAGE: usize = 16;
/// Keys of each sequence's own suffix in the Hydragen part.
pub const SUFFIX: usize = 128;
/// Hydragen targets (the paper's figures, issue 11): speedup at batch 256 with a 16K
/// prefix, and the largest throughput drop from a 1K to a 16K prefix.
pub const TARGET_SPEEDUP: f64 = 10.0;
pub const TARGET_DROP: f64 = 0.15;

/// (batch, context) of the decode part.
pub fn decode_grid(quick: bool) -> Vec<(usize, usize)> {
    let (batches, contexts): (&[usize], &[usize]) = if quick {
        (&[1, 16, 256], &[4096])
    } else {
        (&[1, 4, 16, 64, 256], &[1024, 4096])
    };
    contexts
        .iter()
        .flat_map(|&c| batches.iter().map(move |&b| (b, c)))
        .collect()
}

/// (batch, prefix) of the Hydragen part.
pub fn hydragen_grid(quick: bool) -> Vec<(usize, usize)> {
    let (batches, prefixes): (&[usize], &[usize]) = if quick {
        (&[256], &[1024, 16384])
    } else {
        (&[64, 256], &[1024, 4096, 16384])
    };
    batches
        .iter()
        .flat_map(|&b| prefixes.iter().map(move |&p| (b, p)))
        .collect()
}

/// Pages the pool needs: the largest decode batch × context, or the Hydragen prefix plus
/// every suffix, whichever is more.
pub fn pool_pages(quick: bool) -> usize {
    let decode = decode_grid(quick)
        .iter()
        .map(|&(b, c)| b * c.div_ceil(PAGE))
        .max()
        .unwrap_or(0);
    let hydragen = hydragen_grid(quick)
        .iter()
        .map(|&(b, p)| p.div_ceil(PAGE) + b * SUFFIX.div_ceil(PAGE))
        .max()
        .unwrap_or(0);
    decode.max(hydragen)
}

/// A seeded shuffle of `0..n` (the physical page order: caches fragment).
pub fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (uniform(seed, i as u64) * 0.5 + 0.5) * (i + 1) as f32;
        order.swap(i, (j as usize).min(i));
    }
    order
}

/// `n` random bf16 values in [−1, 1), generated on every core (gigabytes of them).
fn random_bf16(n: usize, seed: u64) -> Vec<bf16> {
    let threads = std::thread::available_parallelism().map_or(4, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    let mut out = vec![bf16::ZERO; n];
    std::thread::scope(|s| {
        for (c, part) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                let base = (c * chunk) as u64;
                for (i, x) in part.iter_mut().enumerate() {
                    *x = bf16::from_f32(uniform(seed, base + i as u64));
                }
            });
        }
    });
    out
}

fn shape(q_lens: Vec<usize>, k_lens: Vec<usize>, causal: bool) -> AttnShape {
    AttnShape {
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        causal,
        q_lens,
        k_lens,
    }
}

fn scale() -> f32 {
    1.0 / (HEAD_DIM as f32).sqrt()
}

fn attn_error(e: warpforge_kernels::attention::AttnError) -> PerfError {
    PerfError::device("attention launch", e)
}

/// Block table rows: `shared` pages (the same in every row), then sequence `b`'s own
/// pages `first + b·per .. first + (b + 1)·per` of the shuffled order.
pub fn table(order: &[u32], shared: &[u32], batch: usize, first: usize, per: usize) -> Vec<u32> {
    (0..batch)
        .flat_map(|b| {
            let own = &order[first + b * per..first + (b + 1) * per];
            shared.iter().chain(own).copied()
        })
        .collect()
}

/// Buffers of `shape` over paged K/V `kv` (`table`: `[sequences, per]` pages of PAGE).
fn buffers(
    device: &Device,
    shape: &AttnShape,
    q: &[bf16],
    (table, per): (&[u32], usize),
    (k, v): (Buffer<bf16>, Buffer<bf16>),
) -> Result<AttnBuffers<bf16>, PerfError> {
    Ok(AttnBuffers {
        q: device.upload(q)?,
        k,
        v,
        o: device.zeros(q.len())?,
        lse: device.zeros(shape.total_q() * HEADS)?,
        cu_seqlens_q: device.upload(&shape.cu_seqlens_q())?,
        cu_seqlens_k: device.upload(&shape.cu_seqlens_k())?,
        block_table: device.upload(table)?,
        kv_layout: KvLayout::Paged {
            page_size: PAGE as u32,
            pages_per_seq: per as u32,
        },
    })
}

/// The page pool and what every timing needs.
struct Bench<'a> {
    device: &'a Device,
    /// None: run each launch sequence once, untimed (the interpreter test of the plumbing).
    timer: Option<CudaTimer>,
    sm_count: usize,
    peak: Option<f64>,
    /// K and V caches `[pages, PAGE, KV_HEADS, HEAD_DIM]`, moved into a shape's buffers
    /// for its launches and back ([`Bench::take`], [`Bench::put`]).
    pool: Option<(Buffer<bf16>, Buffer<bf16>)>,
    /// Physical page ids in the order sequences take them.
    order: Vec<u32>,
}

impl Bench<'_> {
    fn take(&mut self) -> Result<(Buffer<bf16>, Buffer<bf16>), PerfError> {
        self.pool
            .take()
            .ok_or_else(|| PerfError::device("page pool", "lost after an earlier error"))
    }

    fn put(&mut self, bufs: AttnBuffers<bf16>) {
        self.pool = Some((bufs.k, bufs.v));
    }

    /// `decode_splits` for this GPU at the default config.
    fn splits(&self, shape: &AttnShape) -> usize {
        let block_n = decode_default_config(HEAD_DIM).get("BLOCK_N").unwrap_or(32) as usize;
        decode_splits(
            &shape.k_lens,
            KV_HEADS,
            row_tiles(shape),
            self.sm_count,
            block_n,
        )
    }

    /// The median time of `launch` (or, untimed, one run and a placeholder of 1 s).
    fn measure(
        &mut self,
        launch: impl FnMut() -> Result<(), PerfError>,
    ) -> Result<Measurement, PerfError> {
        let mut launch = launch;
        match &mut self.timer {
            Some(timer) => time(timer, &policy(), launch),
            None => launch().map(|()| Measurement {
                median: 1.0,
                spread: 0.0,
                samples: 1,
            }),
        }
    }

    /// Times decode attention of `shape` on `bufs`; returns the measurement and splits.
    fn time_decode(
        &mut self,
        shape: &AttnShape,
        bufs: &mut AttnBuffers<bf16>,
    ) -> Result<(Measurement, usize), PerfError> {
        let splits = self.splits(shape);
        let config = decode_default_config(HEAD_DIM);
        let device = self.device;
        let mut ws = DecodeWorkspace::new(device, shape, splits).map_err(attn_error)?;
        let m = self.measure(|| {
            decode_launch(device, &config, shape, bufs, &mut ws, scale()).map_err(attn_error)
        })?;
        Ok((m, splits))
    }
}

/// One decode shape: (batch, context) → entry.
fn decode_entry(b: &mut Bench, batch: usize, context: usize) -> Result<Value, PerfError> {
    let s = shape(vec![1; batch], vec![context; batch], true);
    let per = context.div_ceil(PAGE);
    let t = table(&b.order, &[], batch, 0, per);
    let q = random_bf16(batch * HEADS * HEAD_DIM, 3);
    let pool = b.take()?;
    let mut bufs = buffers(b.device, &s, &q, (&t, per), pool)?;
    let measured = b.time_decode(&s, &mut bufs);
    b.put(bufs);
    let (m, splits) = measured?;
    let problem = DecodeProblem {
        splits,
        page_size: PAGE,
        shape: s,
    }
    .to_problem();
    let bytes = warpforge_kernels::find("flash_attn_decode_bf16").and_then(|k| k.bytes(&problem));
    let mut e = json!({
        "batch": batch, "context": context, "splits": splits,
        "config": decode_default_config(HEAD_DIM).to_string(),
        "time": measurement_json(&m), "bytes": bytes,
    });
    if let Some(bytes) = bytes {
        let rate = bytes as f64 / m.median;
        e["gb_per_s"] = (rate / 1e9).into();
        if let Some(peak) = b.peak {
            e["fraction_of_peak"] = (rate / peak).into();
        }
    }
    Ok(e)
}

/// One Hydragen shape: (batch, prefix) → entry with both paths' times and their agreement.
fn hydragen_entry(b: &mut Bench, batch: usize, prefix: usize) -> Result<Value, PerfError> {
    if !prefix.is_multiple_of(PAGE) {
        // The full sequences' tables put the suffix's pages right after the prefix's.
        return Err(PerfError::device(
            "hydragen layout",
            "the prefix must be whole pages",
        ));
    }
    let (pp, sp) = (prefix.div_ceil(PAGE), SUFFIX.div_ceil(PAGE));
    let prefix_pages = b.order[..pp].to_vec();
    let d = b.device;
    let q = random_bf16(batch * HEADS * HEAD_DIM, 5);
    // Without sharing: decode over prefix ++ suffix, the prefix's pages in every row.
    let full = shape(vec![1; batch], vec![prefix + SUFFIX; batch], true);
    let full_table = table(&b.order, &prefix_pages, batch, pp, sp);
    let pool = b.take()?;
    let mut bufs = buffers(d, &full, &q, (&full_table, pp + sp), pool)?;
    let unshared = b
        .time_decode(&full, &mut bufs)
        .and_then(|m| Ok((m, d.download(&bufs.o)?)));
    b.put(bufs);
    let ((unshared, full_splits), want) = unshared?;
    // With sharing: the prefix once for every query (non-causal forward), the suffixes by
    // decode, then the merge. Both read the pool: it moves between their buffers.
    let pre = shape(vec![batch], vec![prefix], false);
    let sfx = shape(vec![1; batch], vec![SUFFIX; batch], true);
    let sfx_table = table(&b.order, &[], batch, pp, sp);
    let pool = b.take()?;
    let mut pre_bufs = buffers(d, &pre, &q, (&prefix_pages, pp), pool)?;
    let placeholder = (d.zeros::<bf16>(1)?, d.zeros::<bf16>(1)?);
    let mut sfx_bufs = buffers(d, &sfx, &q, (&sfx_table, sp), placeholder)?;
    let shared = hydragen_shared(b, (&pre, &mut pre_bufs), (&sfx, &mut sfx_bufs));
    b.put(pre_bufs);
    let (shared, sfx_splits, got) = shared?;
    let max_diff = got
        .iter()
        .zip(&want)
        .map(|(x, y)| (x.to_f32() - y.to_f32()).abs())
        .fold(0.0f32, f32::max);
    let tokens_per_s = |m: &Measurement| batch as f64 / m.median;
    Ok(json!({
        "batch": batch, "prefix": prefix, "suffix": SUFFIX,
        "shared": { "time": measurement_json(&shared), "tokens_per_s": tokens_per_s(&shared),
                    "decode_splits": sfx_splits },
        "unshared": { "time": measurement_json(&unshared), "tokens_per_s": tokens_per_s(&unshared),
                      "decode_splits": full_splits },
        "speedup": unshared.median / shared.median,
        // Both paths' O agree within a few bf16 roundings (|O| < 1: 5·2^-8).
        "max_abs_diff_shared_vs_unshared": max_diff,
        "paths_agree": max_diff <= 5.0 / 256.0,
    }))
}

/// The sharing path: runs it once to build the merge's stacked parts from the real
/// outputs (and returns the merged O), then times forward + decode + merge.
fn hydragen_shared(
    b: &mut Bench,
    (pre, pre_bufs): (&AttnShape, &mut AttnBuffers<bf16>),
    (sfx, sfx_bufs): (&AttnShape, &mut AttnBuffers<bf16>),
) -> Result<(Measurement, usize, Vec<bf16>), PerfError> {
    let d = b.device;
    let splits = b.splits(sfx);
    let (fwd_config, config) = (default_config(HEAD_DIM), decode_default_config(HEAD_DIM));
    let mut ws = DecodeWorkspace::new(d, sfx, splits).map_err(attn_error)?;
    let mut parts = |pre_bufs: &mut AttnBuffers<bf16>, sfx_bufs: &mut AttnBuffers<bf16>| {
        launch(d, &fwd_config, pre, pre_bufs, scale()).map_err(attn_error)?;
        std::mem::swap(&mut pre_bufs.k, &mut sfx_bufs.k);
        std::mem::swap(&mut pre_bufs.v, &mut sfx_bufs.v);
        let decoded = decode_launch(d, &config, sfx, sfx_bufs, &mut ws, scale());
        std::mem::swap(&mut pre_bufs.k, &mut sfx_bufs.k);
        std::mem::swap(&mut pre_bufs.v, &mut sfx_bufs.v);
        decoded.map_err(attn_error)
    };
    parts(pre_bufs, sfx_bufs)?;
    let stacked_o = [d.download(&pre_bufs.o)?, d.download(&sfx_bufs.o)?].concat();
    let stacked_lse = [d.download(&pre_bufs.lse)?, d.download(&sfx_bufs.lse)?].concat();
    let (o_parts, lse_parts) = (d.upload(&stacked_o)?, d.upload(&stacked_lse)?);
    let ms = MergeShape {
        parts: 2,
        rows: sfx.total_q(),
        heads: HEADS,
        head_dim: HEAD_DIM,
    };
    let merge_config = Config::new().with("WARPS", 4);
    let (mut o, mut lse) = (
        d.zeros::<bf16>(stacked_o.len() / 2)?,
        d.zeros::<f32>(stacked_lse.len() / 2)?,
    );
    let merge = |o: &mut Buffer<bf16>, lse: &mut Buffer<f32>| {
        merge_launch(d, &merge_config, ms, (&o_parts, &lse_parts), (o, lse)).map_err(attn_error)
    };
    merge(&mut o, &mut lse)?;
    let merged = d.download(&o)?;
    let m = b.measure(|| {
        parts(pre_bufs, sfx_bufs)?;
        merge(&mut o, &mut lse)
    })?;
    Ok((m, splits, merged))
}

/// The ratio and the prefix-length drop per batch, beside the targets.
pub fn hydragen_summary(entries: &[Value]) -> Value {
    let rate = |e: &Value| e["shared"]["tokens_per_s"].as_f64();
    let mut drops = Vec::new();
    let batches: std::collections::BTreeSet<u64> =
        entries.iter().filter_map(|e| e["batch"].as_u64()).collect();
    for batch in batches {
        let at = |p: u64| {
            entries
                .iter()
                .find(|e| e["batch"].as_u64() == Some(batch) && e["prefix"].as_u64() == Some(p))
                .and_then(rate)
        };
        if let (Some(short), Some(long)) = (at(1024), at(16384)) {
            let drop = 1.0 - long / short;
            drops.push(json!({ "batch": batch, "drop_1k_to_16k": drop,
                               "meets_target": drop < TARGET_DROP }));
        }
    }
    let headline = entries
        .iter()
        .find(|e| e["batch"].as_u64() == Some(256) && e["prefix"].as_u64() == Some(16384))
        .and_then(|e| e["speedup"].as_f64());
    json!({
        "target_speedup_batch256_prefix16k": TARGET_SPEEDUP,
        "speedup_batch256_prefix16k": headline,
        "meets_speedup_target": headline.map(|s| s >= TARGET_SPEEDUP),
        "target_drop_1k_to_16k": TARGET_DROP,
        "drops": drops,
    })
}

/// PyTorch's time for a decode shape from the peer's JSON (`decode`: entries with batch,
/// context, ms).
fn torch_ms(torch: &Value, batch: usize, context: usize) -> Option<f64> {
    torch["decode"].as_array()?.iter().find_map(|e| {
        let same = e["batch"].as_u64() == Some(batch as u64)
            && e["context"].as_u64() == Some(context as u64);
        if same {
            e["ms"].as_f64()
        } else {
            None
        }
    })
}

fn sm_count(device: &Device) -> Result<usize, PerfError> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    let stream = device
        .cuda_stream()
        .ok_or_else(|| PerfError::device("SM count", "not a GPU"))?;
    let n = stream
        .context()
        .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| PerfError::device("reading the SM count", e))?;
    Ok(n as usize)
}

fn f(v: &Value, p: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.p$}"))
}

/// The decode-attention part of the perf report.
pub fn run(device: &Device, options: &PerfOptions) -> Value {
    let torch = torch_section(options.torch_decode_json.as_deref());
    let setup = (|| {
        let timer = CudaTimer::new(device).map_err(|e| PerfError::device("timer", e))?;
        let sm_count = sm_count(device)?;
        let pages = pool_pages(options.quick);
        let n = pages * PAGE * KV_HEADS * HEAD_DIM;
        println!(
            "  page pool: {pages} pages of {PAGE} keys, {:.1} GiB each for K and V",
            (n * 2) as f64 / (1u64 << 30) as f64
        );
        let pool = (
            device.upload(&random_bf16(n, 1))?,
            device.upload(&random_bf16(n, 2))?,
        );
        Ok::<_, PerfError>(Bench {
            device,
            timer: Some(timer),
            sm_count,
            peak: device_peak_bandwidth(device).ok(),
            pool: Some(pool),
            order: shuffled(pages, 7),
        })
    })();
    let mut b = match setup {
        Ok(b) => b,
        Err(e) => return json!({ "error": e.to_string(), "torch": torch }),
    };
    println!(
        "  {} SMs, DRAM peak {} GB/s",
        b.sm_count,
        b.peak.map_or("?".into(), |p| format!("{:.0}", p / 1e9))
    );
    let mut decode = Vec::new();
    for (batch, context) in decode_grid(options.quick) {
        let mut e = decode_entry(&mut b, batch, context).unwrap_or_else(
            |err| json!({ "batch": batch, "context": context, "error": err.to_string() }),
        );
        if let (Some(ms), Some(ours)) = (torch_ms(&torch, batch, context), e["time"]["ms"].as_f64())
        {
            e["torch_ms"] = ms.into();
            e["speedup_vs_torch"] = (ms / ours).into();
        }
        println!(
            "  decode batch {batch:>3} ctx {context:>5}: {:>8} ms {:>6} GB/s {:>5} of peak, {} splits, torch {} ms{}",
            f(&e["time"]["ms"], 4), f(&e["gb_per_s"], 0), f(&e["fraction_of_peak"], 2),
            e["splits"], f(&e["torch_ms"], 4),
            e["error"].as_str().map_or(String::new(), |m| format!(" ERROR {m}")),
        );
        decode.push(e);
    }
    let mut hydragen = Vec::new();
    for (batch, prefix) in hydragen_grid(options.quick) {
        let e = hydragen_entry(&mut b, batch, prefix).unwrap_or_else(
            |err| json!({ "batch": batch, "prefix": prefix, "error": err.to_string() }),
        );
        println!(
            "  hydragen batch {batch:>3} prefix {prefix:>5} suffix {SUFFIX}: shared {} ms ({} tok/s), unshared {} ms, {}x (target >= {TARGET_SPEEDUP}x at 256/16K), paths agree: {}{}",
            f(&e["shared"]["time"]["ms"], 4), f(&e["shared"]["tokens_per_s"], 0),
            f(&e["unshared"]["time"]["ms"], 4), f(&e["speedup"], 1), e["paths_agree"],
            e["error"].as_str().map_or(String::new(), |m| format!(" ERROR {m}")),
        );
        hydragen.push(e);
    }
    let summary = hydragen_summary(&hydragen);
    for d in summary["drops"].as_array().into_iter().flatten() {
        println!(
            "  hydragen batch {}: throughput drop 1K -> 16K prefix {} (target < {TARGET_DROP})",
            d["batch"],
            f(&d["drop_1k_to_16k"], 3)
        );
    }
    json!({
        "model": "Llama-3-8B attention: 32 q heads, 8 kv heads, d 128, bf16, page 16",
        "sm_count": b.sm_count, "peak_gb_per_s": b.peak.map(|p| p / 1e9),
        "decode": decode, "hydragen": hydragen, "hydragen_summary": summary, "torch": torch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_the_issue_shapes() {
        let d = decode_grid(false);
        assert!(d.contains(&(1, 1024)) && d.contains(&(256, 4096)));
        let h = hydragen_grid(false);
        assert!(h.contains(&(64, 1024)) && h.contains(&(256, 16384)));
        assert!(hydragen_grid(true).contains(&(256, 16384)));
        // Batch 256 × 4K keys: 65536 pages (2 GiB for K at d = 128, 8 KV heads).
        assert_eq!(pool_pages(false), 65536);
    }

    #[test]
    fn tables_are_disjoint_except_the_shared_prefix() {
        let order = shuffled(100, 7);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        let t = table(&order, &order[..3], 4, 3, 5);
        assert_eq!(t.len(), 4 * 8);
        let own: Vec<u32> = t.chunks(8).flat_map(|r| r[3..].to_vec()).collect();
        let mut unique = own.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), own.len());
        assert!(t.chunks(8).all(|r| r[..3] == order[..3]));
        assert!(!own.iter().any(|p| order[..3].contains(p)));
    }

    #[test]
    fn summary_reports_speedup_and_drop_against_targets() {
        let e = |batch: u64, prefix: u64, rate: f64, speedup: f64| {
            json!({ "batch": batch, "prefix": prefix, "speedup": speedup,
                    "shared": { "tokens_per_s": rate } })
        };
        let s = hydragen_summary(&[e(256, 1024, 100.0, 3.0), e(256, 16384, 90.0, 12.0)]);
        assert_eq!(s["speedup_batch256_prefix16k"], 12.0);
        assert_eq!(s["meets_speedup_target"], true);
        let d = &s["drops"][0];
        assert!((d["drop_1k_to_16k"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(d["meets_target"], true);
    }

    /// The launch sequences on the interpreter, untimed, at a tiny batch: decode over the
    /// pool, and Hydragen's shared path (forward + decode + merge, the pool moving between
    /// the two buffers) agreeing with decode over the full sequences.
    #[test]
    fn the_launch_sequences_run_and_the_paths_agree_on_the_interpreter() {
        let device = Device::cpu();
        // A prefix of whole pages (the shared pages end where the suffix's begin); long
        // enough that the unshared decode splits (3 splits of 4 tiles at 64 SMs).
        let (batch, prefix) = (2usize, 16 * PAGE);
        let pages = prefix.div_ceil(PAGE) + batch * SUFFIX.div_ceil(PAGE);
        let n = pages * PAGE * KV_HEADS * HEAD_DIM;
        let pool = (
            device.upload(&random_bf16(n, 1)).unwrap(),
            device.upload(&random_bf16(n, 2)).unwrap(),
        );
        let mut b = Bench {
            device: &device,
            timer: None,
            sm_count: 64,
            peak: None,
            pool: Some(pool),
            order: shuffled(pages, 7),
        };
        let e = hydragen_entry(&mut b, batch, prefix).unwrap();
        assert_eq!(e["paths_agree"], true, "{e}");
        let diff = e["max_abs_diff_shared_vs_unshared"].as_f64().unwrap();
        assert!(diff > 0.0 && diff <= 5.0 / 256.0, "{diff}");
        assert!(e["unshared"]["decode_splits"].as_u64().unwrap() > 1, "{e}");
        let d = decode_entry(&mut b, batch, 3 * PAGE + 5).unwrap();
        assert!(d["bytes"].as_u64().unwrap() > 0, "{d}");
        assert!(b.pool.is_some(), "the pool comes back after every shape");
    }

    #[test]
    fn torch_times_are_matched_by_shape() {
        let t = json!({ "decode": [ { "batch": 4, "context": 1024, "ms": 0.5 } ] });
        assert_eq!(torch_ms(&t, 4, 1024), Some(0.5));
        assert_eq!(torch_ms(&t, 4, 4096), None);
        assert_eq!(torch_ms(&json!("not available"), 4, 1024), None);
    }
}
