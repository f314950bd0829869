//! How a model's attention heads are laid out for the kernels.
//!
//! The attention kernels take head dims in [`HEAD_DIMS`] and RoPE rotates halves of whole
//! eight-element units (`rotary_dim % 16 == 0`). A model whose head dim is not one of those
//! (tiny test models: 16, 24, 32) runs *exactly* in a padded layout: each head's rotary half
//! pairs `(i, i + r/2)` move to `(i, i + r'/2)` with zero dims after each half, so the
//! rotate-half pairing survives, and the dims past the rotary part follow. Q, K and V get
//! the permutation through the rows of `q_proj`/`k_proj`/`v_proj` (zero rows for the pads)
//! and O leaves it through the columns of `o_proj` (zero columns): the pads of Q and K are
//! zero, so QKᵀ adds exact zeros; the pads of V are zero, so O's pads are zero and meet zero
//! weights. The softmax scale stays 1/√(model head dim); the cos/sin table gets cos 1,
//! sin 0 on the pad pairs.

use warpforge_kernels::attention::HEAD_DIMS;

/// One head's dims in the model and in the kernels' layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLayout {
    /// The model's head dim.
    pub dim: usize,
    /// The model's rotated dims (the first `rotary` of each head; even).
    pub rotary: usize,
    /// The kernels' head dim (one of [`HEAD_DIMS`]).
    pub padded: usize,
    /// The kernels' rotated dims (a multiple of 16, `rotary` rounded up per half).
    pub padded_rotary: usize,
}

impl HeadLayout {
    /// The smallest kernel layout holding a head of `dim` dims whose first `rotary` rotate.
    pub fn new(dim: usize, rotary: usize) -> Result<HeadLayout, String> {
        if dim == 0 || rotary == 0 || !rotary.is_multiple_of(2) || rotary > dim {
            return Err(format!(
                "head_dim {dim} with {rotary} rotary dims: need 0 < rotary ≤ head_dim, rotary even"
            ));
        }
        let padded_rotary = (rotary / 2).div_ceil(8) * 16;
        let needed = padded_rotary + (dim - rotary);
        let padded = *HEAD_DIMS.iter().find(|&&d| d >= needed).ok_or_else(|| {
            format!(
                "head_dim {dim} is larger than the attention kernels' largest ({})",
                HEAD_DIMS[HEAD_DIMS.len() - 1]
            )
        })?;
        Ok(HeadLayout {
            dim,
            rotary,
            padded,
            padded_rotary,
        })
    }

    /// Whether the model's layout is the kernels' (no permutation, no pads).
    pub fn is_identity(&self) -> bool {
        self.padded == self.dim && self.padded_rotary == self.rotary
    }

    /// Where model dim `j` of a head lives in the padded head.
    pub fn position(&self, j: usize) -> usize {
        let (half, padded_half) = (self.rotary / 2, self.padded_rotary / 2);
        if j < half {
            j
        } else if j < self.rotary {
            padded_half + (j - half)
        } else {
            self.padded_rotary + (j - self.rotary)
        }
    }

    /// Rows `[heads · dim, cols]` of a projection's output dims → `[heads · padded, cols]`,
    /// zero rows at the pads (q/k/v weights and biases: `cols = 1`).
    pub fn pad_rows<T: Copy + Default>(&self, w: &[T], heads: usize, cols: usize) -> Vec<T> {
        let mut out = vec![T::default(); heads * self.padded * cols];
        for h in 0..heads {
            for j in 0..self.dim {
                let (from, to) = (
                    (h * self.dim + j) * cols,
                    (h * self.padded + self.position(j)) * cols,
                );
                out[to..to + cols].copy_from_slice(&w[from..from + cols]);
            }
        }
        out
    }

