//! Flash attention forward (`flash_attn_fwd_f16`, `flash_attn_fwd_bf16`): softmax attention
//! of a packed, variable-length batch in one launch, f16/bf16 in and out, f32 statistics.
//!
//! # Layouts (all row-major, packed with no padding)
//!
//! - `cu_seqlens_q`, `cu_seqlens_k`: u32 prefix sums of length `sequences + 1`, starting
//!   at 0; sequence `b` owns query rows `cu_seqlens_q[b]..cu_seqlens_q[b+1]` and keys
//!   `cu_seqlens_k[b]..cu_seqlens_k[b+1]` (either may be empty).
//! - Q and O: `[total_q, heads, HEAD_DIM]`; K and V: `[total_k, kv_heads, HEAD_DIM]`.
//!   Query head `h` reads K/V head `h / (heads / kv_heads)` (MHA, GQA, MQA).
//! - LSE: `[heads, total_q]` f32, natural log: `ln Σ_j exp(scale · q·k_j)` over the visible
//!   keys (the scale included, as FlashAttention stores it).
//! - Causal masking is aligned bottom-right: row `i` of a sequence sees key `j` iff
//!   `j ≤ i + (k_len − q_len)` — a chunk of a prompt attending to its cached prefix plus
//!   itself. A row that sees no key (k_len = 0, or causal with `i < q_len − k_len`) gets
//!   **O = 0 and LSE = −∞**, so it vanishes in an LSE merge.
//! - Paged K/V ([`KvLayout::Paged`], `page_size > 0`): K and V are caches `[pages,
//!   page_size, kv_heads, HEAD_DIM]` and key `j` of sequence `b` is row `j % page_size` of
//!   page `block_table[b·pages_per_seq + j / page_size]` (u32); `cu_seqlens_k` still gives
//!   the key counts. Any page size works (each 16-byte copy looks its row up), so a
//!   chunked prefill attends to its earlier chunks in place. `page_size = 0` selects the
//!   contiguous layout (the block table is then unused).
//!
//! # How it works
//!
//! Grid: (query tiles of the longest sequence, heads, sequences); a block whose tile starts
//! past its sequence's end exits. A block owns `BLOCK_M` query rows of one (sequence, head),
//! split over `WARPS` warps of `MT = BLOCK_M / WARPS / 16` m16 row tiles each (FlashAttention-2:
//! K/V are shared by the warps, no inter-warp reduction). Q is staged once through shared
//! memory into registers (`ldmatrix.x4`), then K/V tiles of `BLOCK_N` keys stream through a
//! `STAGES`-deep ring of shared buffers filled by 16-byte `cp.async` copies
//! ([`load_slice`](fn@crate::tile::load_slice_bf16): keys past the sequence's end read as zeros). Per tile:
//! S = QKᵀ on `mma.sync.m16n8k16` (K fragments by `ldmatrix.x4`), masking only on tiles that
//! cross the key end or the causal diagonal, the online softmax in the exp2 domain
//! (`p = ex2.approx(s·c − m·c)` as one FMA and one `ex2`, `c = scale·log2 e`; running max
//! reduced across the 4 lanes of a row by xor shuffles, running sums kept per thread and
//! reduced once at the end), the O accumulators rescaled, then O += P·V with the S
//! accumulators rounded to T *as* the A fragments (the accumulator and A-fragment layouts of
//! m16n8k16 coincide for two adjacent n8 tiles) and V by `ldmatrix.x4.trans`. Causal blocks
//! visit only the K tiles up to their last row's diagonal. The epilogue divides once per
//! row, rounds O to T and writes the LSE.
//!
//! # Cost and roofline
//!
//! FLOPs per (sequence, head): 4·q_len·k_len·d (QKᵀ and PV), about half that causal with
//! q_len = k_len (tiles above the diagonal are skipped). Bytes: Q and O once
//! (2·2·q_len·heads·d), K and V once per query tile and query head
//! (2·2·k_len·d·heads·⌈q_len/BLOCK_M⌉, mostly served from L2 across the blocks of a KV
//! head). From DRAM that is ≈ BLOCK_M FLOPs per K/V byte, so prefill (q_len ≳ 128) is
//! compute-bound: the bound is the `mma.sync` f16/bf16 rate, plus per score one FMA, one
//! MUFU `ex2` and a max/add on the FP32 pipes against 4·d tensor-core FLOPs (the non-matmul
//! share FlashAttention-2 minimizes). With one or a few queries per sequence (decode) it is
//! bound by reading K/V (4·k_len·kv_heads·d bytes per sequence) and needs split-KV across
//! blocks (run it on key ranges and [`merge`] them) to fill the GPU.
//!
//! # Tunables
//!
//! `HEAD_DIM` ∈ {64, 80, 96, 128, 256} is fixed by the problem ([`host::config_for`]);
//! `BLOCK_M` ∈ {32, 64, 128} query rows, `BLOCK_N` ∈ {32, 64, 128} keys per tile, `WARPS`
//! ∈ {2, 4, 8}, `STAGES` ∈ {2, 3}. Constraints: each warp owns 16 or 32 rows; the cp.async
//! chunks divide evenly over the threads; the Q tile fits the K ring (`BLOCK_M ≤
//! STAGES·BLOCK_N`); registers for O, S and Q fragments (`MT·(d/2 + BLOCK_N/2 + d/4)` ≤
//! 208 words); shared memory `2·STAGES·BLOCK_N·(d + 8)·2` bytes ≤ 99 KiB (above 48 KiB it
//! is dynamic shared memory). At d = 256 Q's fragments do not fit the registers beside O
//! (ptxas spilled on sm_90), so Q gets its own shared tile (`BLOCK_M·(d + 8)·2` bytes more,
//! no longer staged through the K ring) and each k-step reloads its fragment by
//! `ldmatrix`; the register count drops the `d/4`. [`host::default_config`] gives the
//! default per head dim.
//!
//! # Use
//!
//! ```
//! use half::bf16;
//! use warpforge_dsl::Device;
//! use warpforge_kernels::attention::{default_config, inputs, launch, AttnBuffers, AttnShape};
//!
//! let device = Device::cpu(); // or Device::cuda(0)
//! // Two sequences of 5 and 3 tokens, 2 query heads sharing 1 KV head, causal.
//! let shape = AttnShape::square(2, 1, 64, true, &[5, 3]);
//! let (q, k, v) = inputs::<bf16>(&shape); // your Q/K/V in the packed layouts
//! let mut bufs = AttnBuffers::upload(&device, &shape, &q, &k, &v)?; // or your own buffers
//! launch::<bf16>(&device, &default_config(64), &shape, &mut bufs, shape.default_scale())?;
//! let (o, lse) = (device.download(&bufs.o)?, device.download(&bufs.lse)?);
//! assert_eq!((o.len(), lse.len()), (8 * 2 * 64, 2 * 8));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backward;
mod backward_family;
pub mod backward_host;
pub mod backward_reference;
mod decode;
mod decode_family;
pub mod decode_host;
mod family;
mod fwd;
pub mod host;
pub mod merge;
pub mod reference;

