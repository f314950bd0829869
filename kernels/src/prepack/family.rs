//! The prepacking kernels as library kernels: `gather_rows` and `kv_page_write_{T}`.
//!
//! - `gather_rows` problems are `[tokens, rows, row_words]` (16-byte words per row): random
//!   words, random ids, and for more than two tokens the last id is `rows` (out of range,
//!   expected all-ones). The output compared is each word as its two 16-bit halves (exact
//!   in f32).
//! - `kv_page_write_{T}` problems are `[kv_heads, head_dim, rotary_dim, page_size,
//!   sequences, lens.., cache_lens..]`: caches filled with random earlier contents (rows not
//!   written must survive), pages handed out in a shuffled order with spare pages, positions
//!   `cache_lens[b] + i`, Llama-3 frequencies. The output compared is the whole K cache, then
//!   the whole V cache.

use super::gather_rows;
use super::host::{launch_gather_rows, launch_kv_page_write, page_write_reference};
use super::host::{PageWriteBuffers, PageWriteShape};
use crate::check::Problem;
use crate::family::{download_f32, register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use crate::rope::host::{shape_error, RopeFloat};
use crate::rope::Rope;
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// `gather_rows`, then `kv_page_write_{f32,f16,bf16}`.
pub fn kernels() -> Vec<Kernel> {
    vec![
        register(GatherRows),
        register(PageWrite::<f32>(PhantomData)),
        register(PageWrite::<f16>(PhantomData)),
        register(PageWrite::<bf16>(PhantomData)),
    ]
}

struct GatherRows;

/// (table words, ids) of a gather problem.
fn gather_inputs(problem: &Problem) -> (Vec<u32>, Vec<u32>) {
    let (tokens, rows, words) = (problem.dims[0], problem.dims[1], problem.dims[2]);
    let mut rng = Lcg::for_dims(&problem.dims, 3);
    let table = (0..rows * words * 4)
        .map(|_| rng.next_u32() ^ (rng.next_u32() << 16))
        .collect();
    let mut ids: Vec<u32> = (0..tokens).map(|_| rng.next_u32() % rows as u32).collect();
    if tokens > 2 {
        ids[tokens - 1] = rows as u32;
    }
    (table, ids)
}

/// Each u32 as its low and high 16 bits.
fn halves(words: &[u32]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|&w| [(w & 0xffff) as f32, (w >> 16) as f32])
        .collect()
}

impl LibraryKernel for GatherRows {
    fn def(&self) -> &'static KernelDef {
        gather_rows::def()
    }

    fn summary(&self) -> &'static str {
        "row gather by index (embedding lookup of a packed prompt stream; 128-bit words, any element type)"
    }

    fn problems(&self) -> Vec<Problem> {
        [(1, 1, 1), (3, 2, 1), (37, 50, 8), (130, 300, 33)]
            .iter()
            .map(|&(t, r, w)| Problem::new(format!("t{t}-rows{r}-words{w}"), vec![t, r, w]))
            .collect()
    }

    fn rank(&self) -> usize {
        3
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (table, ids) = gather_inputs(problem);
        let width = problem.dims[2] * 4;
        Ok(Box::new(GatherCase {
            width,
            out: device.zeros(ids.len() * width)?,
            table: device.upload(&table)?,
            ids: device.upload(&ids)?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (table, ids) = gather_inputs(problem);
        let width = problem.dims[2] * 4;
        let rows: Vec<u32> = ids
            .iter()
            .flat_map(
                |&id| match table.get(id as usize * width..(id as usize + 1) * width) {
                    Some(row) => row.to_vec(),
                    None => vec![u32::MAX; width],
                },
            )
            .collect();
        halves(&rows)
    }

    /// A row read and written per token, plus its id.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        Some((problem.dims[0] * (2 * 16 * problem.dims[2] + 4)) as u64)
    }

    /// The embedding lookup of a bf16 model at each token count.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        let words = model.hidden * 2 / 16;
        tokens
            .iter()
            .map(|&m| Problem::new("embedding", vec![m, model.vocab, words]))
            .collect()
    }
}

struct GatherCase {
    width: usize,
    table: Buffer<u32>,
    ids: Buffer<u32>,
    out: Buffer<u32>,
}

