//! `warpforge train`: a Llama-family model trained on a corpus with the kernels of
//! [`crate::train`], checkpointed atomically and resumable bit for bit.
//!
//! Settings come from the flags, then `--config FILE` (a JSON object whose keys are the
//! flags' long names, `-` or `_`), then the defaults: a flag given on the command line wins
//! over the file.

use super::{open_device, BackendChoice};
use crate::model::{ModelConfig, ModelWeights, Tokenizer};
use crate::train::checkpoint;
use crate::train::data::{Corpus, Packed, Specials};
use crate::train::optimizer::{OptimizerConfig, OptimizerKind};
use crate::train::params::Params;
use crate::train::schedule::Schedule;
use crate::train::trainer::{BatchShape, StepStats, Trainer};
use crate::train::TrainFloat;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use warpforge_dsl::backend::Backend;
use warpforge_dsl::interp::InterpOptions;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::Device;

#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// A JSON file of settings (keys: the long flag names); flags given here win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model directory: config.json, and tokenizer.json for a text corpus; its
    /// model.safetensors is the starting point unless --from-scratch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The corpus: text (documents separated by blank lines, or one per line) or a `.bin`
    /// of little-endian u32 token ids (documents end at EOS).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where checkpoints (OUT/step-N, OUT/latest) and the step log (OUT/train-log.jsonl) go.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute precision: bf16 (default), f16, or fp8 — COAT's FP8 precision flow on bf16
    /// compute (linear layers' inputs saved and multiplied in per-tensor E4M3, non-linear
    /// layers' inputs saved in E4M3 per 1×16 group, gradients rounded through E5M2). f32
    /// master weights in every mode.
    #[arg(long)]
    pub precision: Option<String>,
    /// lamb or adamw (default adamw).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// The optimizer's moments: f32 (default) or fp8 (E4M3 with COAT's dynamic range
    /// expansion per 128-element group; AdamW's update fused, LAMB's on one tensor
    /// expanded to f32 at a time).
    #[arg(long)]
    pub optimizer_states: Option<String>,
    /// power, wsd or cosine (default cosine).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Peak learning rate (default 1e-3; the Power schedule keeps its own cap).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Tokens per optimizer step (default 2048), a multiple of --seq-len.
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Tokens per forward/backward pass (default: --batch-tokens); the gradients of
    /// batch-tokens / micro-batch-tokens passes add up before each update.
    #[arg(long)]
    pub micro_batch_tokens: Option<usize>,
    /// Tokens per packed row (default min(128, max_position_embeddings)).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Optimizer steps (default 100).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of the initialisation and the data order (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A checkpoint every N steps and at the last (default 50; 0: no checkpoints).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// WTA-CRS: estimate the decoder's weight gradients from this share of the batch's rows
    /// (e.g. 0.3), saving only those rows of the linear layers' inputs (default 0: off, every
    /// row; the forward and the input gradients stay exact).
    #[arg(long)]
    pub wta_crs: Option<f64>,
    /// Clip the gradients to this global L2 norm (default 1; 0: no clipping).
    #[arg(long)]
    pub clip: Option<f32>,
    /// Hold back every K-th document for evaluation (default 20; 0: none).
    #[arg(long)]
    pub held_back: Option<usize>,
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Random initialisation (Hugging Face's, N(0, 0.02²)) even when the model directory has
    /// weights.
    #[arg(long)]
    pub from_scratch: bool,
    /// Continue from OUT/latest (its settings must match this run's).
    #[arg(long)]
    pub resume: bool,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// The resolved settings of a run (saved with each checkpoint).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub precision: String,
    pub optimizer: String,
    pub optimizer_states: String,
    pub schedule: String,
    pub lr: f64,
    pub batch_tokens: usize,
    pub micro_batch_tokens: usize,
    pub seq_len: usize,
    pub steps: u64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub held_back: usize,
    pub clip: f32,
    /// WTA-CRS's share of rows (0: off).
    #[serde(default)]
    pub wta_crs: f64,
    pub from_scratch: bool,
}

