//! The logical int4 weight: unpacked 4-bit codes, scales and zero points, and its
//! reference dequantization.
//!
//! # Conventions
//!
//! A linear layer `y = x·Wᵀ` with PyTorch's `W: [n, k]` (`n` output channels, `k` input
//! channels) is stored transposed, as the GEMM's B operand and as GPTQ/MARLIN store it:
//! `codes[i·n + o]` is the code of input channel `i`, output channel `o` (`[k, n]`,
//! row-major), each in `0..=15`. The dequantized weight is
//! `W[o, i] = (code − zero) · scale`, with the (scale, zero) of the element's group:
//!
//! - [`GroupDim::Oc`] (the conventional GPTQ/AWQ/MARLIN layout, "per output channel"):
//!   each output channel has one (scale, zero) per group of `group` consecutive input
//!   channels. `scales` and `zeros` are `[k_groups, n]`, `k_groups = ⌈k / group⌉`; input
//!   channel `i` belongs to group `g_idx[i]` (`i / group` unless act-order reordered it).
//! - [`GroupDim::Ic`] (AdaDim's "per input channel"): each input channel has one
//!   (scale, zero) per group of `group` consecutive output channels. `scales` and `zeros`
//!   are `[k, n_groups]`, `n_groups = ⌈n / group⌉`; element `(i, o)` uses
//!   `scales[i·n_groups + o / group]`. The scale changes along `k` at every row.
//!
//! `group` equal to the whole dimension (`k` for `Oc`, `n` for `Ic`) is one group per
//! channel. Zero points are the true zero (GPTQ v2 convention: no "−1"); symmetric
//! quantization stores 8 everywhere.

use thiserror::Error;

/// The dimension along which a quantization group runs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupDim {
    /// Groups of input channels, one (scale, zero) per (group, output channel).
    Oc,
    /// Groups of output channels, one (scale, zero) per (input channel, group): AdaDim.
    Ic,
}

/// An int4 weight in its logical, unpacked form (module docs: layout and meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Weight {
    /// Input channels (the GEMM's reduction dimension).
    pub k: usize,
    /// Output channels.
    pub n: usize,
    /// Group size along [`Self::dim`]'s grouped dimension.
    pub group: usize,
    pub dim: GroupDim,
    /// `[k, n]` codes, each `0..=15`.
    pub codes: Vec<u8>,
    /// `[k_groups, n]` (`Oc`) or `[k, n_groups]` (`Ic`).
    pub scales: Vec<f32>,
    /// Same shape as `scales`, each `0..=15`.
    pub zeros: Vec<u8>,
    /// `Oc` only: the group of each input channel (`[k]`), when act-order assigned groups
    /// out of order; `None` means `i / group`.
    pub g_idx: Option<Vec<u32>>,
}

#[derive(Debug, Error, PartialEq)]
pub enum Int4Error {
    #[error("int4 weight: {0}")]
    Shape(String),
}

impl Int4Weight {
    /// Groups along the grouped dimension: `⌈k / group⌉` (`Oc`) or `⌈n / group⌉` (`Ic`).
    pub fn groups(&self) -> usize {
        match self.dim {
            GroupDim::Oc => self.k.div_ceil(self.group),
            GroupDim::Ic => self.n.div_ceil(self.group),
        }
    }

    /// Index into `scales`/`zeros` of element (input channel `i`, output channel `o`).
    pub fn param_index(&self, i: usize, o: usize) -> usize {
        match self.dim {
            GroupDim::Oc => {
                let g = match &self.g_idx {
                    Some(g_idx) => g_idx[i] as usize,
                    None => i / self.group,
                };
                g * self.n + o
            }
            GroupDim::Ic => i * self.groups() + o / self.group,
        }
    }

