//! `warpforge quantize`: a float Llama-family directory → warpforge's int4 format
//! ([`crate::model::int4`]), every decoder linear (q/k/v/o, gate/up/down) quantized with RTN
//! or GPTQ, groups along input channels (`oc`), output channels (`ic`) or chosen per layer
//! by AdaDim (`auto`); embeddings, norms and `lm_head` keep their dtype.
//!
//! Calibration (GPTQ's Hessians, AdaDim's choice, the reported errors) runs the host
//! reference forward layer by layer, as GPTQ does: the inputs of layer `l` come from layers
//! `0..l` already quantized. Calibration text is a plain text file (tokenized, cut into
//! `nsamples` windows of `seq_len` tokens spread over the file) or JSONL (`prompt`/`text`
//! strings or `prompt_ids`/`ids` lists, one sample a line); without `--calibration` the
//! model's `prompts.jsonl` is used. The errors reported per layer are relative:
//! `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²` on the calibration inputs (and `‖W − Ŵ‖² / ‖W‖²`).

use crate::model::int4::{
    dim_name, linear_shape, warpforge_tensors, DimChoice, Int4Method, OwnedTensor, WarpforgeInt4,
    DECODER_LINEARS,
};
use crate::model::{HostModel, LinearInput, ModelDir};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use warpforge_kernels::int4::adadim::{quantize_adadim, AdaDimConfig, AdaDimMethod};
use warpforge_kernels::int4::gptq::{quantize_gptq, GptqConfig, Hessian};
use warpforge_kernels::int4::quant::{output_mse, quantize_rtn, GroupSize, QuantConfig};
use warpforge_kernels::int4::{GroupDim, Int4Weight};

mod calibration;
use calibration::calibration;

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The float model directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The int4 model directory to write (refused if it exists, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Bits per weight: 4 (the only width supported).
    #[arg(long, default_value_t = 4)]
    pub bits: u32,
    /// Values per (scale, zero): a power of two ≥ 16 dividing every grouped dimension.
    #[arg(long, default_value_t = 128)]
    pub group: usize,
    /// Groups along input channels (oc), output channels (ic), or chosen per layer (auto).
    #[arg(long, value_enum, default_value_t = DimArg::Auto)]
    pub dim: DimArg,
    #[arg(long, value_enum, default_value_t = MethodArg::Gptq)]
    pub method: MethodArg,
    /// Calibration text (.txt) or JSONL (`prompt`/`text` or `prompt_ids`/`ids` per line);
    /// default: the model's prompts.jsonl.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Calibration samples (windows of a text file; lines of JSONL).
    #[arg(long, default_value_t = 32)]
    pub nsamples: usize,
    /// Tokens per calibration sample (at most the model's context).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Symmetric quantization (every zero point 8) instead of asymmetric.
    #[arg(long)]
    pub sym: bool,
    /// Replace an existing --out directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DimArg {
    Auto,
    Ic,
    Oc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Rtn,
    Gptq,
}

/// What one quantized linear came to.
#[derive(Clone, Debug)]
pub struct LayerReport {
    pub name: String,
    pub out: usize,
    pub in_: usize,
    pub dim: GroupDim,
    /// `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²` on the calibration inputs, when there are some.
    pub output_error: Option<f64>,
    /// `‖W − Ŵ‖² / ‖W‖²`.
    pub weight_error: f64,
    pub seconds: f64,
}

/// The result of [`quantize`].
#[derive(Clone, Debug)]
pub struct Summary {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub calibration_tokens: usize,
    pub layers: Vec<LayerReport>,
    pub seconds: f64,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                json!({"name": l.name, "out": l.out, "in": l.in_, "dim": dim_name(l.dim),
                       "output_error": l.output_error, "weight_error": l.weight_error,
                       "seconds": l.seconds})
            })
            .collect();
        json!({"bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
               "calibration_tokens": self.calibration_tokens, "seconds": self.seconds,
               "layers": layers})
    }
}

