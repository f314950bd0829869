//! Int4 model directories: GPTQ and AWQ checkpoints (read through
//! [`warpforge_kernels::int4::import`]) and warpforge's own int4 format (written by
//! `warpforge quantize`), each linear layer loaded as the logical [`Int4Weight`].
//!
//! # Detection ([`Int4Config::from_dir`])
//!
//! `config.json`'s `quantization_config.quant_method`: `"gptq"` or `"awq"` → an imported
//! checkpoint, `"warpforge-int4"` → ours; without one, AutoGPTQ's `quantize_config.json` or
//! AutoAWQ's `quant_config.json`; none of these → not an int4 directory.
//!
//! # warpforge's int4 format
//!
//! One or more safetensors files as for a float model (embeddings, norms, `lm_head` and
//! biases keep their dtype); each quantized linear `L` (`K` inputs, `N` outputs, weight
//! `[N, K]` in `nn.Linear` terms) has, in [`Int4Weight`]'s layout and meaning:
//!
//! - `L.qcodes` U8 `[K, ⌈N/2⌉]`: the `[K, N]` codes two to a byte, output `2c` in the low
//!   nibble of byte `c` of its row and `2c + 1` in the high one (a pad nibble of 0 when
//!   `N` is odd);
//! - `L.scales` F16 `[⌈K/G⌉, N]` (groups along input channels, `"oc"`) or `[K, ⌈N/G⌉]`
//!   (groups along output channels, AdaDim's `"ic"`);
//! - `L.qzeros` U8, the shape of `scales`, true zero points `0..=15`; absent when
//!   symmetric (every zero 8);
//! - `L.g_idx` I32 `[K]` only for act-ordered `oc` groups.
//!
//! `config.json` says `"quantization_config": {"quant_method": "warpforge-int4", "bits": 4,
//! "group_size": G, "dim": "oc"|"ic"|"auto", "method": "rtn"|"gptq", "sym": bool,
//! "layer_dims": {L: "oc"|"ic", …}}`; `layer_dims` names every quantized linear's group
//! dimension when `dim` is `"auto"` (AdaDim chose per layer).

use super::config::ModelConfig;
use super::weights::{expected_tensors, ModelWeights, TensorView, WeightsError};
use half::f16;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warpforge_kernels::int4::import::{
    import_layer, Dtype, ImportError, QuantizationConfig, RawTensor, TensorSource,
};
use warpforge_kernels::int4::{GroupDim, Int4Error, Int4Weight};

/// `quantization_config.quant_method` of warpforge's own format.
pub const WARPFORGE_INT4: &str = "warpforge-int4";

/// The linear layers of a decoder layer (suffixes after `model.layers.{i}.`), in order.
pub const DECODER_LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// `(out_features, in_features)` of a decoder linear (one of [`DECODER_LINEARS`]).
pub fn linear_shape(c: &ModelConfig, proj: &str) -> Option<(usize, usize)> {
    let (h, m) = (c.hidden_size, c.intermediate_size);
    Some(match proj {
        "self_attn.q_proj" => (c.q_dim(), h),
        "self_attn.k_proj" | "self_attn.v_proj" => (c.kv_dim(), h),
        "self_attn.o_proj" => (h, c.q_dim()),
        "mlp.gate_proj" | "mlp.up_proj" => (m, h),
        "mlp.down_proj" => (h, m),
        _ => return None,
    })
}

/// Why an int4 directory or layer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Int4LoadError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(
        "{dir}: quantization_config (quant_method {method:?}) cannot be read by the int4 \
         loader: {message}"
    )]
    Config {
        dir: PathBuf,
        method: String,
        message: String,
    },
    #[error("tensor `{tensor}`: {message}")]
    Tensor { tensor: String, message: String },
    #[error(
        "linear `{name}`: the int4 weight is [{found_out}, {found_in}] (out, in); the config \
         expects [{out}, {in_}]"
    )]
    Shape {
        name: String,
        out: usize,
        in_: usize,
        found_out: usize,
        found_in: usize,
    },
    #[error(
        "linear `{name}`: neither `{name}.weight` nor the int4 tensor `{name}.{packed}` is in \
         the files"
    )]
    Missing { name: String, packed: &'static str },
    #[error("linear `{name}`: {source}")]
    Weight { name: String, source: Int4Error },
}

