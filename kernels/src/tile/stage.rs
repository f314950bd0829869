//! The stage loader: one operand's slice of K into one shared stage.

use warpforge_dsl::prelude::*;

/// Issues the 16-byte `cp.async` copies of one `ROWS × COLS` block of a row-major
/// `rows × cols` matrix (`src`, leading dimension `ld`) at (`row0`, `col0`) into stage `stage`
/// of `tile`, whose rows are `COLS + PAD` elements. A chunk is 16 bytes, `E` elements (8
/// halves, 16 FP8 values); chunks that pass the matrix's right edge copy only their valid
/// bytes and chunks outside it copy none: the rest is zero-filled. Every thread of the
/// block (`32·WM·WN`) calls it.
#[warpforge_macros::device(types(T = [f16, bf16, F8E4M3]))]
#[allow(clippy::too_many_arguments)]
pub fn load_slice<
    T: MatrixElement,
    const ROWS: u32,
    const COLS: u32,
    const PAD: u32,
    const E: u32,
    const WM: u32,
    const WN: u32,
>(
    tile: &mut [T],
    src: &[T],
    stage: u32,
    row0: u32,
    rows: u32,
    col0: u32,
    cols: u32,
    ld: u32,
) {
    let threads = 32 * WM * WN;
    #[unroll]
    for l in 0..ROWS * COLS / E / threads {
        let e = l * threads + thread_idx_x();
        let r = e / (COLS / E);
        let c = e % (COLS / E) * E;
        let row = row0 + r;
        let col = col0 + c;
        let bytes = if row < rows && col < cols {
            (cols - col).min(E) * (16 / E)
        } else {
            0
        };
        let at = if bytes > 0 { row * ld + col } else { 0 };
        cp_async_16_zfill(tile, (stage * ROWS + r) * (COLS + PAD) + c, src, at, bytes);
    }
}
