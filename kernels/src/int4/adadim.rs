//! AdaDim (Heo et al., ICLR'24): per layer, quantize with groups along both dimensions and
//! keep the one with the lower output error on calibration activations.
//!
//! The criterion is the layer's own output MSE, `mean((x·Wᵀ − x·Ŵᵀ)²)` over the calibration
//! tokens and output channels ([`output_mse`]). AdaDim's code measures q/k/v on the whole
//! attention block's output and gate/up on the MLP's; a caller with those blocks at hand
//! can compare them itself with [`quantize_rtn`] / [`quantize_gptq`] per dimension — this
//! module needs only the layer.
//!
//! Methods: [`AdaDimMethod::Rtn`] (RTN-ada); [`AdaDimMethod::Gptq`] quantizes both ways
//! with GPTQ and compares the GPTQ results; [`AdaDimMethod::GptqSelectedByRtn`] is the
//! paper's GPTQ-ada: the dimension is chosen by the RTN errors, then GPTQ runs once, on
//! the chosen dimension (half the cost). The choice and both errors come back in a
//! [`QuantReport`] to be stored with the weights.

use super::gptq::{quantize_gptq, GptqConfig, Hessian};
use super::quant::{output_mse, quantize_rtn, GroupSize, QuantConfig, QuantError};
use super::weight::{GroupDim, Int4Weight};

/// How AdaDim quantizes each candidate (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdaDimMethod {
    Rtn,
    /// GPTQ with these settings (`quant.dim` is set per candidate; `static_groups`
    /// applies to the `Oc` candidate).
    Gptq(GptqConfig),
    GptqSelectedByRtn(GptqConfig),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaDimConfig {
    pub group: GroupSize,
    pub sym: bool,
    pub method: AdaDimMethod,
}

/// The per-layer record AdaDim leaves with the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantReport {
    /// The dimension chosen.
    pub dim: GroupDim,
    /// The output MSE of each candidate as compared (RTN's for `Rtn` and
    /// `GptqSelectedByRtn`, GPTQ's for `Gptq`).
    pub error_oc: f64,
    pub error_ic: f64,
    /// The output MSE of the weight returned (differs from the compared one for
    /// `GptqSelectedByRtn`).
    pub error: f64,
}

/// AdaDim's choice for `w: [n, k]` (`nn.Linear` layout) on calibration activations
/// `x: [tokens, k]`. Ties go to `Oc`, the conventional layout.
pub fn quantize_adadim(
    w: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    cfg: &AdaDimConfig,
) -> Result<(Int4Weight, QuantReport), QuantError> {
    if k == 0 || !x.len().is_multiple_of(k) || x.is_empty() {
        return Err(QuantError::Shape(format!(
            "calibration activations have {} values, expected a positive multiple of k = {k}",
            x.len()
        )));
    }
    let tokens = x.len() / k;
    let quant = |dim| QuantConfig::new(cfg.group, dim, cfg.sym);
    let hessian = || -> Result<Hessian, QuantError> {
        let mut h = Hessian::new(k);
        h.add_batch(x)?;
        Ok(h)
    };
    let gptq = |h: &Hessian, settings: &GptqConfig, dim| {
        let c = GptqConfig {
            quant: quant(dim),
            ..*settings
        };
        quantize_gptq(w, n, k, h, &c).map(|(q, _)| q)
    };
    let candidates = |make: &dyn Fn(GroupDim) -> Result<Int4Weight, QuantError>| {
        let oc = make(GroupDim::Oc)?;
        let ic = make(GroupDim::Ic)?;
        let (e_oc, e_ic) = (
            output_mse(x, tokens, w, &oc)?,
            output_mse(x, tokens, w, &ic)?,
        );
        Ok::<_, QuantError>((oc, ic, e_oc, e_ic))
    };
    let pick = |oc, ic, e_oc: f64, e_ic: f64| {
        if e_ic < e_oc {
            (ic, GroupDim::Ic, e_ic)
        } else {
            (oc, GroupDim::Oc, e_oc)
        }
    };
    let (weight, dim, error, error_oc, error_ic) = match &cfg.method {
        AdaDimMethod::Rtn => {
            let (oc, ic, e_oc, e_ic) = candidates(&|dim| quantize_rtn(w, n, k, &quant(dim)))?;
            let (q, dim, e) = pick(oc, ic, e_oc, e_ic);
            (q, dim, e, e_oc, e_ic)
        }
        AdaDimMethod::Gptq(settings) => {
            let h = hessian()?;
            let (oc, ic, e_oc, e_ic) = candidates(&|dim| gptq(&h, settings, dim))?;
            let (q, dim, e) = pick(oc, ic, e_oc, e_ic);
            (q, dim, e, e_oc, e_ic)
        }
        AdaDimMethod::GptqSelectedByRtn(settings) => {
            let (oc, ic, e_oc, e_ic) = candidates(&|dim| quantize_rtn(w, n, k, &quant(dim)))?;
            let (_, dim, _) = pick(oc, ic, e_oc, e_ic);
            let q = gptq(&hessian()?, settings, dim)?;
            let e = output_mse(x, tokens, w, &q)?;
            (q, dim, e, e_oc, e_ic)
        }
    };
    Ok((
        weight,
        QuantReport {
            dim,
            error_oc,
            error_ic,
            error,
        },
    ))
}