/// How warpforge's quantizer chose each layer's group dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimChoice {
    Fixed(GroupDim),
    /// AdaDim per layer ([`WarpforgeInt4::layer_dims`]).
    Auto,
}

/// The quantizer that produced a warpforge int4 model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int4Method {
    Rtn,
    Gptq,
}

impl Int4Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Int4Method::Rtn => "rtn",
            Int4Method::Gptq => "gptq",
        }
    }
}

/// The `quantization_config` of warpforge's own format (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct WarpforgeInt4 {
    pub group: usize,
    pub dim: DimChoice,
    pub method: Int4Method,
    pub sym: bool,
    /// Full linear name → its group dimension; every quantized linear when `dim` is `Auto`.
    pub layer_dims: BTreeMap<String, GroupDim>,
}

pub fn dim_name(dim: GroupDim) -> &'static str {
    match dim {
        GroupDim::Oc => "oc",
        GroupDim::Ic => "ic",
    }
}

fn parse_dim(text: &str) -> Option<GroupDim> {
    match text {
        "oc" => Some(GroupDim::Oc),
        "ic" => Some(GroupDim::Ic),
        _ => None,
    }
}

impl WarpforgeInt4 {
    /// The group dimension of linear `name`.
    pub fn dim_of(&self, name: &str) -> Option<GroupDim> {
        match self.dim {
            DimChoice::Fixed(dim) => Some(dim),
            DimChoice::Auto => self.layer_dims.get(name).copied(),
        }
    }

    /// The `quantization_config` object.
    pub fn to_json(&self) -> Value {
        let dims: serde_json::Map<String, Value> = self
            .layer_dims
            .iter()
            .map(|(name, &dim)| (name.clone(), json!(dim_name(dim))))
            .collect();
        let mut v = json!({
            "quant_method": WARPFORGE_INT4,
            "bits": 4,
            "group_size": self.group,
            "dim": match self.dim { DimChoice::Fixed(d) => dim_name(d), DimChoice::Auto => "auto" },
            "method": self.method.as_str(),
            "sym": self.sym,
        });
        if self.dim == DimChoice::Auto {
            v["layer_dims"] = Value::Object(dims);
        }
        v
    }

    /// Parses the `quantization_config` object; the error is the message alone.
    pub fn from_json(v: &Value) -> Result<WarpforgeInt4, String> {
        match v.get("bits").and_then(Value::as_u64) {
            Some(4) => {}
            other => {
                return Err(format!(
                    "bits = {other:?}: only 4-bit weights are supported"
                ))
            }
        }
        let group = v
            .get("group_size")
            .and_then(Value::as_u64)
            .filter(|&g| g > 0)
            .ok_or("`group_size` must be a positive integer")? as usize;
        let dim = match v.get("dim").and_then(Value::as_str) {
            Some("auto") => DimChoice::Auto,
            Some(d) => DimChoice::Fixed(
                parse_dim(d).ok_or(format!("dim {d:?}: expected \"oc\", \"ic\" or \"auto\""))?,
            ),
            None => return Err("`dim` is missing (\"oc\", \"ic\" or \"auto\")".into()),
        };
        let method = match v.get("method").and_then(Value::as_str) {
            Some("rtn") => Int4Method::Rtn,
            Some("gptq") => Int4Method::Gptq,
            other => return Err(format!("method {other:?}: expected \"rtn\" or \"gptq\"")),
        };
        let sym = v.get("sym").and_then(Value::as_bool).unwrap_or(false);
        let mut layer_dims = BTreeMap::new();
        if let Some(dims) = v.get("layer_dims") {
            let dims = dims.as_object().ok_or("`layer_dims` must be an object")?;
            for (name, d) in dims {
                let dim = d.as_str().and_then(parse_dim).ok_or(format!(
                    "layer_dims[{name:?}] = {d}: expected \"oc\" or \"ic\""
                ))?;
                layer_dims.insert(name.clone(), dim);
            }
        }
        if dim == DimChoice::Auto && layer_dims.is_empty() {
            return Err("dim \"auto\" needs `layer_dims` naming each layer's dim".into());
        }
        Ok(WarpforgeInt4 {
            group,
            dim,
            method,
            sym,
            layer_dims,
        })
    }
}