impl Settings {
    /// The settings that must match for a resumed run to continue the same one.
    fn identity(&self) -> Value {
        json!({
            "precision": self.precision, "optimizer": self.optimizer,
            "optimizer_states": self.optimizer_states,
            "schedule": self.schedule, "lr": self.lr, "batch_tokens": self.batch_tokens,
            "micro_batch_tokens": self.micro_batch_tokens, "seq_len": self.seq_len,
            "steps": self.steps, "seed": self.seed, "held_back": self.held_back,
            "clip": self.clip, "wta_crs": self.wta_crs,
        })
    }

    fn shape(&self) -> BatchShape {
        BatchShape {
            seq_len: self.seq_len,
            rows: self.micro_batch_tokens / self.seq_len,
            accumulate: self.batch_tokens / self.micro_batch_tokens,
        }
    }
}

/// A value of the config file under `key` (`-` or `_` spelling).
fn from_file<T: serde::de::DeserializeOwned>(file: &Value, key: &str) -> Result<Option<T>> {
    let value = file.get(key).or_else(|| file.get(key.replace('_', "-")));
    match value {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .with_context(|| format!("--config: `{key}` has the wrong type ({v})")),
    }
}

/// Flags, then the config file, then the defaults.
pub fn resolve(
    args: &TrainArgs,
    model_config: impl Fn(&Path) -> Result<ModelConfig>,
) -> Result<(Settings, BackendChoice)> {
    let file: Value = match &args.config {
        None => json!({}),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
    };
    if let Some(keys) = file.as_object() {
        let known = [
            "model",
            "data",
            "out",
            "precision",
            "optimizer",
            "optimizer_states",
            "schedule",
            "lr",
            "batch_tokens",
            "micro_batch_tokens",
            "seq_len",
            "steps",
            "seed",
            "checkpoint_every",
            "held_back",
            "clip",
            "wta_crs",
            "backend",
            "from_scratch",
        ];
        if let Some(k) = keys
            .keys()
            .find(|k| !known.contains(&k.replace('-', "_").as_str()))
        {
            bail!(
                "--config: unknown setting `{k}` (known: {})",
                known.join(", ")
            );
        }
    }
    macro_rules! pick {
        ($field:ident) => {
            match args.$field.clone() {
                Some(v) => Some(v),
                None => from_file(&file, stringify!($field))?,
            }
        };
    }
    let required = |v: Option<PathBuf>, flag: &str| {
        v.with_context(|| format!("--{flag} is required (or `{flag}` in --config)"))
    };
    let model: PathBuf = required(pick!(model), "model")?;
    let data = required(pick!(data), "data")?;
    let out = required(pick!(out), "out")?;
    let config = model_config(&model)?;
    let seq_len = pick!(seq_len).unwrap_or(config.max_position_embeddings.min(128));
    let batch_tokens = pick!(batch_tokens).unwrap_or(2048.max(seq_len));
    let micro_batch_tokens = pick!(micro_batch_tokens).unwrap_or(batch_tokens);
    if seq_len == 0 || seq_len > config.max_position_embeddings {
        bail!(
            "--seq-len {seq_len} must be between 1 and the model's max_position_embeddings ({})",
            config.max_position_embeddings
        );
    }
    if micro_batch_tokens == 0 || micro_batch_tokens % seq_len != 0 {
        bail!("--micro-batch-tokens {micro_batch_tokens} must be a positive multiple of --seq-len {seq_len}");
    }
    if batch_tokens % micro_batch_tokens != 0 {
        bail!("--batch-tokens {batch_tokens} must be a multiple of --micro-batch-tokens {micro_batch_tokens}");
    }
    let backend = match args.backend {
        Some(b) => b,
        None => match from_file::<String>(&file, "backend")? {
            None => BackendChoice::Auto,
            Some(name) => <BackendChoice as clap::ValueEnum>::from_str(&name, true)
                .map_err(|e| anyhow::anyhow!("--config: backend: {e}"))?,
        },
    };
    let settings = Settings {
        model,
        data,
        out,
        precision: pick!(precision).unwrap_or_else(|| "bf16".into()),
        optimizer: pick!(optimizer).unwrap_or_else(|| "adamw".into()),
        optimizer_states: pick!(optimizer_states).unwrap_or_else(|| "f32".into()),
        schedule: pick!(schedule).unwrap_or_else(|| "cosine".into()),
        lr: pick!(lr).unwrap_or(1e-3),
        batch_tokens,
        micro_batch_tokens,
        seq_len,
        steps: pick!(steps).unwrap_or(100),
        seed: pick!(seed).unwrap_or(0),
        checkpoint_every: pick!(checkpoint_every).unwrap_or(50),
        held_back: pick!(held_back).unwrap_or(20),
        clip: pick!(clip).unwrap_or(1.0),
        wta_crs: pick!(wta_crs).unwrap_or(0.0),
        from_scratch: args.from_scratch || from_file(&file, "from_scratch")?.unwrap_or(false),
    };
    Ok((settings, backend))
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let (settings, backend) = resolve(&args, |dir| {
        ModelConfig::load(dir).with_context(|| format!("reading {}/config.json", dir.display()))
    })?;
    match settings.precision.as_str() {
        "bf16" | "fp8" => train::<bf16>(settings, backend, &args),
        "f16" => train::<f16>(settings, backend, &args),
        other => bail!("--precision {other}: bf16, f16 or fp8"),
    }
}

