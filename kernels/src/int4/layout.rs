//! The packed int4 layout the dequant-GEMM ([`super::gemm`]) streams: an offline repack of
//! an [`Int4Weight`] ([`pack`]) and its exact inverse ([`unpack`]).
//!
//! # Shapes and padding
//!
//! `k` is padded to `k_pad = ⌈k/16⌉·16` and `n` to `n_pad = ⌈n/64⌉·64`: padded codes are
//! 0 and padded scales 0, so they contribute exact zeros (the kernel also zero-fills A past
//! `k` and stores nothing past `n`). Any `k`, `n` ≥ 1 is accepted. A group must cover whole
//! 16-row tiles and be found by a shift: a power of two ≥ 16 (GPTQ's 32, 64, 128), or one
//! group spanning the whole grouped dimension (per-channel); anything else is
//! [`Int4Error::Shape`] naming the group.
//!
//! # Weights: `[k_pad/16][n_pad/64][32 lanes][4 words]` u32
//!
//! One *tile* is 16 rows of k × 64 columns of n, 512 bytes, and lane `l` of a warp reads its
//! 16 bytes (words `4l..4l+4`) with one vector load: exactly its B fragments of the four
//! m16n8k16 MMAs over the tile's four 16-column sub-tiles (two n8 halves each). With
//! `g = l/4`, `t = l%4`, word `j` (sub-tile `j`, columns `c = 64·tile + 16j`) holds the 8
//! codes `v0..v7` =
//!
//! | v  | k row   | column  |   | v  | k row    | column    |
//! |----|---------|---------|---|----|----------|-----------|
//! | v0 | 2t      | c+g     |   | v4 | 2t       | c+g+8     |
//! | v1 | 2t+1    | c+g     |   | v5 | 2t+1     | c+g+8     |
//! | v2 | 2t+8    | c+g     |   | v6 | 2t+8     | c+g+8     |
//! | v3 | 2t+9    | c+g     |   | v7 | 2t+9     | c+g+8     |
//!
//! interleaved into nibbles as `[v0, v2, v4, v6, v1, v3, v5, v7]`: nibble `p` (bits
//! `4p..4p+4`) holds `v[[0,2,4,6,1,3,5,7][p]]`. So `(q >> 4i) & 0x000F000F` puts `v[2i]` in
//! the low 16-bit half and `v[2i+1]` in the high half: i = 0 gives B register `b0` of the
//! first n8 half (k rows 2t, 2t+1), i = 1 its `b1` (rows 2t+8, 2t+9), i = 2 and 3 the second
//! half's — each pair already in `mma.sync`'s register order. OR-ing the magic exponent
//! (`0x6400` = 1024.0 in f16, `0x4300` = 128.0 in bf16: the nibble lands in the mantissa's
//! low bits) makes each half `magic + code` exactly, with one `lop3`.
//!
//! # Scales and zeros: pairs of `T` in u32 words (low half first)
//!
//! Zero points are stored as `T(magic + zero)`, so the kernel's `(magic + code) − (magic +
//! zero)` is the exact integer `code − zero`; then one multiply by the scale rounds once.
//! Symmetric weights (every zero 8) store no zeros ([`PackedInt4::zeros`] is `None`): the
//! kernel subtracts the constant `magic + 8`.
//!
//! - [`GroupDim::Oc`]: `[k_groups, n_pad]` in `T`, one row per group of `group_stride` k rows
//!   (a 16-row tile at row `r` uses row `r / group_stride`), each run of 64 columns
//!   permuted so lane `g` finds its 8 values in 16 contiguous bytes: position `8g + 2j + h`
//!   holds column `16j + g + 8h` (sub-tile `j`, n8 half `h`).
//! - [`GroupDim::Ic`]: `[⌈n_pad/group_stride⌉, k_pad]` in `T` (transposed: a row per group of
//!   output columns, along k), each run of 16 k positions permuted so lane `t` finds its
//!   four in 8 contiguous bytes: position `4t + {0,1,2,3}` holds k `2t, 2t+1, 2t+8, 2t+9`
//!   (the k rows of its `b0` and `b1` registers, as pairs).
//!
//! # Act-order
//!
//! An `Oc` weight with `g_idx` is sorted by group: input channel `perm[i]` becomes row `i`
//! (a stable sort, so the order inside a group is kept), and the caller permutes A's
//! columns the same way ([`permute_columns`] on the host, `int4_permute_cols` on a device):
//! `A'[:, i] = A[:, perm[i]]`, and `A'·W' = A·W`. After sorting, row `i` must be in group
//! `i / group` (what GPTQ's act-order produces: every group has `group` members, the last
//! the rest); other assignments are refused.

