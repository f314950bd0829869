//! Tile-level building blocks of the tensor-core kernels: `#[device]` pieces that a
//! `mma.sync` kernel composes, so the GEMMs ([`crate::gemm_tc`], [`crate::fp8::gemm`]) — and
//! the attention and int4 kernels to come — share one copy of each step.
//!
//! A tensor-core kernel here is a block tile of `BM × BN` outputs computed by `WM × WN`
//! warps (each a `BM/WM × BN/WN` warp tile), walking K through a ring of shared stages:
//!
//! - `load_slice` — one operand's stage: 16-byte `cp.async` copies of a `ROWS × COLS`
//!   block of a row-major global matrix into shared rows of `COLS + PAD` elements (`E`
//!   elements per 16 bytes: 8 halves, 16 FP8 values), zero-filled past the matrix's edges.
//!   Used for A and B by `gemm_tc_nt`, `gemm_tc_nn` and the FP8 GEMM.
//! - `load_a_frags` — a warp tile's A fragments at one K step, from a K-major stage
//!   (row-major A) with `ldmatrix.x4`: `frag[i]` (`Vec4<u32>`) is the A fragment of rows
//!   `16i..16i+16` of the warp tile (m16n8k16 for f16/bf16, m16n8k32 for FP8). All three
//!   GEMMs.
//! - `load_b_frags_kmajor` — B fragments from a K-major stage (`n` rows of `k`: a
//!   column-major B, a `Linear` weight) with `ldmatrix.x4`, two n-tiles a load: `frag[j]`
//!   (`Vec2<u32>`) is the B fragment of columns `8j..8j+8` of the warp tile. `gemm_tc_nt`
//!   and the FP8 GEMM.
//! - `load_b_frags_nmajor` — the same fragments from an N-major stage (`k` rows of `n`: a
//!   row-major B) with `ldmatrix.x4.trans`; 16-bit only (`.trans` moves 16-bit elements, so
//!   an FP8 B must be K-major). `gemm_tc_nn`, `gemm_tc_tn`.
//! - `load_a_frags_mmajor` — A fragments from an M-major stage (`k` rows of `m`: a
//!   column-major A) with `ldmatrix.x4.trans`; 16-bit only. `gemm_tc_tn`.
//! - `mma_warp_tile` — the MMA step: every (A, B) fragment pair into its accumulator with
//!   `mma_f32::<T>` ([`fn@mma_f32_f16`], [`fn@mma_f32_bf16`]: m16n8k16; [`fn@mma_f32_e4m3`]:
//!   m16n8k32). `acc[i·NT + j]` (`Vec4<f32>`, `NT = BN/WN/8`) is the C fragment of rows
//!   `16i..`, columns `8j..`: lane `l` holds rows `l/4` (`.x`, `.y`) and `l/4 + 8` (`.z`,
//!   `.w`), columns `2(l%4)` and `+1`. All three GEMMs (the FP8 GEMM into its per-group
//!   partial sums).
//! - `store_warp_tile` — the epilogue: each accumulator rounded once into `O` ∈ {f32,
//!   f16, bf16} and stored, predicated at C's edges (`store_pair`). All three GEMMs.
//!   `add_warp_tile` (`add_pair`) adds into C instead (`gemm_tc_tn`'s accumulate flag).
//!
//! Each generic piece is expanded per element type (`load_a_frags_f16`, `_bf16`, `_e4m3`;
//! a generic kernel calls `load_a_frags::<T, ..>`). Shapes are const generics (the block
//! tile and warp counts, `E`, a shared row's length and padding): a kernel passes its own
//! tunables, since a computed const argument (`BM / WM`) is not expressible in stable
//! Rust; positions (the warp tile's first row, the K offset) are
//! values. Every piece is called by all threads of the block (the fragment loads and MMAs
//! by whole warps), and the fragment arrays are `local_array`s the caller owns, passed by
//! reference: after inlining, the unrolled loops index them with constants, so they stay
//! in registers (the SASS tests check for no local memory).
//!
//! The step loop itself (when to wait, copy and multiply) stays in each kernel: it is a
//! dozen lines, and what differs between kernels (the FP8 GEMM's promotion every 128 of K)
//! sits inside it.
//!
//! Epilogue stores are per element, not vectorized: C's leading dimension is arbitrary
//! (`ldc = n` with odd `n` in the checks), so a pair store would need an alignment test
//! and a scalar fallback, which adds code without removing any; it pays once C's rows are
//! 16-byte aligned by contract (or staged through shared memory).

mod epilogue;
mod fragment;
mod mma;
mod stage;

pub use epilogue::*;
pub use fragment::*;
pub use mma::*;
pub use stage::*;