fn train<T: TrainFloat>(
    settings: Settings,
    backend: BackendChoice,
    args: &TrainArgs,
) -> Result<ExitCode> {
    let started = Instant::now();
    let config_path = settings.model.join("config.json");
    let config_json: Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )?;
    let config = ModelConfig::from_json(&config_json)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let tokenizer_path = settings.model.join("tokenizer.json");
    let tokenizer_path = tokenizer_path.exists().then_some(tokenizer_path);
    let tokenizer = match &tokenizer_path {
        Some(p) => Some(Tokenizer::from_file(p)?),
        None => None,
    };
    let specials = Specials {
        bos: config.bos_token_ids.first().copied(),
        eos: config.eos_token_ids.first().copied(),
    };
    let corpus = Corpus::load(&settings.data, tokenizer.as_ref(), specials)?;
    corpus.check_vocab(config.vocab_size)?;
    let naive_padding = corpus.naive_padding(settings.seq_len);
    let (train_docs, held_docs) = corpus.split_held_back(settings.held_back);
    let data = Packed::new(&train_docs, settings.seq_len, settings.seed)?;
    let held = match held_docs.docs.is_empty() {
        true => None,
        false => Packed::new(&held_docs, settings.seq_len, settings.seed).ok(),
    };
    // The interpreter without race detection: the kernels' races are checked by the test
    // suite, and a training run executes them millions of times.
    let device = match open_device(backend)? {
        d if d.backend() == Backend::Cpu => Device::cpu_with(InterpOptions::fast()),
        d => d,
    };
    let resumed = match args.resume {
        true => checkpoint::latest(&settings.out)?,
        false => None,
    };
    if args.resume && resumed.is_none() {
        eprintln!(
            "note: --resume: no checkpoint in {} yet; starting from step 0",
            settings.out.display()
        );
    }
    let kind = OptimizerKind::parse(&settings.optimizer).map_err(anyhow::Error::msg)?;
    let fp8_moments = match settings.optimizer_states.as_str() {
        "f32" => false,
        "fp8" => true,
        other => bail!("--optimizer-states {other}: f32 or fp8"),
    };
    let params = match &resumed {
        Some(dir) => load_params::<T>(&device, &config, dir, fp8_moments)?,
        None => initial_params::<T>(&device, &config, &settings, fp8_moments)?,
    };
    let schedule = Schedule::named(
        &settings.schedule,
        settings.lr,
        settings.steps,
        settings.batch_tokens as u64,
    )?;
    let optim = OptimizerConfig {
        fp8_moments,
        ..OptimizerConfig::defaults(kind)
    };
    let mut trainer = Trainer::new(
        &device,
        &config,
        params,
        (optim, schedule),
        data,
        settings.shape(),
    )?
    .with_fp8(settings.precision == "fp8")?
    .with_wta_crs((settings.wta_crs > 0.0).then_some((settings.wta_crs, settings.seed)))?;
    trainer.clip = (settings.clip > 0.0).then_some(settings.clip);
    let log_path = settings.out.join("train-log.jsonl");
    std::fs::create_dir_all(&settings.out)?;
    if let Some(dir) = &resumed {
        resume_state(&mut trainer, dir, &settings, &log_path)?;
    } else {
        std::fs::write(&log_path, "")
            .with_context(|| format!("creating {}", log_path.display()))?;
    }
    eprintln!(
        "train: {} parameters, {} rows of {} tokens ({} held-back documents), {} tokens per step \
         in {} pass(es), {} in {} on {}; packed padding 0% (naive batching: {:.1}%)",
        trainer.params.count(),
        trainer.data.rows(),
        settings.seq_len,
        held_docs.docs.len(),
        settings.batch_tokens,
        settings.shape().accumulate,
        settings.optimizer,
        settings.precision,
        device.name(),
        100.0 * naive_padding,
    );
    let mut log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
    let mut progress =
        StepProgress::new(settings.steps, (trainer.step, trainer.tokens), args.quiet);
    let mut last = None;
    while trainer.step < settings.steps {
        let stats = trainer.step()?;
        let record = json!({
            "step": stats.step, "loss": stats.loss, "lr": stats.lr, "tokens": stats.tokens,
            "grad_norm": stats.grad_norm,
            "seconds": started.elapsed().as_secs_f64(),
        });
        writeln!(log, "{record}")?;
        progress.update(&stats);
        let every = settings.checkpoint_every;
        if every > 0 && (stats.step % every == 0 || stats.step == settings.steps) {
            save(
                &trainer,
                &settings,
                (&config_json, tokenizer_path.as_deref()),
            )?;
        }
        last = Some(stats);
    }
    progress.finish();
    let held_loss = match &held {
        Some(h) => Some(trainer.eval(h)?),
        None => None,
    };
    let rate = progress.rate();
    print_summary(
        &trainer,
        last,
        held_loss,
        (started.elapsed().as_secs_f64(), rate),
    );
    Ok(ExitCode::SUCCESS)
}

