//! One description per kernel: everything `warpforge check`, the autotuner, `gpu-check` and
//! the benches need to run a library kernel at a problem, written once beside its kernels.
//!
//! A family folder (`kernels/src/<family>/`) implements [`LibraryKernel`] for each of its
//! kernels (once per generic source: `impl<T: Float> LibraryKernel for MyKernel<T>` covers
//! every element-type instance) and lists them in a `pub fn kernels() -> Vec<Kernel>`; the
//! crate's [`library`](crate::library) has one registration line per family. Nothing
//! outside the family names its kernels.
//!
//! The pieces:
//! - [`LibraryKernel::problems`]: small check shapes with edge cases (1, odd, ragged);
//! - [`LibraryKernel::model_problems`]: the shapes a model implies ([`ModelShape`]), for
//!   tuning and the perf runs;
//! - [`LibraryKernel::case`]: a [`Case`] — deterministic inputs for any problem, uploaded to
//!   a device once, launched with any config, the output read back as f32s comparable across
//!   configs, and in-place state restored;
//! - [`LibraryKernel::expected`] and [`LibraryKernel::tolerance`]: the host reference on the
//!   same inputs and the allowed error.

use crate::check::{compare, CheckError, CheckReport, Problem, Tolerance};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// A library kernel at one problem, its buffers on one device.
pub trait Case {
    /// Enqueues one launch of `config` (for some kernels a short fixed sequence, e.g. the
    /// amax that a per-tensor cast reads).
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error>;

    /// The output after a launch, as f32s comparable across configs and with
    /// [`LibraryKernel::expected`] (codes as their integer value, then scales; a
    /// reduction's config-dependent partials as their sum).
    fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, Error>;

    /// Whether a launch reads what an earlier one wrote (an atomic max into its output, an
    /// optimizer state updated in place), so [`Case::restore`] must run before a launch
    /// whose output is checked.
    fn accumulates(&self) -> bool {
        false
    }

    /// Writes the state a launch modifies in place back to its initial contents.
    fn restore(&mut self, _device: &Device) -> Result<(), Error> {
        Ok(())
    }
}

/// The shapes of a Llama-family model that fix its kernels' problems.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
}

impl ModelShape {
    /// Llama 3 8B.
    pub fn llama3_8b() -> ModelShape {
        ModelShape {
            hidden: 4096,
            intermediate: 14336,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            vocab: 128_256,
        }
    }

    /// Output features of the query projection.
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Output features of the key (or value) projection.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// The linear layers of one decoder layer and the LM head as `(name, out, in)`
    /// features, k/v and gate/up merged (same shapes).
    pub fn linears(&self) -> [(&'static str, usize, usize); 6] {
        let (h, q, kv) = (self.hidden, self.q_width(), self.kv_width());
        [
            ("q_proj", q, h),
            ("k_proj/v_proj", kv, h),
            ("o_proj", h, q),
            ("gate_proj/up_proj", self.intermediate, h),
            ("down_proj", h, self.intermediate),
            ("lm_head", self.vocab, h),
        ]
    }

    /// The parameters of one layer's matrices (attention and MLP projections).
    pub fn layer_parameters(&self) -> usize {
        let (h, q, kv) = (self.hidden, self.q_width(), self.kv_width());
        2 * h * q + 2 * h * kv + 3 * h * self.intermediate
    }
}

/// One kernel of the library, described once for every consumer.
pub trait LibraryKernel: Send + Sync {
    /// The kernel (one instance of a generic source).
    fn def(&self) -> &'static KernelDef;

    /// One line for `warpforge kernels`.
    fn summary(&self) -> &'static str;

    /// Small problems for checks, with edge shapes.
    fn problems(&self) -> Vec<Problem>;

    /// The number of dimensions of a problem (the fewest, for a kernel whose problems
    /// encode a variable-length list, which then overrides [`LibraryKernel::validate`]).
    fn rank(&self) -> usize;

    /// Why `problem` is not one of this kernel's (wrong number of dims, or a dim out of
    /// range), for shapes given by a user; every dim must be in 1..2^32.
    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let rank = self.rank();
        if problem.dims.len() != rank {
            return Err(format!(
                "{} takes {rank} dimension(s), got {:?}",
                self.def().name,
                problem.dims
            ));
        }
        if problem
            .dims
            .iter()
            .any(|&d| d == 0 || d > u32::MAX as usize)
        {
            return Err(format!(
                "dimensions must be between 1 and 2^32-1, got {:?}",
                problem.dims
            ));
        }
        Ok(())
    }

    /// Builds the problem's deterministic inputs (the same for the same dims) on `device`.
    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error>;

    /// The host reference's output on the inputs [`LibraryKernel::case`] builds.
    fn expected(&self, problem: &Problem) -> Vec<f32>;

    /// Allowed error against [`LibraryKernel::expected`], relative to max(1, |expected|):
    /// 0 where the result is exact.
    fn tolerance(&self, _problem: &Problem) -> f64 {
        0.0
    }

