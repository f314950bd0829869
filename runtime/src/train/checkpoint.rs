//! Checkpoints: a Hugging Face model directory (`config.json` + `model.safetensors` in f32,
//! the tokenizer copied) that `warpforge generate` and transformers load as they are, plus
//! `optimizer.safetensors` (both moments of every tensor, f32 or FP8 codes with their group
//! metadata) and `trainer_state.json` (step,
//! tokens, and the run's settings).
//!
//! Written atomically: into `OUT/.step-N.tmp`, renamed to `OUT/step-N`, then `OUT/latest`
//! (the name of the newest checkpoint) replaced by a rename. A run killed at any point
//! leaves the previous checkpoint whole and `latest` naming a complete one.

use super::params::{hf_names, Param, Params, Role};
use super::{TrainError, TrainFloat};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde_json::Value;
use std::path::{Path, PathBuf};
use warpforge_dsl::Device;
use warpforge_kernels::fp8::coat::host::Fp8Moments;
use warpforge_kernels::fp8::coat::reference::DreTensor;

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn bad(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("{}: {message}", path.display()))
}

/// The optimizer-state key of a tensor (the fused gate/up has one).
fn state_key(role: Role) -> String {
    hf_names(role).join("+")
}

/// Little-endian bytes of f32s.
fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// f32s of little-endian bytes.
fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A tensor to write: name, dtype, shape, little-endian bytes.
type Owned = (String, Dtype, Vec<usize>, Vec<u8>);

fn write_safetensors(path: &Path, tensors: &[Owned]) -> Result<(), TrainError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| bad(path, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| bad(path, e))
}

/// A tensor's two moments: f32 `m.KEY`/`v.KEY`, or FP8 codes `m.KEY.codes` (u8) with their
/// per-group `(scale, k, c)` in `m.KEY.meta` (f32).
/// `flat` holds the downloaded f32 moments `(m, v)` of every tensor.
fn moment_tensors(
    device: &Device,
    p: &Param,
    flat: &(Vec<f32>, Vec<f32>),
) -> Result<Vec<Owned>, TrainError> {
    let key = state_key(p.role);
    let Some(fp8) = &p.fp8 else {
        let (m, v) = (&flat.0[p.range()], &flat.1[p.range()]);
        return Ok(vec![
            (format!("m.{key}"), Dtype::F32, p.shape.clone(), bytes(m)),
            (format!("v.{key}"), Dtype::F32, p.shape.clone(), bytes(v)),
        ]);
    };
    let (m, v) = fp8.download(device)?;
    let mut out = vec![];
    for (which, t) in [("m", m), ("v", v)] {
        let meta_len = t.meta.len();
        out.push((
            format!("{which}.{key}.codes"),
            Dtype::U8,
            vec![t.codes.len()],
            t.codes,
        ));
        out.push((
            format!("{which}.{key}.meta"),
            Dtype::F32,
            vec![meta_len],
            bytes(&t.meta),
        ));
    }
    Ok(out)
}

/// Writes step `step`'s checkpoint under `out` and points `out/latest` at it; returns its
/// directory.
pub fn save<T: TrainFloat>(
    device: &Device,
    out: &Path,
    params: &Params<T>,
    (config_json, tokenizer): (&Value, Option<&Path>),
    state: &Value,
    step: u64,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let name = format!("step-{step}");
    let tmp = out.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let (mut weights, mut moments) = (vec![], vec![]);
    let flat_w = device.download(&params.state.w)?;
    let flat_moments = match params.tensors.iter().any(|p| p.fp8.is_some()) {
        true => (vec![], vec![]),
        false => (
            device.download(&params.state.m)?,
            device.download(&params.state.v)?,
        ),
    };
    for p in &params.tensors {
        let w = &flat_w[p.range()];
        let names = hf_names(p.role);
        // The fused gate/up splits into its halves, gate rows first.
        let part = w.len() / names.len();
        let rows = p.shape[0] / names.len();
        for (i, n) in names.iter().enumerate() {
            let shape = [vec![rows], p.shape[1..].to_vec()].concat();
            let data = bytes(&w[i * part..(i + 1) * part]);
            weights.push((n.clone(), Dtype::F32, shape, data));
        }
        moments.extend(moment_tensors(device, p, &flat_moments)?);
    }
    write_safetensors(&tmp.join("model.safetensors"), &weights)?;
    write_safetensors(&tmp.join("optimizer.safetensors"), &moments)?;
    let mut config = config_json.clone();
    config["dtype"] = Value::from("float32");
    config["torch_dtype"] = Value::from("float32");
    write_json(&tmp.join("config.json"), &config)?;
    write_json(&tmp.join("trainer_state.json"), state)?;
    if let Some(t) = tokenizer {
        let to = tmp.join("tokenizer.json");
        std::fs::copy(t, &to).map_err(io(&to))?;
    }
    let dir = out.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    let latest_tmp = out.join(".latest.tmp");
    std::fs::write(&latest_tmp, &name).map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, out.join("latest")).map_err(io(out))?;
    Ok(dir)
}