/// The int4 scheme of a model directory (module docs: detection).
#[derive(Clone, Debug, PartialEq)]
pub enum Int4Config {
    /// A GPTQ or AWQ checkpoint.
    Imported(QuantizationConfig),
    Warpforge(WarpforgeInt4),
}

impl Int4Config {
    /// `Ok(None)` when the directory is not quantized; an unknown `quant_method` is an error.
    pub fn from_dir(dir: &Path) -> Result<Option<Int4Config>, Int4LoadError> {
        let config_path = dir.join("config.json");
        let quant = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|c| c.get("quantization_config").cloned()),
            Err(_) => None,
        };
        let Some(quant) = quant else {
            let sidecar = ["quantize_config.json", "quant_config.json"]
                .iter()
                .any(|f| dir.join(f).exists());
            if !sidecar {
                return Ok(None);
            }
            return Ok(Some(Int4Config::Imported(QuantizationConfig::from_dir(
                dir,
            )?)));
        };
        let method = quant
            .get("quant_method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let config_error = |message: String| Int4LoadError::Config {
            dir: dir.to_path_buf(),
            method: method.clone(),
            message,
        };
        match method.to_ascii_lowercase().as_str() {
            WARPFORGE_INT4 => WarpforgeInt4::from_json(&quant)
                .map(|q| Some(Int4Config::Warpforge(q)))
                .map_err(config_error),
            "gptq" | "awq" => QuantizationConfig::from_json(&quant)
                .map(|q| Some(Int4Config::Imported(q)))
                .map_err(|e| config_error(e.to_string())),
            _ => Err(config_error(format!(
                "supported: \"gptq\", \"awq\" and \"{WARPFORGE_INT4}\""
            ))),
        }
    }

    /// The tensor suffix that marks a linear as quantized in this format.
    fn packed_suffix(&self) -> &'static str {
        match self {
            Int4Config::Imported(_) => "qweight",
            Int4Config::Warpforge(_) => "qcodes",
        }
    }
}

/// A linear layer's weight as stored: float (`[out, in]`) or int4.
#[derive(Clone, Debug)]
pub enum LinearWeight<'a> {
    Dense(TensorView<'a>),
    Int4(Int4Weight),
}

impl LinearWeight<'_> {
    /// The weight in `nn.Linear` layout `[out, in]` as f32 (int4 dequantized exactly).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            LinearWeight::Dense(view) => view.to_f32(),
            LinearWeight::Int4(w) => w.dequantize_nk(),
        }
    }
}

/// The weight of linear `name` (e.g. `model.layers.0.self_attn.q_proj`), `[out, in_]`:
/// int4 when `quant` is given and the files hold its packed tensors, else `name.weight`.
/// Every error names the tensor.
pub fn linear<'a>(
    weights: &'a ModelWeights,
    quant: Option<&Int4Config>,
    name: &str,
    out: usize,
    in_: usize,
) -> Result<LinearWeight<'a>, Int4LoadError> {
    let Some(quant) = quant else {
        return Ok(LinearWeight::Dense(
            weights.tensor(&format!("{name}.weight"), &[out, in_])?,
        ));
    };
    let packed = quant.packed_suffix();
    if weights.raw(&format!("{name}.{packed}")).is_none() {
        if weights.raw(&format!("{name}.weight")).is_none() {
            return Err(Int4LoadError::Missing {
                name: name.to_string(),
                packed,
            });
        }
        // A layer the quantizer left in float (e.g. GPTQ's modules_to_not_convert).
        return Ok(LinearWeight::Dense(
            weights.tensor(&format!("{name}.weight"), &[out, in_])?,
        ));
    }
    let weight = match quant {
        Int4Config::Imported(cfg) => import_layer(weights, name, cfg)?.weight,
        Int4Config::Warpforge(cfg) => read_warpforge(weights, name, cfg, out, in_)?,
    };
    if (weight.n, weight.k) != (out, in_) {
        return Err(Int4LoadError::Shape {
            name: name.to_string(),
            out,
            in_,
            found_out: weight.n,
            found_in: weight.k,
        });
    }
    Ok(LinearWeight::Int4(weight))
}