fn initial_params<T: TrainFloat>(
    device: &Device,
    config: &ModelConfig,
    settings: &Settings,
    fp8_moments: bool,
) -> Result<Params<T>> {
    let has_weights = settings.model.join("model.safetensors").exists()
        || settings.model.join("model.safetensors.index.json").exists();
    if settings.from_scratch || !has_weights {
        return Ok(Params::init(device, config, settings.seed, fp8_moments)?);
    }
    let weights = ModelWeights::open(&settings.model)?;
    Ok(Params::load(device, config, &weights, fp8_moments)?)
}

fn load_params<T: TrainFloat>(
    device: &Device,
    config: &ModelConfig,
    dir: &Path,
    fp8_moments: bool,
) -> Result<Params<T>> {
    let weights = ModelWeights::open(dir)?;
    let mut params = Params::load(device, config, &weights, fp8_moments)?;
    checkpoint::load_moments(device, dir, &mut params)?;
    Ok(params)
}

/// Restores the step count from a checkpoint, checks its settings against this run's, and
/// cuts the log back to its step.
fn resume_state<T: TrainFloat>(
    trainer: &mut Trainer<'_, T>,
    dir: &Path,
    settings: &Settings,
    log_path: &Path,
) -> Result<()> {
    let state = checkpoint::read_state(dir)?;
    let saved = &state["settings"];
    let identity = settings.identity();
    for (key, want) in identity.as_object().expect("an object") {
        if &saved[key] != want {
            bail!(
                "--resume: {} was trained with {key} = {}, this run has {want}",
                dir.display(),
                saved[key]
            );
        }
    }
    trainer.step = state["step"]
        .as_u64()
        .context("trainer_state.json: no step")?;
    trainer.tokens = state["tokens"]
        .as_u64()
        .context("trainer_state.json: no tokens")?;
    let kept: Vec<String> = std::fs::read_to_string(log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= trainer.step)
        })
        .map(str::to_string)
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(log_path, text)?;
    eprintln!("resuming from {} (step {})", dir.display(), trainer.step);
    Ok(())
}