/// `warpforge quantize`: quantizes, prints the summary on stdout (progress on stderr).
pub fn run(args: QuantizeArgs) -> Result<ExitCode> {
    let summary = quantize(&args, &mut |line| eprintln!("{line}"))?;
    print_summary(&args, &summary);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(args: &QuantizeArgs, s: &Summary) {
    println!(
        "{:<34} {:>11} {:>4} {:>11} {:>11}",
        "linear", "out×in", "dim", "out err", "weight err"
    );
    for l in &s.layers {
        let out_err = l
            .output_error
            .map_or_else(|| "-".to_string(), |e| format!("{e:.3e}"));
        println!(
            "{:<34} {:>11} {:>4} {:>11} {:>11.3e}",
            l.name,
            format!("{}×{}", l.out, l.in_),
            dim_name(l.dim),
            out_err,
            l.weight_error
        );
    }
    let ratio = s.bytes_before as f64 / s.bytes_after.max(1) as f64;
    println!(
        "quantized {} linears in {:.2} s ({} calibration tokens): weights {} → {} bytes ({ratio:.2}× smaller); wrote {}",
        s.layers.len(),
        s.seconds,
        s.calibration_tokens,
        s.bytes_before,
        s.bytes_after,
        args.out.display()
    );
}

/// Quantizes `args.model` into `args.out` (module docs); `progress` gets a line per layer.
pub fn quantize(args: &QuantizeArgs, progress: &mut dyn FnMut(&str)) -> Result<Summary> {
    let start = Instant::now();
    check_args(args)?;
    let model = ModelDir::open(&args.model)?;
    if model.quant.is_some() {
        bail!(
            "{} is already an int4 model; quantize its float original",
            args.model.display()
        );
    }
    let config = &model.config;
    let dim = match args.dim {
        DimArg::Auto => DimChoice::Auto,
        DimArg::Ic => DimChoice::Fixed(GroupDim::Ic),
        DimArg::Oc => DimChoice::Fixed(GroupDim::Oc),
    };
    let method = match args.method {
        MethodArg::Rtn => Int4Method::Rtn,
        MethodArg::Gptq => Int4Method::Gptq,
    };
    check_group(config, args.group, dim)?;
    let needs_calibration = method == Int4Method::Gptq || dim == DimChoice::Auto;
    let samples = calibration(args, &model, needs_calibration)?;
    let calibration_tokens = samples.iter().map(Vec::len).sum();

    let mut host = HostModel::from_weights(config, &model.weights)?;
    let mut states = samples
        .iter()
        .map(|s| host.embed(s, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tensors: Vec<OwnedTensor> = Vec::new();
    let mut layers = Vec::new();
    let mut layer_dims = BTreeMap::new();
    let quantizer = Quantizer {
        group: args.group,
        sym: args.sym,
        dim,
        method,
    };
    for l in 0..config.num_hidden_layers {
        let inputs = capture_inputs(&host, l, &states);
        let mut quantized = Vec::new();
        for (input, x) in &inputs {
            // One Hessian per input, shared by the linears that read it (q/k/v, gate/up).
            let hessian = match (method, dim, x.is_empty()) {
                (Int4Method::Gptq, DimChoice::Fixed(_), false) => {
                    let mut h = Hessian::new(input_width(&host, *input));
                    h.add_batch(x)?;
                    Some(h)
                }
                _ => None,
            };
            for proj in input.linears() {
                let name = format!("model.layers.{l}.{proj}");
                let (out, in_) = linear_shape(config, proj).expect("a decoder linear");
                let t = Instant::now();
                let w = host
                    .linear_weight(l, proj)
                    .expect("a decoder linear")
                    .to_vec();
                let q = quantizer
                    .quantize(&w, out, in_, x, hessian.as_ref())
                    .with_context(|| format!("quantizing {name}"))?;
                let report = LayerReport {
                    name: name.clone(),
                    out,
                    in_,
                    dim: q.dim,
                    output_error: relative_output_error(x, &w, &q)?,
                    weight_error: relative_weight_error(&w, &q),
                    seconds: t.elapsed().as_secs_f64(),
                };
                progress(&format!(
                    "layer {}/{}: {proj:<16} [{out}×{in_}] dim {} output error {} ({:.2} s)",
                    l + 1,
                    config.num_hidden_layers,
                    dim_name(q.dim),
                    report
                        .output_error
                        .map_or_else(|| "-".to_string(), |e| format!("{e:.3e}")),
                    report.seconds
                ));
                layer_dims.insert(name.clone(), q.dim);
                tensors.extend(warpforge_tensors(&name, &q, args.sym));
                quantized.push((proj, q.dequantize_nk()));
                layers.push(report);
            }
        }
        for (proj, w) in quantized {
            host.set_linear_weight(l, proj, w);
        }
        // The next layer's inputs come from this layer quantized (GPTQ's sequential order).
        for state in &mut states {
            host.layer_forward(l, state, &mut host.new_cache(), &mut |_, _| {});
        }
    }
    let quant = WarpforgeInt4 {
        group: args.group,
        dim,
        method,
        sym: args.sym,
        layer_dims: if dim == DimChoice::Auto {
            layer_dims
        } else {
            BTreeMap::new()
        },
    };
    let mut summary = Summary {
        bytes_before: weight_file_bytes(&args.model)?,
        bytes_after: 0,
        calibration_tokens,
        layers,
        seconds: start.elapsed().as_secs_f64(),
    };
    write_model_dir(args, &model, &quant, tensors, &mut summary)?;
    Ok(summary)
}

/// The width of a linear input (the `in_features` of the linears reading it).
fn input_width(host: &HostModel, input: LinearInput) -> usize {
    let proj = input.linears()[0];
    let (_, in_) = linear_shape(host.config(), proj).expect("a decoder linear");
    in_
}

/// Layer `l`'s four linear inputs over every calibration sample, each `[tokens, in]`.
fn capture_inputs(host: &HostModel, l: usize, states: &[Vec<f32>]) -> Vec<(LinearInput, Vec<f32>)> {
    let mut inputs = vec![
        (LinearInput::Attention, Vec::new()),
        (LinearInput::AttentionOutput, Vec::new()),
        (LinearInput::Mlp, Vec::new()),
        (LinearInput::MlpOutput, Vec::new()),
    ];
    for state in states {
        let mut x = state.clone();
        host.layer_forward(l, &mut x, &mut host.new_cache(), &mut |input, values| {
            let slot = inputs
                .iter_mut()
                .find(|(i, _)| *i == input)
                .expect("all four");
            slot.1.extend_from_slice(values);
        });
    }
    inputs
}

/// The per-linear quantizer the arguments select.
struct Quantizer {
    group: usize,
    sym: bool,
    dim: DimChoice,
    method: Int4Method,
}

impl Quantizer {
    /// Quantizes `w: [out, in_]`; `x` is its calibration input (`[tokens, in_]`, may be
    /// empty for RTN with a fixed dim), `hessian` GPTQ's from `x` for a fixed dim.
    fn quantize(
        &self,
        w: &[f32],
        out: usize,
        in_: usize,
        x: &[f32],
        hessian: Option<&Hessian>,
    ) -> Result<Int4Weight> {
        let group = GroupSize::Size(self.group);
        let gptq = |dim| GptqConfig::new(QuantConfig::new(group, dim, self.sym));
        Ok(match (self.dim, self.method) {
            (DimChoice::Fixed(dim), Int4Method::Rtn) => {
                quantize_rtn(w, out, in_, &QuantConfig::new(group, dim, self.sym))?
            }
            (DimChoice::Fixed(dim), Int4Method::Gptq) => {
                let h = hessian.ok_or_else(|| anyhow!("GPTQ needs calibration inputs"))?;
                quantize_gptq(w, out, in_, h, &gptq(dim))?.0
            }
            (DimChoice::Auto, method) => {
                let method = match method {
                    Int4Method::Rtn => AdaDimMethod::Rtn,
                    // The paper's GPTQ-ada: RTN's errors choose, GPTQ runs once.
                    Int4Method::Gptq => AdaDimMethod::GptqSelectedByRtn(gptq(GroupDim::Oc)),
                };
                let cfg = AdaDimConfig {
                    group,
                    sym: self.sym,
                    method,
                };
                quantize_adadim(w, out, in_, x, &cfg)?.0
            }
        })
    }
}

/// `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²`, `None` without calibration inputs.
fn relative_output_error(x: &[f32], w: &[f32], q: &Int4Weight) -> Result<Option<f64>> {
    if x.is_empty() {
        return Ok(None);
    }
    let tokens = x.len() / q.k;
    let error = output_mse(x, tokens, w, q)?;
    // The all-zero weight's "error" is the output's own mean square.
    let zero = Int4Weight {
        codes: vec![0; q.codes.len()],
        scales: vec![0.0; q.scales.len()],
        zeros: vec![0; q.zeros.len()],
        g_idx: None,
        ..q.clone()
    };
    let signal = output_mse(x, tokens, w, &zero)?;
    Ok(Some(error / signal.max(f64::MIN_POSITIVE)))
}

/// `‖W − Ŵ‖² / ‖W‖²`.
fn relative_weight_error(w: &[f32], q: &Int4Weight) -> f64 {
    let wq = q.dequantize_nk();
    let diff: f64 = w
        .iter()
        .zip(&wq)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let norm: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
    diff / norm.max(f64::MIN_POSITIVE)
}

fn check_args(args: &QuantizeArgs) -> Result<()> {
    if args.bits != 4 {
        bail!(
            "--bits {}: only 4-bit quantization is supported (int4 weights, the int4 GEMM)",
            args.bits
        );
    }
    if args.group < 16 || !args.group.is_power_of_two() {
        bail!(
            "--group {}: the int4 GEMM needs a power of two ≥ 16 (32, 64 and 128 are usual)",
            args.group
        );
    }
    if args.nsamples == 0 || args.seq_len == 0 {
        bail!("--nsamples and --seq-len must be positive");
    }
    if args.out.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    Ok(())
}

/// Every grouped dimension must be a multiple of the group (whole groups only).
fn check_group(config: &crate::model::ModelConfig, group: usize, dim: DimChoice) -> Result<()> {
    // The first (linear, dimension, length) that `g` does not divide.
    let misfit = |g: usize| {
        DECODER_LINEARS.iter().find_map(|&proj| {
            let (out, in_) = linear_shape(config, proj).expect("a decoder linear");
            let grouped: &[(&str, usize)] = match dim {
                DimChoice::Fixed(GroupDim::Oc) => &[("in_features", in_)],
                DimChoice::Fixed(GroupDim::Ic) => &[("out_features", out)],
                DimChoice::Auto => &[("in_features", in_), ("out_features", out)],
            };
            grouped
                .iter()
                .find(|(_, len)| len % g != 0)
                .map(|&(what, len)| (proj, what, len))
        })
    };
    let Some((proj, what, len)) = misfit(group) else {
        return Ok(());
    };
    let fits: Vec<String> = [16, 32, 64, 128]
        .into_iter()
        .filter(|&g| misfit(g).is_none())
        .map(|g| g.to_string())
        .collect();
    bail!(
        "--group {group} does not divide {proj}'s {what} = {len}; groups that fit this model \
         with this --dim: {}",
        if fits.is_empty() {
            "none of 16/32/64/128".into()
        } else {
            fits.join(", ")
        }
    )
}

/// Bytes of a directory's safetensors files.
fn weight_file_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "safetensors") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Writes the int4 directory into a temporary sibling, then renames it to `args.out`;
/// sets `summary.bytes_after` (the weights written).
fn write_model_dir(
    args: &QuantizeArgs,
    model: &ModelDir,
    quant: &WarpforgeInt4,
    mut tensors: Vec<OwnedTensor>,
    summary: &mut Summary,
) -> Result<()> {
    let out = &args.out;
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("--out {} has no directory name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = (|| -> Result<()> {
        // Every tensor but the quantized linears' float weights, in its stored dtype.
        let replaced: std::collections::HashSet<String> = quant_names(summary);
        for name in model.weights.names() {
            if replaced.contains(name) {
                continue;
            }
            let (dtype, shape, bytes) = model.weights.raw(name).expect("listed by names()");
            tensors.push((name.to_string(), dtype, shape.to_vec(), bytes.to_vec()));
        }
        let views = tensors
            .iter()
            .map(|(n, d, s, b)| {
                Ok((
                    n.as_str(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        let weights_path = tmp.join("model.safetensors");
        safetensors::serialize_to_file(views, None, &weights_path)?;
        // The serializer writes through a private temporary file: give it the usual mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o644);
            std::fs::set_permissions(&weights_path, mode)?;
        }
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(model.path.join("config.json"))?)?;
        config["quantization_config"] = quant.to_json();
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        copy_small_files(&model.path, &tmp)?;
        summary.bytes_after = std::fs::metadata(&weights_path)?.len();
        std::fs::write(
            tmp.join("quantize-report.json"),
            serde_json::to_string_pretty(&summary.to_json())?,
        )?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("writing {}", out.display())));
    }
    if out.exists() {
        // --force (checked up front): replace the old directory.
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

/// The float weight tensors the int4 ones replace.
fn quant_names(summary: &Summary) -> std::collections::HashSet<String> {
    summary
        .layers
        .iter()
        .map(|l| format!("{}.weight", l.name))
        .collect()
}

/// Copies the files that describe the model's inputs and outputs (tokenizer, generation
/// config, prompts); not the float model's weights, outputs (e.g. its completions) or data.
fn copy_small_files(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = name.starts_with("tokenizer")
            || name.starts_with("chat_template")
            || name.ends_with(".model") // SentencePiece
            || [
                "special_tokens_map.json",
                "added_tokens.json",
                "vocab.json",
                "merges.txt",
                "generation_config.json",
                "prompts.jsonl",
            ]
            .contains(&name.as_str());
        if keep && entry.file_type()?.is_file() {
            std::fs::copy(&path, to.join(&name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}