impl Case for GatherCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        launch_gather_rows(
            device,
            config,
            (&self.table, &self.ids),
            &mut self.out,
            self.width,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(halves(&device.download(&self.out)?))
    }
}

/// `kv_page_write_{T}`.
struct PageWrite<T>(PhantomData<fn() -> T>);

/// A decoded page-write problem with its inputs (T values widened), table and pages.
struct PageProblem {
    shape: PageWriteShape,
    k: Vec<f32>,
    v: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    block_table: Vec<u32>,
    positions: Vec<u32>,
    cu_seqlens: Vec<u32>,
    rope: Rope,
}

fn encode_page(
    (kv_heads, head_dim, rotary_dim, page_size): (usize, usize, usize, usize),
    lens: &[usize],
    cache_lens: &[usize],
) -> Problem {
    let name =
        format!("kv{kv_heads}-d{head_dim}-r{rotary_dim}-ps{page_size}-{lens:?}+{cache_lens:?}")
            .replace(' ', "");
    let mut dims = vec![kv_heads, head_dim, rotary_dim, page_size, lens.len()];
    dims.extend(lens);
    dims.extend(cache_lens);
    Problem::new(name, dims)
}

fn decode_page<T: RopeFloat>(problem: &Problem) -> Result<PageProblem, String> {
    let d = &problem.dims;
    if d.len() < 5 || d.len() != 5 + 2 * d[4] {
        return Err(format!(
            "a page-write problem is [kv_heads, head_dim, rotary_dim, page_size, sequences, \
             lens.., cache_lens..], got {d:?}"
        ));
    }
    let n = d[4];
    let (lens, cache_lens) = (d[5..5 + n].to_vec(), d[5 + n..].to_vec());
    let page_size = d[3].max(1);
    let pages_per_seq = lens
        .iter()
        .zip(&cache_lens)
        .map(|(&l, &c)| (l + c).div_ceil(page_size))
        .max()
        .unwrap_or(0)
        .max(1);
    let positions = super::positions(
        &lens,
        Some(&cache_lens.iter().map(|&c| c as u32).collect::<Vec<_>>()),
    )
    .map_err(|e| e.to_string())?;
    let shape = PageWriteShape {
        kv_heads: d[0],
        head_dim: d[1],
        rotary_dim: d[2],
        table_rows: positions.iter().map(|&p| p as usize + 1).max().unwrap_or(1),
        page_size: d[3],
        pages_per_seq,
        lens,
        cache_lens,
    };
    shape.check()?;
    let mut rng = Lcg::for_dims(d, 5);
    let gen = |rng: &mut Lcg, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| T::from_f32(rng.float(2.0)).to_f32())
            .collect()
    };
    let (row, tokens) = (shape.row(), shape.tokens());
    let (k, v) = (gen(&mut rng, tokens * row), gen(&mut rng, tokens * row));
    // Every sequence's pages (cached and new) from a shuffled pool with two spares.
    let used: usize = shape
        .lens
        .iter()
        .zip(&shape.cache_lens)
        .map(|(&l, &c)| (l + c).div_ceil(page_size))
        .sum();
    let pages = used + 2;
    let mut pool: Vec<u32> = (0..pages as u32).collect();
    for i in (1..pages).rev() {
        pool.swap(i, rng.next_u32() as usize % (i + 1));
    }
    let mut block_table = vec![pages as u32 - 1; n * pages_per_seq];
    let mut next = 0;
    for b in 0..n {
        for slot in 0..(shape.lens[b] + shape.cache_lens[b]).div_ceil(page_size) {
            block_table[b * pages_per_seq + slot] = pool[next];
            next += 1;
        }
    }
    let cache = pages * page_size * row;
    let (k_cache, v_cache) = (gen(&mut rng, cache), gen(&mut rng, cache));
    Ok(PageProblem {
        rope: Rope::llama3_1(shape.rotary_dim.max(16)),
        shape,
        k,
        v,
        k_cache,
        v_cache,
        block_table,
        cu_seqlens: super::cu_seqlens(&d[5..5 + n]).map_err(|e| e.to_string())?,
        positions,
    })
}