use super::{GroupDim, Int4Error, Int4Weight};
use half::{bf16, f16};
use warpforge_dsl::{Element, ScalarType};

/// The activation types the kernel serves, with their magic number (`magic + x` is exact
/// for `x < 2^mantissa bits`).
pub trait Int4Float: warpforge_dsl::prelude::Float + Element {
    /// The bits of the magic number: 1024.0 in f16, 128.0 in bf16.
    const MAGIC: u16;

    fn bits_of(x: f32) -> u16 {
        Self::from_f32(x).to_bits() as u16
    }

    fn value_of(bits: u16) -> f32 {
        Self::from_bits(bits as u64).to_f32()
    }

    fn magic() -> f32 {
        Self::value_of(Self::MAGIC)
    }
}

impl Int4Float for f16 {
    const MAGIC: u16 = 0x6400;
}

impl Int4Float for bf16 {
    const MAGIC: u16 = 0x4300;
}

/// An [`Int4Weight`] in the kernel's layout (module docs, bit by bit).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedInt4 {
    pub k: usize,
    pub n: usize,
    pub k_pad: usize,
    pub n_pad: usize,
    pub dim: GroupDim,
    /// The logical group size ([`Int4Weight::group`]).
    pub group: usize,
    /// The kernel's: k rows per scale row (`Oc`) or columns per scale row (`Ic`), a power
    /// of two: `group`, or the padded dimension's next power of two for one group per
    /// channel.
    pub group_stride: usize,
    /// The element type of scales and zeros (f16 or bf16: the activations').
    pub dtype: ScalarType,
    /// `[k_pad/16][n_pad/64][32][4]`.
    pub weights: Vec<u32>,
    /// Two `T` per word.
    pub scales: Vec<u32>,
    /// `T(magic + zero)` in the scales' layout; `None`: symmetric, every zero 8.
    pub zeros: Option<Vec<u32>>,
    /// Act-order: row `i` is input channel `perm[i]` (A's columns must be permuted).
    pub perm: Option<Vec<u32>>,
}

impl PackedInt4 {
    /// Scale (and zero) rows: `k_groups` (`Oc`) or `⌈n_pad / group_stride⌉` (`Ic`).
    pub fn scale_rows(&self) -> usize {
        match self.dim {
            GroupDim::Oc => self.k_pad.div_ceil(self.group_stride),
            GroupDim::Ic => self.n_pad.div_ceil(self.group_stride),
        }
    }

    /// Elements of `T` per scale row: `n_pad` (`Oc`) or `k_pad` (`Ic`).
    pub fn scale_cols(&self) -> usize {
        match self.dim {
            GroupDim::Oc => self.n_pad,
            GroupDim::Ic => self.k_pad,
        }
    }

    /// Bytes the kernel streams: weights, scales and zeros.
    pub fn bytes(&self) -> usize {
        4 * (self.weights.len() + self.scales.len() + self.zeros.as_ref().map_or(0, Vec::len))
    }
}

/// Word index of tile row `kt`, tile column `nt`, lane, word.
fn word_index(n_pad: usize, kt: usize, nt: usize, lane: usize, word: usize) -> usize {
    ((kt * (n_pad / 64) + nt) * 32 + lane) * 4 + word
}

/// The (k row, column) inside a tile of value `v` (0..8) of word `word` of lane `lane`.
fn value_position(lane: usize, word: usize, v: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    let row = 2 * t + (v & 1) + 8 * ((v >> 1) & 1);
    let col = 16 * word + g + 8 * (v >> 2);
    (row, col)
}

/// Nibble `p` of a word holds value `INTERLEAVE[p]`.
const INTERLEAVE: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Position inside a 64-column run of an `Oc` scale row of column `c` (`0..64`).
fn oc_scale_position(c: usize) -> usize {
    let (j, rest) = (c / 16, c % 16);
    let (g, h) = (rest % 8, rest / 8);
    8 * g + 2 * j + h
}

/// Position inside a 16-row run of an `Ic` scale row of k row `r` (`0..16`).
fn ic_scale_position(r: usize) -> usize {
    let (t, lo, hi) = ((r % 8) / 2, r % 2, r / 8);
    4 * t + 2 * hi + lo
}