    /// Columns: `[rows, heads · dim]` → `[rows, heads · padded]` (o_proj's input dims).
    pub fn pad_cols<T: Copy + Default>(&self, w: &[T], rows: usize, heads: usize) -> Vec<T> {
        let (width, padded_width) = (heads * self.dim, heads * self.padded);
        let mut out = vec![T::default(); rows * padded_width];
        for r in 0..rows {
            for h in 0..heads {
                for j in 0..self.dim {
                    out[r * padded_width + h * self.padded + self.position(j)] =
                        w[r * width + h * self.dim + j];
                }
            }
        }
        out
    }

    /// A cos/sin table for the model's rotary dims (`rows` rows of `rotary` f32s: cos then
    /// sin, the layout of `kernels::rope::Rope::table`) → the padded rotary dims (cos 1,
    /// sin 0 on the pad pairs, which rotate zeros).
    pub fn pad_table(&self, table: &[f32], rows: usize) -> Vec<f32> {
        let (half, padded_half) = (self.rotary / 2, self.padded_rotary / 2);
        let mut out = Vec::with_capacity(rows * self.padded_rotary);
        for row in table.chunks_exact(self.rotary).take(rows) {
            let (cos, sin) = row.split_at(half);
            out.extend_from_slice(cos);
            out.extend(std::iter::repeat_n(1.0, padded_half - half));
            out.extend_from_slice(sin);
            out.extend(std::iter::repeat_n(0.0, padded_half - half));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_head_dims_are_kept() {
        for d in [64, 80, 96, 128, 256] {
            let l = HeadLayout::new(d, d).unwrap();
            assert!(l.is_identity(), "{l:?}");
            assert!((0..d).all(|j| l.position(j) == j));
        }
    }

    #[test]
    fn small_heads_pad_each_rotary_half() {
        let l = HeadLayout::new(24, 24).unwrap();
        assert_eq!((l.padded, l.padded_rotary), (64, 32));
        // Pairs (i, i + 12) become (i, i + 16).
        assert!((0..12).all(|i| l.position(i + 12) == l.position(i) + 16));
        // Partial rotary: the pass-through dims follow the padded rotary part.
        let p = HeadLayout::new(40, 20).unwrap();
        assert_eq!((p.padded, p.padded_rotary), (64, 32));
        assert_eq!(p.position(20), 32);
        assert_eq!(p.position(39), 51);
        assert!(HeadLayout::new(300, 300).is_err());
        assert!(HeadLayout::new(24, 23).is_err());
    }

    #[test]
    fn padding_keeps_dot_products_and_rotations() {
        let l = HeadLayout::new(24, 24).unwrap();
        let heads = 2;
        let q: Vec<f32> = (0..heads * 24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let k: Vec<f32> = (0..heads * 24).map(|i| (i as f32).sin()).collect();
        let (qp, kp) = (l.pad_rows(&q, heads, 1), l.pad_rows(&k, heads, 1));
        for h in 0..heads {
            let dot = |a: &[f32], b: &[f32], d: usize| -> f32 {
                (0..d).map(|j| a[h * d + j] * b[h * d + j]).sum()
            };
            assert_eq!(dot(&q, &k, 24), dot(&qp, &kp, 64));
        }
        // A one-row table: the pad pairs rotate by nothing.
        let table: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let padded = l.pad_table(&table, 1);
        assert_eq!(padded.len(), 32);
        assert_eq!(&padded[..12], &table[..12]);
        assert_eq!(&padded[12..16], &[1.0; 4]);
        assert_eq!(&padded[16..28], &table[12..]);
        assert_eq!(&padded[28..], &[0.0; 4]);
        // o_proj columns follow the same permutation as V's rows.
        let w: Vec<f32> = (0..3 * heads * 24).map(|i| i as f32).collect();
        let wp = l.pad_cols(&w, 3, heads);
        let v: Vec<f32> = (0..heads * 24).map(|i| 1.0 + i as f32).collect();
        let vp = l.pad_rows(&v, heads, 1);
        for r in 0..3 {
            let a: f32 = (0..heads * 24).map(|j| w[r * 48 + j] * v[j]).sum();
            let b: f32 = (0..heads * 64).map(|j| wp[r * 128 + j] * vp[j]).sum();
            assert_eq!(a, b);
        }
    }
}