pub use backward::*;
pub use backward_family::{
    backward_problems, kernels as backward_kernels, tolerance_grad, BwdProblem,
};
pub use backward_host::{
    backward_launch_configs, backward_launch_with, backward_run, backward_scratch_len, bwd_def_of,
    bwd_default_configs, bwd_dims, validate_backward, AttnBwdArgs, AttnBwdBuffers, BwdConfigs,
    BwdInputs, BwdKernel, BWD_HEAD_DIMS,
};
pub use backward_reference::{backward_reference, AttnGrads};
pub use decode::*;
pub use decode_family::{decode_problems, DecodeProblem};
pub use decode_host::{
    combine_def_of, decode_def_of, decode_default_config, decode_dims, decode_launch,
    decode_launch_with, decode_run, decode_splits, row_tiles, validate_decode, DecodeWorkspace,
    DECODE_MAX_Q,
};
pub use family::kernels;
pub use fwd::*;
pub use host::{
    compare, compare_within, config_for, def_of, default_config, dims, expected, inputs, launch,
    launch_with, output, paginate, problems, run, tolerance_o, AttnArgs, AttnBuffers, KvLayout,
    TOLERANCE_LSE,
};
pub use merge::{
    attn_merge_bf16, attn_merge_f16, attn_merge_f32, attn_merge_pair_bf16, attn_merge_pair_f16,
    attn_merge_pair_f32, merge_def_of, merge_launch, merge_pair_def_of, merge_pair_launch,
    merge_run, MergeShape,
};
pub use reference::{
    merge_reference, reference, reference_masked, AttnError, AttnOutput, AttnShape,
};

/// The head dimensions the kernel's space covers.
pub const HEAD_DIMS: [usize; 5] = [64, 80, 96, 128, 256];
