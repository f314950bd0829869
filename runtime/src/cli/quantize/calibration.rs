//! Calibration samples for `warpforge quantize` (the parent module's docs: formats).

use super::QuantizeArgs;
use crate::model::{ModelDir, Tokenizer};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// The calibration samples (module docs); empty when none is given or found and none is
/// needed.
pub(super) fn calibration(
    args: &QuantizeArgs,
    model: &ModelDir,
    needed: bool,
) -> Result<Vec<Vec<u32>>> {
    let seq_len = args.seq_len.min(model.config.max_position_embeddings);
    let default = model.path.join("prompts.jsonl");
    let path = match &args.calibration {
        Some(path) => path.clone(),
        None if default.exists() => default,
        None if needed => bail!(
            "--method gptq and --dim auto need calibration text: pass --calibration FILE \
             (text, or JSONL with prompt/prompt_ids per line); {} has no prompts.jsonl",
            model.path.display()
        ),
        None => return Ok(Vec::new()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading calibration {}", path.display()))?;
    let tok = model.tokenizer.as_ref();
    let samples = if path.extension().is_some_and(|e| e == "jsonl") {
        jsonl_samples(&text, &path, tok, args.nsamples, seq_len)?
    } else {
        let tok = tok.ok_or_else(|| {
            anyhow!(
                "calibration text needs the model's tokenizer.json (or give token ids as JSONL)"
            )
        })?;
        let bos = model.config.bos_token_ids.first().copied();
        text_samples(&text, tok, bos, args.nsamples, seq_len)?
    };
    let vocab = model.config.vocab_size;
    for (i, s) in samples.iter().enumerate() {
        if let Some(id) = s.iter().find(|&&id| id as usize >= vocab) {
            bail!("calibration sample {i}: token id {id} is outside the vocabulary ({vocab})");
        }
    }
    if samples.is_empty() {
        bail!("{}: no calibration samples", path.display());
    }
    Ok(samples)
}

/// One sample a line, truncated to `seq_len`.
fn jsonl_samples(
    text: &str,
    path: &Path,
    tok: Option<&Tokenizer>,
    nsamples: usize,
    seq_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut samples = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let ids = if let Some(ids) = v.get("prompt_ids").or_else(|| v.get("ids")) {
            ids.as_array()
                .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect())
                .ok_or_else(|| anyhow!("{}: token ids must be a list of integers", at()))?
        } else if let Some(text) = v
            .get("prompt")
            .or_else(|| v.get("text"))
            .and_then(Value::as_str)
        {
            let tok = tok.ok_or_else(|| {
                anyhow!("{}: a text prompt needs the model's tokenizer.json", at())
            })?;
            tok.encode(text, true)?
        } else {
            bail!(
                "{}: expected \"prompt\"/\"text\" (a string) or \"prompt_ids\"/\"ids\" (integers)",
                at()
            );
        };
        if !ids.is_empty() {
            samples.push(ids.into_iter().take(seq_len).collect());
        }
        if samples.len() == nsamples {
            break;
        }
    }
    Ok(samples)
}

/// `nsamples` windows of `seq_len` tokens (BOS first when the model has one), spread evenly
/// over the tokenized text.
fn text_samples(
    text: &str,
    tok: &Tokenizer,
    bos: Option<u32>,
    nsamples: usize,
    seq_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let ids = tok.encode(text, false)?;
    let body = match bos {
        Some(_) if seq_len > 1 => seq_len - 1,
        _ => seq_len,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let windows = ids.len().saturating_sub(body) + 1;
    let count = nsamples.min(windows);
    Ok((0..count)
        .map(|s| {
            let at = if count > 1 {
                s * (windows - 1) / (count - 1)
            } else {
                0
            };
            bos.into_iter()
                .chain(ids[at..(at + body).min(ids.len())].iter().copied())
                .collect()
        })
        .collect())
}