/// Checks that every tensor the config needs is present: float tensors with their shape,
/// each decoder linear as int4 (presence; shapes are checked by [`linear`]) or float.
pub fn validate(
    weights: &ModelWeights,
    config: &ModelConfig,
    quant: &Int4Config,
) -> Result<(), Int4LoadError> {
    for (name, shape) in expected_tensors(config) {
        let linear = name
            .strip_suffix(".weight")
            .filter(|prefix| DECODER_LINEARS.iter().any(|p| prefix.ends_with(p)));
        match linear {
            Some(prefix) => {
                let packed = quant.packed_suffix();
                if weights.raw(&format!("{prefix}.{packed}")).is_none() {
                    if weights.raw(&name).is_none() {
                        return Err(Int4LoadError::Missing {
                            name: prefix.to_string(),
                            packed,
                        });
                    }
                    weights.tensor(&name, &shape)?;
                }
            }
            None => {
                weights.tensor(&name, &shape)?;
            }
        }
    }
    Ok(())
}

/// The importer reads the files through this (integer tensors included).
impl TensorSource for ModelWeights {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>> {
        let (dtype, shape, data) = self.raw(name)?;
        Some(RawTensor {
            dtype,
            shape: shape.to_vec(),
            data,
        })
    }
}

/// One warpforge int4 linear from its tensors (module docs).
pub fn read_warpforge(
    src: &(impl TensorSource + ?Sized),
    name: &str,
    cfg: &WarpforgeInt4,
    out: usize,
    in_: usize,
) -> Result<Int4Weight, Int4LoadError> {
    let dim = cfg.dim_of(name).ok_or_else(|| Int4LoadError::Tensor {
        tensor: format!("{name}.qcodes"),
        message: "quantization_config.layer_dims does not name this layer's dim".into(),
    })?;
    let (k, n) = (in_, out);
    let group = cfg.group.min(match dim {
        GroupDim::Oc => k,
        GroupDim::Ic => n,
    });
    let params = match dim {
        GroupDim::Oc => [k.div_ceil(group), n],
        GroupDim::Ic => [k, n.div_ceil(group)],
    };
    let packed = get(src, name, "qcodes", Dtype::U8, &[k, n.div_ceil(2)])?;
    let mut codes = Vec::with_capacity(k * n);
    for row in packed.chunks_exact(n.div_ceil(2)) {
        codes.extend((0..n).map(|o| (row[o / 2] >> (4 * (o % 2))) & 0xF));
    }
    let scales: Vec<f32> = get(src, name, "scales", Dtype::F16, &params)?
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let zeros = match cfg.sym {
        true => vec![8; params[0] * params[1]],
        false => get(src, name, "qzeros", Dtype::U8, &params)?.to_vec(),
    };
    let g_idx = match src.tensor(&format!("{name}.g_idx")) {
        None => None,
        Some(_) => Some(
            get(src, name, "g_idx", Dtype::I32, &[k])?
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
    };
    let weight = Int4Weight {
        k,
        n,
        group,
        dim,
        codes,
        scales,
        zeros,
        g_idx,
    };
    weight.validate().map_err(|source| Int4LoadError::Weight {
        name: name.to_string(),
        source,
    })?;
    Ok(weight)
}

/// Tensor `name.suffix`, checked to have `dtype` and `shape`.
fn get<'s, S: TensorSource + ?Sized>(
    src: &'s S,
    name: &str,
    suffix: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'s [u8], Int4LoadError> {
    let tensor = format!("{name}.{suffix}");
    let raw = src.tensor(&tensor).ok_or_else(|| Int4LoadError::Tensor {
        tensor: tensor.clone(),
        message: format!("missing (expected {dtype:?} {shape:?})"),
    })?;
    if raw.dtype != dtype || raw.shape != shape {
        return Err(Int4LoadError::Tensor {
            tensor,
            message: format!(
                "is {:?} {:?}, expected {dtype:?} {shape:?}",
                raw.dtype, raw.shape
            ),
        });
    }
    Ok(raw.data)
}