/// The sort of act-order: `perm[i]` is the input channel that becomes row `i`, refused
/// unless sorted row `i` is in group `i / group`.
fn act_order(w: &Int4Weight, g_idx: &[u32]) -> Result<Vec<u32>, Int4Error> {
    let mut perm: Vec<u32> = (0..w.k as u32).collect();
    perm.sort_by_key(|&i| g_idx[i as usize]);
    for (i, &p) in perm.iter().enumerate() {
        let g = g_idx[p as usize] as usize;
        if g != i / w.group {
            return Err(Int4Error::Shape(format!(
                "act-order g_idx: after sorting, row {i} (input channel {p}) is in group {g}, \
                 but the packed layout needs every group to hold exactly {} channels (the last \
                 the rest), as GPTQ's act-order assigns them",
                w.group
            )));
        }
    }
    Ok(perm)
}

/// The kernel's group stride, or why the group cannot be packed.
fn group_stride(w: &Int4Weight, k_pad: usize, n_pad: usize) -> Result<usize, Int4Error> {
    let (whole, pad) = match w.dim {
        GroupDim::Oc => (w.k, k_pad),
        GroupDim::Ic => (w.n, n_pad),
    };
    if w.group >= whole {
        // One group: any power of two ≥ the padded dimension maps every row to group 0.
        Ok(pad.next_power_of_two())
    } else if w.group.is_power_of_two() && w.group >= 16 {
        Ok(w.group)
    } else {
        Err(Int4Error::Shape(format!(
            "group size {} along {:?}: the packed layout needs a power of two ≥ 16 (whole \
             16-row tiles per group, found by a shift) or one group per channel ({whole})",
            w.group, w.dim
        )))
    }
}

/// Repacks `w` into the kernel's layout for activations of type `T` (scales rounded to
/// `T`; see the module docs).
pub fn pack<T: Int4Float>(w: &Int4Weight) -> Result<PackedInt4, Int4Error> {
    w.validate()?;
    let (k_pad, n_pad) = (w.k.div_ceil(16) * 16, w.n.div_ceil(64) * 64);
    let stride = group_stride(w, k_pad, n_pad)?;
    let perm = match (&w.g_idx, w.dim) {
        (Some(g_idx), GroupDim::Oc) => Some(act_order(w, g_idx)?),
        _ => None,
    };
    // Row r of the packed weight is input channel src_row(r).
    let src_row = |r: usize| perm.as_ref().map_or(r, |p| p[r] as usize);
    let mut weights = vec![0u32; k_pad * n_pad / 8];
    for kt in 0..k_pad / 16 {
        for nt in 0..n_pad / 64 {
            for lane in 0..32 {
                for word in 0..4 {
                    let mut q = 0u32;
                    for (p, &v) in INTERLEAVE.iter().enumerate() {
                        let (row, col) = value_position(lane, word, v);
                        let (i, o) = (kt * 16 + row, nt * 64 + col);
                        if i < w.k && o < w.n {
                            q |= (w.codes[src_row(i) * w.n + o] as u32) << (4 * p);
                        }
                    }
                    weights[word_index(n_pad, kt, nt, lane, word)] = q;
                }
            }
        }
    }
    let mut packed = PackedInt4 {
        k: w.k,
        n: w.n,
        k_pad,
        n_pad,
        dim: w.dim,
        group: w.group,
        group_stride: stride,
        dtype: T::SCALAR,
        weights,
        scales: Vec::new(),
        zeros: None,
        perm,
    };
    let symmetric = w.zeros.iter().all(|&z| z == 8);
    let scales = param_table(w, &packed, |p| T::bits_of(w.scales[p]), 0);
    let zeros = param_table(
        w,
        &packed,
        |p| T::bits_of(T::magic() + w.zeros[p] as f32),
        T::MAGIC,
    );
    packed.scales = scales;
    packed.zeros = (!symmetric).then_some(zeros);
    Ok(packed)
}

