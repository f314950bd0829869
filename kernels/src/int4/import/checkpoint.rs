//! A model directory's safetensors files as a [`TensorSource`].

use super::config::read_json;
use super::{
    import_layer, ImportError, ImportedLayer, QuantizationConfig, RawTensor, TensorSource,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model directory's safetensors: `model.safetensors.index.json`'s shards, else
/// `model.safetensors`, else its only `*.safetensors` file. Files are read into memory
/// (the runtime, which mmaps, passes its own [`TensorSource`]).
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<Vec<u8>>,
    /// Tensor name → (file, dtype, shape, byte range).
    index: HashMap<String, (usize, Dtype, Vec<usize>, std::ops::Range<usize>)>,
}

impl Checkpoint {
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint, ImportError> {
        let dir = dir.as_ref().to_path_buf();
        let mut ck = Checkpoint {
            dir: dir.clone(),
            files: Vec::new(),
            index: HashMap::new(),
        };
        for path in shard_paths(&dir)? {
            let file = |message: String| ImportError::File {
                path: path.clone(),
                message,
            };
            let bytes = std::fs::read(&path).map_err(|e| file(e.to_string()))?;
            let st = SafeTensors::deserialize(&bytes)
                .map_err(|e| file(format!("not a valid safetensors file: {e}")))?;
            let base = bytes.as_ptr() as usize;
            let entries: Vec<_> = st
                .iter()
                .map(|(name, view)| {
                    let start = view.data().as_ptr() as usize - base;
                    let range = start..start + view.data().len();
                    (
                        name.to_string(),
                        (ck.files.len(), view.dtype(), view.shape().to_vec(), range),
                    )
                })
                .collect();
            ck.index.extend(entries);
            ck.files.push(bytes);
        }
        Ok(ck)
    }

    /// The directory's quantization config ([`QuantizationConfig::from_dir`]).
    pub fn quantization_config(&self) -> Result<QuantizationConfig, ImportError> {
        QuantizationConfig::from_dir(&self.dir)
    }

    /// Imports layer `prefix` with the directory's config.
    pub fn import(&self, prefix: &str) -> Result<ImportedLayer, ImportError> {
        import_layer(self, prefix, &self.quantization_config()?)
    }
}

impl TensorSource for Checkpoint {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>> {
        let (file, dtype, shape, range) = self.index.get(name)?;
        Some(RawTensor {
            dtype: *dtype,
            shape: shape.clone(),
            data: &self.files[*file][range.clone()],
        })
    }
}

fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ImportError::File {
                path: index.clone(),
                message: "expected an object \"weight_map\": {tensor: file}".into(),
            })?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImportError::File {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    match found.len() {
        1 => Ok(found),
        count => Err(ImportError::File {
            path: dir.to_path_buf(),
            message: format!("{count} *.safetensors files and no model.safetensors.index.json: expected one file or an index"),
        }),
    }
}