/// A tensor to write: name, dtype, shape, little-endian bytes.
pub type OwnedTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// The tensors of linear `name` in warpforge's format (module docs); `sym` leaves out the
/// zeros (every one must then be 8).
pub fn warpforge_tensors(name: &str, w: &Int4Weight, sym: bool) -> Vec<OwnedTensor> {
    let row_bytes = w.n.div_ceil(2);
    let mut packed = vec![0u8; w.k * row_bytes];
    for i in 0..w.k {
        for o in 0..w.n {
            packed[i * row_bytes + o / 2] |= w.codes[i * w.n + o] << (4 * (o % 2));
        }
    }
    let params = match w.dim {
        GroupDim::Oc => vec![w.groups(), w.n],
        GroupDim::Ic => vec![w.k, w.groups()],
    };
    let scales = w
        .scales
        .iter()
        .flat_map(|&s| f16::from_f32(s).to_le_bytes())
        .collect();
    let mut tensors = vec![
        (
            format!("{name}.qcodes"),
            Dtype::U8,
            vec![w.k, row_bytes],
            packed,
        ),
        (format!("{name}.scales"), Dtype::F16, params.clone(), scales),
    ];
    if !sym {
        tensors.push((format!("{name}.qzeros"), Dtype::U8, params, w.zeros.clone()));
    }
    if let Some(g_idx) = &w.g_idx {
        let bytes = g_idx.iter().flat_map(|g| g.to_le_bytes()).collect();
        tensors.push((format!("{name}.g_idx"), Dtype::I32, vec![w.k], bytes));
    }
    tensors
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
            scales: (0..params).map(|p| 0.25 + p as f32 / 8.0).collect(),
            zeros: (0..params).map(|p| (p * 3 % 16) as u8).collect(),
            g_idx: None,
        }
    }

    fn source(tensors: Vec<OwnedTensor>) -> HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
        tensors
            .into_iter()
            .map(|(name, d, s, b)| (name, (d, s, b)))
            .collect()
    }

    fn config(dim: DimChoice, group: usize) -> WarpforgeInt4 {
        WarpforgeInt4 {
            group,
            dim,
            method: Int4Method::Rtn,
            sym: false,
            layer_dims: BTreeMap::from([("l".to_string(), GroupDim::Ic)]),
        }
    }

    #[test]
    fn the_format_round_trips_both_dims_and_odd_widths() {
        for (dim, k, n) in [(GroupDim::Oc, 8, 5), (GroupDim::Ic, 6, 7)] {
            let w = weight(dim, k, n, 4);
            let src = source(warpforge_tensors("l", &w, false));
            let cfg = config(DimChoice::Fixed(dim), 4);
            assert_eq!(read_warpforge(&src, "l", &cfg, n, k).unwrap(), w);
        }
        let mut w = weight(GroupDim::Ic, 4, 4, 2);
        w.zeros.iter_mut().for_each(|z| *z = 8);
        let mut cfg = config(DimChoice::Auto, 2);
        cfg.sym = true;
        let src = source(warpforge_tensors("l", &w, true));
        assert!(!src.contains_key("l.qzeros"));
        assert_eq!(read_warpforge(&src, "l", &cfg, 4, 4).unwrap(), w);
        let json = WarpforgeInt4::from_json(&cfg.to_json()).unwrap();
        assert_eq!(json, cfg);
    }

    #[test]
    fn wrong_tensors_are_named() {
        let w = weight(GroupDim::Oc, 8, 4, 4);
        let cfg = config(DimChoice::Fixed(GroupDim::Oc), 4);
        let mut src = source(warpforge_tensors("l", &w, false));
        src.get_mut("l.scales").unwrap().1 = vec![4, 2];
        let err = read_warpforge(&src, "l", &cfg, 4, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`l.scales`") && err.contains("[4, 2]") && err.contains("[2, 4]"),
            "{err}"
        );
        src.get_mut("l.scales").unwrap().1 = vec![2, 4];
        src.remove("l.qzeros");
        let err = read_warpforge(&src, "l", &cfg, 4, 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`l.qzeros`: missing"), "{err}");
        let err = WarpforgeInt4::from_json(&json!({"bits": 8})).unwrap_err();
        assert!(err.contains("only 4-bit"), "{err}");
    }
}
