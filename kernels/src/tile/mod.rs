//! Tile-level building blocks of the tensor-core kernels: `#[device]` pieces that a
//! `mma.sync` kernel composes, so the GEMMs ([`crate::gemm_tc`], [`crate::fp8::gemm`]) — and
//! the attention and int4 kernels to come — share one copy of each step.
//!
//! A tensor-core kernel here is a block tile of `BM × BN` outputs computed by `WM × WN`
//! warps (each a `BM/WM × BN/WN` warp tile), walking K through a ring of shared stages:
//!
//! | piece | does | fragment / layout contract | used by |
//! | --- | --- | --- | --- |
//! | [`load_slice`] | one stage of an operand: 16-byte `cp.async` copies of a `ROWS × COLS` block of a row-major global matrix, zero-filled past its edges | shared rows of `COLS + PAD` elements, `E` elements per 16 bytes (8 halves, 16 FP8) | A and B of every GEMM |
//! | [`load_a_frags`] | A fragments of a warp tile at one K step (`ldmatrix.x4`) | `frag[i]` (`Vec4<u32>`): the m16n8k16 (16-bit) / m16n8k32 (FP8) A fragment of rows `16i..16i+16` of the warp tile; the shared tile is K-major (row-major A) | `gemm_tc_nt`, `gemm_tc_nn`, FP8 GEMM |
//! | [`load_b_frags_kmajor`] | B fragments from a K-major tile (`n` rows of `k`: a column-major B, a `Linear` weight) with `ldmatrix.x4`, two n-tiles per load | `frag[j]` (`Vec2<u32>`): the B fragment of columns `8j..8j+8` of the warp tile | `gemm_tc_nt`, FP8 GEMM |
//! | [`load_b_frags_nmajor`] | B fragments from an N-major tile (`k` rows of `n`: a row-major B) with `ldmatrix.x4.trans` (16-bit only: `.trans` moves 16-bit elements) | as [`load_b_frags_kmajor`] | `gemm_tc_nn` |
//! | [`mma_warp_tile`] | the MMA step over a warp tile: every (A, B) fragment pair into its accumulator (`mma_f32::<T>`: m16n8k16 for f16/bf16, m16n8k32 for E4M3) | `acc[i·NT + j]` (`Vec4<f32>`, `NT = BN/WN/8`): the C fragment of rows `16i..`, columns `8j..` — lane `l` holds rows `l/4` (`.x`, `.y`) and `l/4 + 8` (`.z`, `.w`), columns `2(l%4)`, `+1` | all three GEMMs |
//! | [`store_warp_tile`] | the epilogue: rounds each accumulator pair once into `O` and stores it, predicated at C's edges, a pair per store where C's row allows | reads `acc` as [`mma_warp_tile`] leaves it | all three GEMMs |
//!
//! Shapes are const generics (the block tile and warp counts, `E`, a shared row's length and padding):
//! a kernel passes its own tunables, since a computed const argument (`BM / WM`) is not
//! expressible in stable Rust; positions (the warp tile's first row, the K offset) are
//! values. Every piece is called by all threads of the block (the fragment loads and MMAs
//! by whole warps), and the fragment arrays are `local_array`s the caller owns, passed by
//! reference: after inlining, the unrolled loops index them with constants, so they stay
//! in registers (the SASS tests check for no local memory).
//!
//! The step loop itself (when to wait, copy and multiply) stays in each kernel: it is a
//! dozen lines and what differs between them (the FP8 GEMM's promotion every 128 of K)
//! sits inside it.

mod epilogue;
mod fragment;
mod mma;
mod stage;

pub use epilogue::*;
pub use fragment::*;
pub use mma::*;
pub use stage::*;