fn save<T: TrainFloat>(
    trainer: &Trainer<'_, T>,
    settings: &Settings,
    files: (&Value, Option<&Path>),
) -> Result<()> {
    let state = json!({
        "step": trainer.step,
        "tokens": trainer.tokens,
        "settings": settings.identity(),
        "run": settings,
    });
    let dir = checkpoint::save(
        trainer.model.device,
        &settings.out,
        &trainer.params,
        files,
        &state,
        trainer.step,
    )?;
    tracing::info!("checkpoint {}", dir.display());
    Ok(())
}

fn print_summary<T: TrainFloat>(
    trainer: &Trainer<'_, T>,
    last: Option<StepStats>,
    held_loss: Option<f64>,
    (seconds, rate): (f64, Option<f64>),
) {
    let m = trainer.memory();
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!("steps        {}", trainer.step);
    println!("tokens       {}", trainer.tokens);
    if let Some(s) = last {
        println!("last loss    {:.4} (lr {:.3e})", s.loss, s.lr);
    }
    if let Some(l) = held_loss {
        println!("held-back    {l:.4}");
    }
    println!("seconds      {seconds:.1}");
    if let Some(rate) = rate {
        println!("throughput   {rate:.0} tokens/s (this run's steps)");
    }
    println!(
        "memory       master weights {:.2} MiB, compute weights {:.2} MiB, gradients {:.2} MiB, \
         optimizer states {:.2} MiB, saved activations {:.2} MiB (total {:.2} MiB)",
        mib(m.master_weights),
        mib(m.compute_weights),
        mib(m.gradients),
        mib(m.optimizer_states),
        mib(m.saved_activations),
        mib(m.total())
    );
}

/// Progress on stderr: a bar with loss, tokens/s and rate on a terminal; a line every ten
/// steps otherwise; nothing when quiet.
struct StepProgress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
    start_tokens: u64,
    last_tokens: u64,
    /// Seconds from the start to the last step's end.
    last_at: f64,
}

impl StepProgress {
    /// `done`: the steps and tokens already behind a resumed run.
    fn new(steps: u64, (done, start_tokens): (u64, u64), quiet: bool) -> StepProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(steps);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.set_position(done);
            bar
        });
        StepProgress {
            bar,
            plain: !quiet && !terminal,
            started: Instant::now(),
            start_tokens,
            last_tokens: start_tokens,
            last_at: 0.0,
        }
    }

    fn update(&mut self, s: &StepStats) {
        self.last_tokens = s.tokens;
        self.last_at = self.started.elapsed().as_secs_f64();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = (s.tokens - self.start_tokens) as f64 / secs;
        let msg = format!("loss {:.4}  {rate:.0} tok/s  lr {:.2e}", s.loss, s.lr);
        if let Some(bar) = &self.bar {
            bar.set_position(s.step);
            bar.set_message(msg);
        } else if self.plain && (s.step.is_multiple_of(10) || s.step == 1) {
            eprintln!("step {}: {msg}", s.step);
        }
    }

    /// Tokens per second over the steps this process ran.
    fn rate(&self) -> Option<f64> {
        let secs = self.last_at;
        (self.last_tokens > self.start_tokens && secs > 0.0)
            .then(|| (self.last_tokens - self.start_tokens) as f64 / secs)
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