    /// Checks every length, code and zero range, and `g_idx` (an `Oc`-only field).
    pub fn validate(&self) -> Result<(), Int4Error> {
        let bad = |what: String| Err(Int4Error::Shape(what));
        if self.k == 0 || self.n == 0 || self.group == 0 {
            return bad(format!(
                "k = {}, n = {}, group = {} must be positive",
                self.k, self.n, self.group
            ));
        }
        if self.codes.len() != self.k * self.n {
            return bad(format!(
                "codes has {} entries, expected k·n = {}",
                self.codes.len(),
                self.k * self.n
            ));
        }
        let params = match self.dim {
            GroupDim::Oc => self.groups() * self.n,
            GroupDim::Ic => self.k * self.groups(),
        };
        if self.scales.len() != params || self.zeros.len() != params {
            return bad(format!(
                "scales/zeros have {}/{} entries, expected {params} for {:?} groups of {}",
                self.scales.len(),
                self.zeros.len(),
                self.dim,
                self.group
            ));
        }
        if let Some(i) = self.codes.iter().position(|&c| c > 15) {
            return bad(format!(
                "code {} at index {i} is not a 4-bit value",
                self.codes[i]
            ));
        }
        if let Some(i) = self.zeros.iter().position(|&z| z > 15) {
            return bad(format!(
                "zero {} at index {i} is not a 4-bit value",
                self.zeros[i]
            ));
        }
        if let Some(g_idx) = &self.g_idx {
            if self.dim == GroupDim::Ic {
                return bad("g_idx (act-order groups) applies to Oc groups only".into());
            }
            if g_idx.len() != self.k {
                return bad(format!(
                    "g_idx has {} entries, expected k = {}",
                    g_idx.len(),
                    self.k
                ));
            }
            if let Some(i) = g_idx.iter().position(|&g| g as usize >= self.groups()) {
                return bad(format!(
                    "g_idx[{i}] = {} is past the {} groups",
                    g_idx[i],
                    self.groups()
                ));
            }
        }
        Ok(())
    }

    /// The dequantized weight `[k, n]` in f32: `(code − zero) · scale`, computed exactly
    /// (a 4-bit integer times a scale is exact in f32 for f16/bf16 scales). Kernels that
    /// round to f16/bf16 compare against this rounded once.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.k * self.n];
        for i in 0..self.k {
            for o in 0..self.n {
                let p = self.param_index(i, o);
                let code = self.codes[i * self.n + o] as i32 - self.zeros[p] as i32;
                w[i * self.n + o] = code as f32 * self.scales[p];
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(dim: GroupDim, k: usize, n: usize, group: usize) -> Int4Weight {
        let params = match dim {
            GroupDim::Oc => k.div_ceil(group) * n,
            GroupDim::Ic => k * n.div_ceil(group),
        };
        Int4Weight {
            k,
            n,
            group,
            dim,
            codes: (0..k * n).map(|x| (x * 7 % 16) as u8).collect(),
            scales: (0..params).map(|p| 0.5 + p as f32 / 4.0).collect(),
            zeros: (0..params).map(|p| (p % 16) as u8).collect(),
            g_idx: None,
        }
    }

    #[test]
    fn oc_groups_run_along_input_channels() {
        let w = weight(GroupDim::Oc, 5, 3, 2);
        w.validate().unwrap();
        assert_eq!(w.groups(), 3);
        // Element (i = 3, o = 1): group 1 of output channel 1 → params[1·3 + 1].
        let d = w.dequantize();
        let (code, zero, scale) = (w.codes[3 * 3 + 1] as f32, w.zeros[4] as f32, w.scales[4]);
        assert_eq!(d[3 * 3 + 1], (code - zero) * scale);
    }

    #[test]
    fn ic_groups_run_along_output_channels() {
        let w = weight(GroupDim::Ic, 3, 5, 2);
        w.validate().unwrap();
        assert_eq!(w.groups(), 3);
        // Element (i = 2, o = 4): input channel 2, output group 2 → params[2·3 + 2].
        let d = w.dequantize();
        let (code, zero, scale) = (w.codes[2 * 5 + 4] as f32, w.zeros[8] as f32, w.scales[8]);
        assert_eq!(d[2 * 5 + 4], (code - zero) * scale);
    }

    #[test]
    fn act_order_groups_follow_g_idx() {
        let mut w = weight(GroupDim::Oc, 4, 2, 2);
        w.g_idx = Some(vec![1, 0, 1, 0]);
        w.validate().unwrap();
        assert_eq!(w.param_index(0, 1), 2 + 1);
        w.g_idx = Some(vec![1, 0, 2, 0]);
        assert!(w.validate().unwrap_err().to_string().contains("g_idx[2]"));
    }

    #[test]
    fn bad_shapes_are_named() {
        let mut w = weight(GroupDim::Oc, 4, 2, 2);
        w.codes.pop();
        assert!(w
            .validate()
            .unwrap_err()
            .to_string()
            .contains("codes has 7"));
        let mut w = weight(GroupDim::Ic, 4, 2, 2);
        w.zeros[0] = 16;
        assert!(w.validate().unwrap_err().to_string().contains("zero 16"));
    }
}
