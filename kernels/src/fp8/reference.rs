//! Host references of the FP8 kernels, written straight from the formulas of the module doc
//! (dense row-major matrices, no padding). The conversions are `warpforge_dsl::convert`'s,
//! which follow PTX `cvt.rn.satfinite` bit for bit.

use warpforge_dsl::convert::Fp8Format;

/// FP8 codes of a dense matrix and their scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
}

impl Quantized {
    /// The codes as f32s followed by the scales: what the library checks compare (exactly).
    pub fn flatten(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&c| c as f32)
            .chain(self.scales.iter().copied())
            .collect()
    }
}

/// Which elements share a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One scale for the whole tensor.
    Tensor,
    /// One scale per `g` consecutive elements of a row (`g` a power of two, 16..=128).
    Rows { g: u32 },
    /// One scale per 128×128 tile.
    Blocks,
}

impl Granularity {
    /// `(row_shift, col_shift, scale_ld)` of the dequantize kernel for a `cols`-wide matrix.
    pub fn scale_indexing(self, cols: usize) -> (u32, u32, u32) {
        match self {
            Granularity::Tensor => (0, 31, 0),
            Granularity::Rows { g } => (0, g.trailing_zeros(), cols.div_ceil(g as usize) as u32),
            Granularity::Blocks => (7, 7, cols.div_ceil(128) as u32),
        }
    }

    /// Index of the scale of element (`r`, `c`).
    pub fn scale_index(self, r: usize, c: usize, cols: usize) -> usize {
        let (rs, cs, ld) = self.scale_indexing(cols);
        (r >> rs) * ld as usize + (c >> cs)
    }
}

/// Largest magnitude, NaN ignored (maxNumber), 0 for an empty slice.
pub fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, &v| m.max(v.abs()))
}

/// `s = amax / FMAX`, or 1 where that is 0.
pub fn scale_of(amax: f32, fmt: Fp8Format) -> f32 {
    let s = amax / fmt.max_finite();
    if s == 0.0 {
        1.0
    } else {
        s
    }
}

/// `satfinite_rne(x / s)`.
pub fn quantize(x: f32, s: f32, fmt: Fp8Format) -> u8 {
    fmt.encode(x / s)
}

/// `f32(q) * s`.
pub fn dequantize_one(code: u8, s: f32, fmt: Fp8Format) -> f32 {
    fmt.decode(code) * s
}

/// Per-tensor quantization with the tensor's own amax.
pub fn quantize_tensor(x: &[f32], fmt: Fp8Format) -> Quantized {
    let s = scale_of(amax(x), fmt);
    quantize_with(x, s, fmt)
}

/// Quantization with a given scale (delayed scaling).
pub fn quantize_with(x: &[f32], s: f32, fmt: Fp8Format) -> Quantized {
    Quantized {
        codes: x.iter().map(|&v| quantize(v, s, fmt)).collect(),
        scales: vec![s],
    }
}

/// 1×G groups along the rows of X[rows, cols].
pub fn quantize_rows(x: &[f32], rows: usize, cols: usize, g: usize, fmt: Fp8Format) -> Quantized {
    let groups = cols.div_ceil(g);
    let mut out = Quantized {
        codes: vec![0; rows * cols],
        scales: vec![0.0; rows * groups],
    };
    for r in 0..rows {
        for gi in 0..groups {
            let span = r * cols + gi * g..r * cols + ((gi + 1) * g).min(cols);
            let s = scale_of(amax(&x[span.clone()]), fmt);
            out.scales[r * groups + gi] = s;
            for i in span {
                out.codes[i] = quantize(x[i], s, fmt);
            }
        }
    }
    out
}

/// X[rows, cols] transposed to Xt[cols, rows], then 1×G groups along Xt's rows.
pub fn quantize_rows_t(x: &[f32], rows: usize, cols: usize, g: usize, fmt: Fp8Format) -> Quantized {
    quantize_rows(&transpose(x, rows, cols), cols, rows, g, fmt)
}

/// One scale per 128×128 tile of X[rows, cols].
pub fn quantize_blocks(x: &[f32], rows: usize, cols: usize, fmt: Fp8Format) -> Quantized {
    let (tr, tc) = (rows.div_ceil(128), cols.div_ceil(128));
    let mut scales = vec![0.0; tr * tc];
    for (bi, s) in scales.iter_mut().enumerate() {
        let (r0, c0) = (bi / tc * 128, bi % tc * 128);
        let tile_amax = (r0..(r0 + 128).min(rows))
            .map(|r| amax(&x[r * cols + c0..r * cols + (c0 + 128).min(cols)]))
            .fold(0.0f32, f32::max);
        *s = scale_of(tile_amax, fmt);
    }
    let g = Granularity::Blocks;
    let codes = (0..rows * cols)
        .map(|i| quantize(x[i], scales[g.scale_index(i / cols, i % cols, cols)], fmt))
        .collect();
    Quantized { codes, scales }
}

/// Dequantizes a dense [rows, cols] matrix of codes.
pub fn dequantize(
    q: &Quantized,
    rows: usize,
    cols: usize,
    granularity: Granularity,
    fmt: Fp8Format,
) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let s = q.scales[granularity.scale_index(i / cols, i % cols, cols)];
            dequantize_one(q.codes[i], s, fmt)
        })
        .collect()
}

/// Xt[c, r] = X[r, c].
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| x[(i % rows) * cols + i / rows])
        .collect()
}