fn write_json(path: &Path, value: &Value) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| bad(path, e))?;
    std::fs::write(path, text).map_err(io(path))
}

/// The newest complete checkpoint under `out`, if any.
pub fn latest(out: &Path) -> Result<Option<PathBuf>, TrainError> {
    let pointer = out.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(io(&pointer))?;
    let dir = out.join(name.trim());
    match dir.join("trainer_state.json").exists() {
        true => Ok(Some(dir)),
        false => Err(bad(
            &pointer,
            format!("names {}, which is incomplete", dir.display()),
        )),
    }
}

/// The trainer state saved with a checkpoint.
pub fn read_state(dir: &Path) -> Result<Value, TrainError> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| bad(&path, e))
}

/// Restores both moments of every tensor of `params` from `dir/optimizer.safetensors`.
pub fn load_moments<T: TrainFloat>(
    device: &Device,
    dir: &Path,
    params: &mut Params<T>,
) -> Result<(), TrainError> {
    let path = dir.join("optimizer.safetensors");
    let data = std::fs::read(&path).map_err(io(&path))?;
    let file = SafeTensors::deserialize(&data).map_err(|e| bad(&path, e))?;
    let get = |name: &str, dtype: Dtype, len: usize| -> Result<Vec<u8>, TrainError> {
        let t = file
            .tensor(name)
            .map_err(|e| bad(&path, format!("{name}: {e}")))?;
        if t.dtype() != dtype || t.data().len() != len * dtype.bitsize() / 8 {
            return Err(bad(&path, format!("{name} is not {len} {dtype:?} values")));
        }
        Ok(t.data().to_vec())
    };
    let flat_len = params.state.w.len();
    let (mut flat_m, mut flat_v) = (vec![0f32; flat_len], vec![0f32; flat_len]);
    for p in &mut params.tensors {
        let key = state_key(p.role);
        let n: usize = p.shape.iter().product();
        if let Some(fp8) = &mut p.fp8 {
            let groups = n.div_ceil(warpforge_kernels::fp8::coat::GROUP);
            let read = |which: &str| -> Result<DreTensor, TrainError> {
                Ok(DreTensor {
                    codes: get(&format!("{which}.{key}.codes"), Dtype::U8, n)?,
                    meta: floats(&get(
                        &format!("{which}.{key}.meta"),
                        Dtype::F32,
                        3 * groups,
                    )?),
                })
            };
            let (m, v) = (read("m")?, read("v")?);
            *fp8 = Fp8Moments::upload(device, (&m, &v))?;
            continue;
        }
        for (which, flat) in [("m", &mut flat_m), ("v", &mut flat_v)] {
            let values = floats(&get(&format!("{which}.{key}"), Dtype::F32, n)?);
            flat[p.offset..p.offset + n].copy_from_slice(&values);
        }
    }
    if params.tensors.iter().all(|p| p.fp8.is_none()) {
        params.state.m = device.upload(&flat_m)?;
        params.state.v = device.upload(&flat_v)?;
    }
    Ok(())
}
