//! `warpforge generate`: a model directory and a JSONL file of prompts in, completions out.
//!
//! The flow: open the model (config, memory-mapped weights, tokenizer) → read and validate
//! every request ([`super::generate_io`]) → put the model on the device with a paged KV
//! cache sized by `--kv-memory` → run the engine (scheduler → plan → runner → sampling)
//! until every request finishes → write the completions in input order (and the prompt
//! logits with `--dump-logits`) → print the summary.

use super::generate_io::{
    read_input, Finish, InputOptions, LogitsWriter, OutputRecord, OutputWriter, Progress, Summary,
};
use super::{open_device, BackendChoice};
use crate::engine::runner::{CacheSize, Precision, Runner};
use crate::engine::sampling::SamplingParams;
use crate::engine::{Engine, EngineConfig, FinishReason, Request, StepReport};
use crate::model::ModelDir;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A Hugging Face model directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL requests: {"id", "prompt": "text"} or {"id", "prompt_ids": [..]}, with optional
    /// max_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop_token_ids.
    #[arg(long)]
    pub input: PathBuf,
    /// Where the completions go, one JSON line per request in input order (`-`: stdout).
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Default for requests that do not set it.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Default sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Default top-k (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Default top-p.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Default repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Base seed: a request without a seed gets this plus its position in the file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not stop at the model's end-of-sequence tokens (requests' own stop ids still apply).
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Activation, weight and KV-cache type (default: the model's f16/bf16, bf16 for f32).
    #[arg(long, value_enum)]
    pub dtype: Option<Precision>,
    /// Also write the logits of every prompt position: {"id", "logits": [[f32; vocab]; len]}.
    #[arg(long)]
    pub dump_logits: Option<PathBuf>,
    /// Tokens per KV-cache page.
    #[arg(long, default_value_t = 16)]
    pub page_size: usize,
    /// KV-cache memory in MiB (default: what every request needs at once, at most 2048).
    #[arg(long, conflicts_with = "kv_pages")]
    pub kv_memory: Option<usize>,
    /// KV-cache pages, instead of --kv-memory.
    #[arg(long)]
    pub kv_pages: Option<usize>,
    /// The most tokens computed per step (decodes plus prefill chunks).
    #[arg(long, default_value_t = 512)]
    pub token_budget: usize,
    /// Compute each prompt prefix shared by several requests separately for each of them.
    #[arg(long)]
    pub no_prefix_sharing: bool,
    /// Prefill whole prompts instead of chunks that fill each step's budget.
    #[arg(long)]
    pub no_chunked_prefill: bool,
    /// Write an error record for each invalid request line and generate the others
    /// (default: report every invalid line and generate nothing).
    #[arg(long)]
    pub skip_invalid: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json_summary: bool,
    /// Also print each prompt and its completion as text on stderr (needs a tokenizer).
    #[arg(long)]
    pub show: bool,
}

pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let mut dir = ModelDir::open(&args.model)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    // The I/O callbacks are 'static: they own the tokenizer through an Arc.
    let tokenizer = dir.tokenizer.take().map(std::sync::Arc::new);
    let config = &dir.config;
    let tok = tokenizer.clone();
    let tokenize = move |text: &str| -> Result<Vec<u32>, String> {
        match &tok {
            Some(t) => t.encode(text, true).map_err(|e| e.to_string()),
            None => Err("the model has no tokenizer.json: give prompt_ids".into()),
        }
    };
    let mut defaults = SamplingParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        stop_token_ids: Vec::new(),
    };
    if !args.ignore_eos {
        defaults.stop_token_ids = config.eos_token_ids.clone();
    }
    let options = InputOptions {
        defaults,
        tokenize: Some(&tokenize),
        vocab: config.vocab_size,
        max_context: config.max_position_embeddings,
    };
    let parsed = read_input(&args.input, &options)?;
    let (requests, invalid, total) = if args.skip_invalid {
        (parsed.requests, parsed.invalid, parsed.total)
    } else {
        let total = parsed.total;
        (
            parsed.into_valid(&args.input.display().to_string())?,
            Vec::new(),
            total,
        )
    };
    let tok = tokenizer.clone();
    let detokenize = move |ids: &[u32]| -> Result<String, String> {
        let t = tok.as_ref().ok_or("no tokenizer")?;
        t.decode(ids, true).map_err(|e| e.to_string())
    };
    let mut out = OutputWriter::create(
        &args.output,
        total,
        tokenizer.is_some().then_some(&detokenize as _),
    )?;
    for e in &invalid {
        out.put(e.index, OutputRecord::from_line_error(e))?;
    }
    let engine_requests: Vec<Request> = requests
        .iter()
        .map(|r| Request {
            prompt: r.prompt.clone(),
            params: r.params.clone(),
        })
        .collect();
    let device = open_device(args.backend)?;
    let precision = args.dtype.unwrap_or_else(|| Precision::of_model(&dir));
    let longest = engine_requests
        .iter()
        .map(|r| r.prompt.len() + r.params.max_tokens)
        .max()
        .unwrap_or(1);
    let pages = kv_pages(&args, &engine_requests, &dir)?;
    let size = CacheSize {
        pages,
        page_size: args.page_size,
        max_positions: longest,
    };
    let runner =
        Runner::load(device, &dir, precision, size).context("putting the model on the device")?;
    let kv_page_bytes = (runner.kv_bytes_per_token() * args.page_size) as u64;
    let device_name = runner.device().name();
    let params: usize = crate::model::expected_tensors(config)
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    eprintln!(
        "{} ({} layers, {:.2}M parameters) on {device_name} in {}; {} requests; KV cache {} pages of {} tokens ({})",
        args.model.display(),
        config.num_hidden_layers,
        params as f64 / 1e6,
        precision.name(),
        engine_requests.len(),
        pages,
        args.page_size,
        super::generate_io::human_bytes(kv_page_bytes * pages as u64),
    );
    match runner.int4_layers() {
        (0, 0) => {}
        (on, 0) => eprintln!("int4: {on} linears on the int4 GEMM"),
        (on, dense) => eprintln!(
            "int4: {on} linears on the int4 GEMM; {dense} dequantized at load (a padded head \
             layout, a bias, or gate/up that cannot be fused)"
        ),
    }
    let engine_config = EngineConfig {
        kv_pages: pages,
        token_budget: args.token_budget,
        max_seqs_hint: 0,
        share_prefixes: !args.no_prefix_sharing,
        chunk_prefill: !args.no_chunked_prefill,
        dump_logits: args.dump_logits.is_some(),
    };
    let mut engine = Engine::new(runner, engine_config, engine_requests)?;
    let mut progress = Progress::new(requests.len(), args.quiet);
    let (mut prefill_seconds, mut decode_seconds, mut generated) = (0.0, 0.0, 0);
    let mut last = Instant::now();
    let completions = engine.run_to_completion(|report: &StepReport| {
        let seconds = last.elapsed().as_secs_f64();
        last = Instant::now();
        match report.prefill_tokens > 0 {
            true => prefill_seconds += seconds,
            false => decode_seconds += seconds,
        }
        generated += report.sampled;
        progress.update(report.done, generated);
    })?;
    progress.finish();
    if let Some(path) = &args.dump_logits {
        let mut logits = LogitsWriter::create(path)?;
        for (i, r) in requests.iter().enumerate() {
            logits.write(&r.id, engine.prompt_logits(i), config.vocab_size)?;
        }
        logits.finish()?;
    }
    for (r, c) in requests.iter().zip(&completions) {
        let finish = match c.finish {
            FinishReason::Stop => Finish::Stop,
            FinishReason::Length => Finish::Length,
        };
        let record = OutputRecord::Completion {
            id: r.id.clone(),
            token_ids: c.tokens.clone(),
            finish,
        };
        out.put(r.index, record)?;
    }
    out.finish()?;
    if let (true, Some(t)) = (args.show, &tokenizer) {
        use std::io::IsTerminal;
        let (bold, plain) = match std::io::stderr().is_terminal() {
            true => ("\x1b[1m", "\x1b[0m"),
            false => ("", ""),
        };
        for (r, c) in requests.iter().zip(&completions) {
            let prompt = t.decode(&r.prompt, true).unwrap_or_default();
            let text = t.decode(&c.tokens, true).unwrap_or_default();
            let id =
                r.id.as_str()
                    .map_or_else(|| r.id.to_string(), str::to_string);
            eprintln!("[{id}] {prompt}{bold}{text}{plain}\n");
        }
    }
    let stats = engine.stats();
    let summary = Summary {
        requests: requests.len(),
        invalid_requests: invalid.len(),
        prompt_tokens: requests.iter().map(|r| r.prompt.len()).sum(),
        generated_tokens: completions.iter().map(|c| c.tokens.len()).sum(),
        prefill_seconds,
        decode_seconds,
        padding_tokens: stats.padding_tokens,
        kv_bytes_saved: stats.tokens_saved as u64 * kv_page_bytes / args.page_size as u64,
        peak_kv_bytes: stats.peak_pages as u64 * kv_page_bytes,
        preemptions: stats.preemptions,
    };
    if args.json_summary {
        eprintln!("{}", summary.to_json());
    } else {
        eprintln!("{summary}");
        eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

/// KV pages: `--kv-pages`, `--kv-memory` MiB, or what every request needs at once (at
/// most 2 GiB).
fn kv_pages(args: &GenerateArgs, requests: &[Request], dir: &ModelDir) -> Result<usize> {
    if args.page_size == 0 {
        bail!("--page-size must be at least 1");
    }
    let head = crate::engine::weights::check_config(&dir.config)?;
    let c = &dir.config;
    // K and V, every layer, 2-byte elements (f16 and bf16 alike).
    let bytes_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * head.padded * 2;
    let page_bytes = bytes_per_token * args.page_size;
    if let Some(pages) = args.kv_pages {
        if pages == 0 {
            bail!("--kv-pages must be at least 1");
        }
        return Ok(pages);
    }
    let budget = match args.kv_memory {
        Some(mib) => mib << 20,
        None => {
            let needed: usize = requests
                .iter()
                .map(|r| (r.prompt.len() + r.params.max_tokens).div_ceil(args.page_size))
                .sum();
            (needed.max(1) * page_bytes).min(2048 << 20)
        }
    };
    let pages = budget / page_bytes;
    if pages == 0 {
        bail!(
            "--kv-memory {} MiB holds no page of {} tokens ({} bytes)",
            budget >> 20,
            args.page_size,
            page_bytes
        );
    }
    Ok(pages)
}
