//! The quantization config of a GPTQ/AWQ checkpoint (which file, which keys).

use super::ImportError;
use serde_json::Value;
use std::path::Path;

/// The quantization method a checkpoint declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMethod {
    Gptq,
    Awq,
}

/// How zero points are stored (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// GPTQ v1: stored zero − 1.
    GptqV1,
    /// GPTQ v2: the true zero.
    GptqV2,
    /// AWQ GEMM: true zeros, AWQ's nibble order.
    Awq,
}

/// The parts of a checkpoint's quantization config the import needs.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizationConfig {
    pub method: QuantMethod,
    pub bits: u32,
    /// `None`: one group per output channel (`group_size: -1`).
    pub group_size: Option<usize>,
    pub desc_act: bool,
    pub sym: bool,
    /// As declared; GPTQ's import may read a declared v1 file as v2 (module docs).
    pub format: CheckpointFormat,
}

impl QuantizationConfig {
    /// Parses a `quantization_config` object (or a `quantize_config.json` /
    /// `quant_config.json` file's). Keys: `quant_method` ("gptq" or "awq"; absent: AutoAWQ's
    /// `w_bit` key means AWQ, else GPTQ as in old AutoGPTQ files), `bits` (or `w_bit`),
    /// `group_size` (or `q_group_size`; −1 = per channel), `desc_act`, `sym` (GPTQ,
    /// default true), `zero_point` (AWQ, default true: asymmetric), `checkpoint_format`
    /// ("gptq" default, "gptq_v2"), AWQ's `version` ("gemm" only).
    pub fn from_json(v: &Value) -> Result<QuantizationConfig, ImportError> {
        let bad = |m: String| Err(ImportError::Config(m));
        if !v.is_object() {
            return bad(format!("expected a JSON object, found {v}"));
        }
        let method = match v.get("quant_method").map(|m| m.as_str().map(str::to_ascii_lowercase)) {
            Some(Some(m)) if m == "gptq" => QuantMethod::Gptq,
            Some(Some(m)) if m == "awq" => QuantMethod::Awq,
            Some(m) => {
                return bad(format!(
                    "quant_method {} is not supported: int4 import reads \"gptq\" and \"awq\" checkpoints",
                    m.map_or_else(|| v["quant_method"].to_string(), |m| format!("\"{m}\""))
                ))
            }
            None if v.get("w_bit").is_some() => QuantMethod::Awq,
            None => QuantMethod::Gptq,
        };
        let int = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| v.get(*k))
                .map(|x| x.as_i64().ok_or(x))
        };
        let bits = match int(&["bits", "w_bit"]) {
            Some(Ok(4)) => 4,
            Some(Ok(b)) => return bad(format!("bits = {b}: only 4-bit checkpoints are supported")),
            Some(Err(x)) => return bad(format!("bits = {x} is not an integer")),
            None => return bad("`bits` is missing".into()),
        };
        let group_size = match int(&["group_size", "q_group_size"]) {
            Some(Ok(-1)) => None,
            Some(Ok(g)) if g > 0 => Some(g as usize),
            Some(Ok(g)) => {
                return bad(format!(
                    "group_size = {g}: expected a positive size or -1 (per channel)"
                ))
            }
            Some(Err(x)) => return bad(format!("group_size = {x} is not an integer")),
            None => return bad("`group_size` is missing".into()),
        };
        let flag = |key: &str, default: bool| match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(x) => Err(ImportError::Config(format!("{key} = {x} is not a boolean"))),
        };
        let desc_act = flag("desc_act", false)?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        if flag("is_marlin_format", false)? {
            return bad("is_marlin_format: checkpoints already repacked for MARLIN are not supported; use the GPTQ original".into());
        }
        let (sym, format) = match method {
            QuantMethod::Gptq => {
                let format = match text("checkpoint_format").as_deref() {
                    None | Some("gptq") => CheckpointFormat::GptqV1,
                    Some("gptq_v2") => CheckpointFormat::GptqV2,
                    Some(f) => return bad(format!("checkpoint_format \"{f}\" is not supported (expected \"gptq\" or \"gptq_v2\")")),
                };
                (flag("sym", true)?, format)
            }
            QuantMethod::Awq => {
                if let Some(version) = text("version").filter(|v| v != "gemm") {
                    return bad(format!(
                        "AWQ version \"{version}\" is not supported: only the GEMM packing is"
                    ));
                }
                (!flag("zero_point", true)?, CheckpointFormat::Awq)
            }
        };
        Ok(QuantizationConfig {
            method,
            bits,
            group_size,
            desc_act,
            sym,
            format,
        })
    }

    /// The config of a model directory (module docs: which file).
    pub fn from_dir(dir: &Path) -> Result<QuantizationConfig, ImportError> {
        let config = dir.join("config.json");
        if config.exists() {
            if let Some(q) = read_json(&config)?.get("quantization_config") {
                return QuantizationConfig::from_json(q);
            }
        }
        for name in ["quantize_config.json", "quant_config.json"] {
            let path = dir.join(name);
            if path.exists() {
                return QuantizationConfig::from_json(&read_json(&path)?);
            }
        }
        Err(ImportError::File {
            path: dir.to_path_buf(),
            message: "no quantization config: expected config.json with \"quantization_config\", quantize_config.json or quant_config.json".into(),
        })
    }
}

pub(super) fn read_json(path: &Path) -> Result<Value, ImportError> {
    let file = |message: String| ImportError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file(format!("not valid JSON: {e}")))
}