    /// How the outputs of two configs on the same inputs may differ (exact unless the
    /// summation order depends on the config).
    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        Tolerance::EXACT
    }

    /// Whether `config` computes `problem` as laid out (a config whose layout tunable
    /// disagrees with the problem's is not a candidate for it).
    fn admits(&self, _config: &Config, _problem: &Problem) -> bool {
        true
    }

    /// The bytes the kernel must move at `problem` (each input read once, each output
    /// written once), as its doc comment counts them: the numerator of its memory
    /// roofline, for bandwidth reports. None where not stated.
    fn bytes(&self, _problem: &Problem) -> Option<u64> {
        None
    }

    /// The dims the tuning cache buckets a problem by (at most 6; the problem's own dims
    /// unless they encode a variable-length list, as attention's varlen batches do).
    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        problem.dims.clone()
    }

    /// The problems a model implies at each batch size in `tokens` (none: the kernel keeps
    /// its default config unless given shapes).
    fn model_problems(&self, _model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        Vec::new()
    }
}

/// A registered library kernel.
pub type Kernel = &'static dyn LibraryKernel;

impl dyn LibraryKernel {
    pub fn name(&self) -> &'static str {
        self.def().name.as_str()
    }

    /// The heuristic default config.
    pub fn default_config(&self) -> Config {
        self.def().space.default_config()
    }

    /// Every config of its declared space.
    pub fn configs(&self) -> Vec<Config> {
        self.def().space.configs()
    }

    /// The default config and about `n` more spread evenly over the space (all of it when
    /// it has at most `n + 1` configs), in space order, each once.
    pub fn sample_configs(&self, n: usize) -> Vec<Config> {
        let all = self.configs();
        let step = all.len().div_ceil(n.max(1)).max(1);
        let default = self.default_config();
        let mut out: Vec<Config> = all.into_iter().step_by(step).collect();
        if !out.contains(&default) {
            out.push(default);
        }
        out
    }

    /// Builds the case, runs `config` once and returns the output.
    pub fn output(
        &self,
        device: &Device,
        config: &Config,
        problem: &Problem,
    ) -> Result<Vec<f32>, Error> {
        let mut case = self.case(device, problem)?;
        case.launch(device, config)?;
        case.output(device, config)
    }

    /// Runs one config on one problem and compares with the host reference.
    pub fn check(
        &self,
        device: &Device,
        config: &Config,
        problem: &Problem,
    ) -> Result<CheckReport, CheckError> {
        let got = self.output(device, config, problem)?;
        Ok(compare(
            problem,
            &got,
            &self.expected(problem),
            self.tolerance(problem),
        ))
    }
}

/// Leaks a kernel description so it can be registered (each is a small value made once per
/// process: [`library`](crate::library) caches the list).
pub fn register<K: LibraryKernel + 'static>(kernel: K) -> Kernel {
    Box::leak(Box::new(kernel))
}

/// `problem.dims` as u32s (dims are checked to fit when shapes are loaded).
pub fn dims_u32(problem: &Problem) -> Vec<u32> {
    problem
        .dims
        .iter()
        .map(|&d| u32::try_from(d).unwrap_or(u32::MAX))
        .collect()
}

/// An argument-mismatch error unless `got == expected` elements (a shape the caller gave
/// disagrees with a buffer's length).
pub fn check_len(def: &KernelDef, what: &str, got: usize, expected: usize) -> Result<(), Error> {
    if got == expected {
        return Ok(());
    }
    Err(Error::Device(DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: what.to_string(),
        expected: format!("{expected} elements (from the shape given)"),
        got: got.to_string(),
    }))
}

/// A buffer of any float format downloaded and widened to f32 (exactly).
pub fn download_f32<T: Float + Element>(
    device: &Device,
    buf: &Buffer<T>,
) -> Result<Vec<f32>, Error> {
    Ok(device.download(buf)?.into_iter().map(T::to_f32).collect())
}

/// A small fixed-seed generator (64-bit LCG, high bits): fast enough to fill the
/// gigabyte-sized inputs of a model-shaped problem, and the same for the same dims.
pub struct Lcg(u64);

impl Lcg {
    /// The generator of a problem with dimensions `dims` (same dims, same inputs), salted
    /// per use so two tensors of one problem differ.
    pub fn for_dims(dims: &[usize], salt: u64) -> Lcg {
        Lcg(0x5eed
            ^ salt.wrapping_mul(0x9e37_79b9)
            ^ dims
                .iter()
                .fold(0u64, |h, &x| h.wrapping_mul(31).wrapping_add(x as u64)))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// An integer in [-r, r], as f32.
    pub fn integer(&mut self, r: u32) -> f32 {
        (self.next_u32() % (2 * r + 1)) as f32 - r as f32
    }

    /// Integers in [-r, r], as f32.
    pub fn integers(&mut self, n: usize, r: u32) -> Vec<f32> {
        (0..n).map(|_| self.integer(r)).collect()
    }

    /// Uniform in [-r, r).
    pub fn float(&mut self, r: f32) -> f32 {
        (self.next_u32() as f32 / (1u64 << 30) as f32 - 1.0) * r
    }

    /// Uniform in [-r, r).
    pub fn floats(&mut self, n: usize, r: f32) -> Vec<f32> {
        (0..n).map(|_| self.float(r)).collect()
    }
}