/// A scale-shaped table of `T` bits: `value(param index)` at each position with a
/// parameter, `pad` elsewhere; two per word, low first.
fn param_table(
    w: &Int4Weight,
    packed: &PackedInt4,
    value: impl Fn(usize) -> u16,
    pad: u16,
) -> Vec<u32> {
    let (rows, cols) = (packed.scale_rows(), packed.scale_cols());
    let mut halves = vec![pad; rows * cols];
    let groups = w.groups();
    for row in 0..rows {
        for col in 0..cols {
            let (at, param) = match w.dim {
                GroupDim::Oc => {
                    let at = row * cols + col / 64 * 64 + oc_scale_position(col % 64);
                    let param = (row < groups && col < w.n).then(|| row * w.n + col);
                    (at, param)
                }
                GroupDim::Ic => {
                    let at = row * cols + col / 16 * 16 + ic_scale_position(col % 16);
                    // An Ic row is a group of output columns; col is a (sorted = original) k row.
                    let param = (row < groups && col < w.k).then(|| col * groups + row);
                    (at, param)
                }
            };
            if let Some(p) = param {
                halves[at] = value(p);
            }
        }
    }
    halves
        .chunks(2)
        .map(|pair| pair[0] as u32 | (pair[1] as u32) << 16)
        .collect()
}

/// The half at logical (`row`, `col`) of a scale-shaped table.
fn param_at(packed: &PackedInt4, table: &[u32], row: usize, col: usize) -> u16 {
    let cols = packed.scale_cols();
    let at = match packed.dim {
        GroupDim::Oc => row * cols + col / 64 * 64 + oc_scale_position(col % 64),
        GroupDim::Ic => row * cols + col / 16 * 16 + ic_scale_position(col % 16),
    };
    (table[at / 2] >> (16 * (at % 2))) as u16
}

/// The logical weight back from its packed form: the exact inverse of [`pack`] for scales
/// representable in `T` (pack rounds them to `T`). `T` must be the type it was packed for.
pub fn unpack<T: Int4Float>(p: &PackedInt4) -> Result<Int4Weight, Int4Error> {
    if p.dtype != T::SCALAR {
        return Err(Int4Error::Shape(format!(
            "packed for {} activations, unpacked as {}",
            p.dtype,
            T::SCALAR
        )));
    }
    let dst_row = |r: usize| p.perm.as_ref().map_or(r, |perm| perm[r] as usize);
    let mut codes = vec![0u8; p.k * p.n];
    for kt in 0..p.k_pad / 16 {
        for nt in 0..p.n_pad / 64 {
            for lane in 0..32 {
                for word in 0..4 {
                    let q = p.weights[word_index(p.n_pad, kt, nt, lane, word)];
                    for (pos, &v) in INTERLEAVE.iter().enumerate() {
                        let (row, col) = value_position(lane, word, v);
                        let (i, o) = (kt * 16 + row, nt * 64 + col);
                        if i < p.k && o < p.n {
                            codes[dst_row(i) * p.n + o] = (q >> (4 * pos) & 15) as u8;
                        }
                    }
                }
            }
        }
    }
    let (groups, params) = match p.dim {
        GroupDim::Oc => {
            let g = p.k.div_ceil(p.group);
            (g, g * p.n)
        }
        GroupDim::Ic => {
            let g = p.n.div_ceil(p.group);
            (g, p.k * g)
        }
    };
    let mut scales = vec![0f32; params];
    let mut zeros = vec![8u8; params];
    for (index, (scale, zero)) in scales.iter_mut().zip(zeros.iter_mut()).enumerate() {
        let (row, col) = match p.dim {
            GroupDim::Oc => (index / p.n, index % p.n),
            GroupDim::Ic => (index % groups, index / groups),
        };
        *scale = T::value_of(param_at(p, &p.scales, row, col));
        if let Some(z) = &p.zeros {
            *zero = (T::value_of(param_at(p, z, row, col)) - T::magic()) as u8;
        }
    }
    let g_idx = p.perm.as_ref().map(|perm| {
        let mut g_idx = vec![0u32; p.k];
        for (i, &ch) in perm.iter().enumerate() {
            g_idx[ch as usize] = (i / p.group) as u32;
        }
        g_idx
    });
    Ok(Int4Weight {
        k: p.k,
        n: p.n,
        group: p.group,
        dim: p.dim,
        codes,
        scales,
        zeros,
        g_idx,
    })
}

/// `A'[r, i] = A[r, perm[i]]` for `rows` rows of `ld` (the act-order activation permutation;
/// columns past `perm.len()` are kept).
pub fn permute_columns<T: Copy>(a: &[T], rows: usize, ld: usize, perm: &[u32]) -> Vec<T> {
    let mut out = a.to_vec();
    for r in 0..rows {
        for (i, &p) in perm.iter().enumerate() {
            out[r * ld + i] = a[r * ld + p as usize];
        }
    }
    out
}

#[cfg(test)]
mod tests;
