//! Tiled f32 GEMM on CUDA cores: `C[m×n] = A[m×k] · B[k×n]`, all row-major.
//!
//! Each block computes a `BM×BN` tile of C, stepping through K in `BK`-wide slices staged
//! in shared memory; each thread accumulates a `TM×TN` micro-tile in registers, its rows
//! and columns strided by the thread grid so that shared-memory reads are conflict-free
//! and global stores coalesce. Ragged edges are handled by predicated (zero-filled) loads
//! and predicated stores.
//!
//! Roofline: compute-bound for large shapes (2·m·n·k flops; arithmetic intensity of a tile
//! ≈ BM·BN/(BM+BN)/2 flops per byte of global traffic); f32 FMA on CUDA cores, so this is
//! the reference GEMM — the tensor-core GEMM is the fast one. Tunables: `BM`, `BN`, `BK`
//! (the block tile), `TM`, `TN` (the thread tile); the block is `(BN/TN) × (BM/TM)` threads.

use crate::check::Problem;
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Error, KernelDef};
use warpforge_macros::kernel;

#[kernel(
    block = (BN / TN, BM / TM),
    tune(BM = [32, 64, 128], BN = [32, 64, 128], BK = [8, 16], TM = [4, 8], TN = [4, 8]),
    default(BM = 64, BN = 64, BK = 16, TM = 4, TN = 4),
    constraint = (BM / TM) * (BN / TN) >= 64 && (BM / TM) * (BN / TN) <= 256
)]
pub fn gemm<const BM: u32, const BN: u32, const BK: u32, const TM: u32, const TN: u32>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
) {
    // a_tile is stored transposed (k-major) so a thread's TM rows for one k are one column.
    let mut a_tile = shared_array::<f32>(BK * BM);
    let mut b_tile = shared_array::<f32>(BK * BN);
    let mut acc = local_array::<f32>(TM * TN);
    let mut a_frag = local_array::<f32>(TM);
    let mut b_frag = local_array::<f32>(TN);
    let threads = (BM / TM) * (BN / TN);
    let tx = thread_idx_x();
    let ty = thread_idx_y();
    let tid = ty * (BN / TN) + tx;
    let row0 = block_idx_y() * BM;
    let col0 = block_idx_x() * BN;
    let mut k0 = 0u32;
    while k0 < k {
        #[unroll]
        for l in 0..(BM * BK + threads - 1) / threads {
            let e = l * threads + tid;
            if e < BM * BK {
                let r = e / BK;
                let kk = e % BK;
                let gr = row0 + r;
                let gk = k0 + kk;
                a_tile[kk * BM + r] = if gr < m && gk < k {
                    a[gr * k + gk]
                } else {
                    0.0
                };
            }
        }
        #[unroll]
        for l in 0..(BN * BK + threads - 1) / threads {
            let e = l * threads + tid;
            if e < BN * BK {
                let kk = e / BN;
                let col = e % BN;
                let gk = k0 + kk;
                let gc = col0 + col;
                b_tile[kk * BN + col] = if gk < k && gc < n {
                    b[gk * n + gc]
                } else {
                    0.0
                };
            }
        }
        sync_threads();
        #[unroll]
        for kk in 0..BK {
            #[unroll]
            for i in 0..TM {
                a_frag[i] = a_tile[kk * BM + ty + i * (BM / TM)];
            }
            #[unroll]
            for j in 0..TN {
                b_frag[j] = b_tile[kk * BN + tx + j * (BN / TN)];
            }
            #[unroll]
            for i in 0..TM {
                #[unroll]
                for j in 0..TN {
                    acc[i * TN + j] = a_frag[i].mul_add(b_frag[j], acc[i * TN + j]);
                }
            }
        }
        sync_threads();
        k0 += BK;
    }
    #[unroll]
    for i in 0..TM {
        let r = row0 + ty + i * (BM / TM);
        #[unroll]
        for j in 0..TN {
            let col = col0 + tx + j * (BN / TN);
            if r < m && col < n {
                c[r * n + col] = acc[i * TN + j];
            }
        }
    }
}

/// Host reference (f64 accumulation).
pub fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// Launch dims for an `m×n` output.
pub fn dims(config: &Config, m: u32, n: u32) -> LaunchDims {
    let get = |name: &str| config.get(name).unwrap_or(1) as u32;
    let (bm, bn) = (get("BM"), get("BN"));
    LaunchDims::grid_2d(
        (n.div_ceil(bn).max(1), m.div_ceil(bm).max(1)),
        (bn / get("TN"), bm / get("TM")),
    )
}

/// Runs the kernel on `device`.
pub fn run(
    device: &Device,
    config: &Config,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let (da, db) = (device.upload(a)?, device.upload(b)?);
    let mut dc = device.zeros::<f32>(m * n)?;
    let dims = dims(config, m as u32, n as u32);
    gemm::launch(
        device, config, dims, &da, &db, &mut dc, m as u32, n as u32, k as u32,
    )?;
    Ok(device.download(&dc)?)
}

/// The library's description of [`fn@gemm`].
pub fn kernels() -> Vec<Kernel> {
    vec![register(Gemm)]
}

struct Gemm;

/// Small-integer inputs: every product and partial sum is exact in f32, so every config's
/// output must equal the reference exactly, whatever the summation order.
fn inputs(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Lcg::for_dims(&[m, n, k], 3);
    (rng.integers(m * k, 4), rng.integers(k * n, 4))
}

impl LibraryKernel for Gemm {
    fn def(&self) -> &'static KernelDef {
        gemm::def()
    }

    fn summary(&self) -> &'static str {
        "tiled f32 GEMM, shared-memory tiles and register micro-tiles"
    }

    fn problems(&self) -> Vec<Problem> {
        Problem::gemms(&[(1, 1, 1), (17, 33, 9), (64, 64, 64), (100, 70, 45)])
    }

    fn rank(&self) -> usize {
        3
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (m, n, k) = (problem.dims[0], problem.dims[1], problem.dims[2]);
        let (a, b) = inputs(m, n, k);
        Ok(Box::new(Operands {
            shape: (m as u32, n as u32, k as u32),
            a: device.upload(&a)?,
            b: device.upload(&b)?,
            c: device.zeros(m * n)?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (m, n, k) = (problem.dims[0], problem.dims[1], problem.dims[2]);
        let (a, b) = inputs(m, n, k);
        reference(&a, &b, m, n, k)
    }

    /// The linear layers `[tokens, out, in]`.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        linear_problems(model, tokens)
    }
}

/// The linear layers of `model` (and its LM head) as GEMMs `[m, n, k]` = `[tokens, out
/// features, in features]`, each distinct shape once.
pub fn linear_problems(model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    for &m in tokens {
        for (name, n, k) in model.linears() {
            if !out.iter().any(|p| p.dims == [m, n, k]) {
                out.push(Problem::new(name, vec![m, n, k]));
            }
        }
    }
    out
}

struct Operands {
    shape: (u32, u32, u32),
    a: Buffer<f32>,
    b: Buffer<f32>,
    c: Buffer<f32>,
}

impl Case for Operands {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let (m, n, k) = self.shape;
        let (a, b) = (&self.a, &self.b);
        gemm::launch(
            device,
            config,
            dims(config, m, n),
            a,
            b,
            &mut self.c,
            m,
            n,
            k,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.c)?)
    }
}