impl<T: RopeFloat> LibraryKernel for PageWrite<T> {
    fn def(&self) -> &'static KernelDef {
        (T::KV_PAGE_WRITE)()
    }

    fn summary(&self) -> &'static str {
        "packed K/V written into paged caches through the block table, RoPE on K fused (128-bit units)"
    }

    /// Ragged lengths (1, odd, an empty chunk), chunked prefill continuing mid-page, page
    /// sizes 16, 5 (odd) and 8, no RoPE, full and partial rotary.
    fn problems(&self) -> Vec<Problem> {
        vec![
            encode_page((1, 64, 64, 16), &[1, 7, 0, 20], &[0, 0, 5, 3]),
            encode_page((2, 128, 0, 5), &[9, 3], &[4, 0]),
            encode_page((3, 80, 32, 8), &[13], &[11]),
        ]
    }

    fn rank(&self) -> usize {
        5
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        decode_page::<T>(problem).map(|_| ())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let def = self.def();
        let p = decode_page::<T>(problem).map_err(|m| shape_error(def, "problem", m))?;
        let up = |v: &[f32]| v.iter().map(|&x| T::from_f32(x)).collect::<Vec<T>>();
        let cache_lens: Vec<u32> = p.shape.cache_lens.iter().map(|&c| c as u32).collect();
        let table = p.rope.table(p.shape.table_rows);
        Ok(Box::new(PageCase::<T> {
            k: device.upload(&up(&p.k))?,
            v: device.upload(&up(&p.v))?,
            k_cache: device.upload(&up(&p.k_cache))?,
            v_cache: device.upload(&up(&p.v_cache))?,
            k_cache0: up(&p.k_cache),
            v_cache0: up(&p.v_cache),
            cu_seqlens: device.upload(&p.cu_seqlens)?,
            cache_lens: device.upload(&cache_lens)?,
            block_table: device.upload(&p.block_table)?,
            positions: device.upload(&p.positions)?,
            cos_sin: device.upload(&table)?,
            shape: p.shape,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let Ok(mut p) = decode_page::<T>(problem) else {
            return Vec::new();
        };
        page_write_reference::<T>(
            &p.shape,
            (&p.k, &p.v),
            (&mut p.k_cache, &mut p.v_cache),
            &p.block_table,
            &p.positions,
            &p.rope.inv_freq(),
        );
        p.k_cache.extend(p.v_cache);
        p.k_cache
    }

    /// K and V read and written once per token, plus the table row with RoPE.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let d = &problem.dims;
        let n = *d.get(4)?;
        let tokens: usize = d.get(5..5 + n)?.iter().sum();
        let per_token = 4 * d[0] * d[1] * T::SCALAR.size_bytes() + 4 * d[2] + 4;
        Some((tokens * per_token) as u64)
    }

    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        let d = &problem.dims;
        let n = d.get(4).copied().unwrap_or(0);
        let tokens: usize = d.get(5..5 + n).map_or(0, |l| l.iter().sum());
        vec![d[0], d[1], d[2], d[3], n, tokens]
    }

    /// A Llama-3 model's K/V, one prompt of each token count into 16-row pages (bf16).
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        let d = model.head_dim;
        tokens
            .iter()
            .map(|&m| encode_page((model.kv_heads, d, d, 16), &[m], &[0]))
            .collect()
    }
}

struct PageCase<T: RopeFloat> {
    shape: PageWriteShape,
    k: Buffer<T>,
    v: Buffer<T>,
    k_cache: Buffer<T>,
    v_cache: Buffer<T>,
    k_cache0: Vec<T>,
    v_cache0: Vec<T>,
    cu_seqlens: Buffer<u32>,
    cache_lens: Buffer<u32>,
    block_table: Buffer<u32>,
    positions: Buffer<u32>,
    cos_sin: Buffer<f32>,
}

impl<T: RopeFloat> Case for PageCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let meta = PageWriteBuffers {
            cu_seqlens: &self.cu_seqlens,
            cache_lens: &self.cache_lens,
            block_table: &self.block_table,
            positions: &self.positions,
            cos_sin: &self.cos_sin,
        };
        launch_kv_page_write(
            device,
            config,
            (&self.k, &self.v),
            (&mut self.k_cache, &mut self.v_cache),
            &meta,
            &self.shape,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = download_f32(device, &self.k_cache)?;
        out.extend(download_f32(device, &self.v_cache)?);
        Ok(out)
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.k_cache = device.upload(&self.k_cache0)?;
        self.v_cache = device.upload(&self.v_cache0)?;
        Ok(())
    }
}
