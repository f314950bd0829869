//! warpforge's kernel library. Each kernel comes with a host reference, its tunable space
//! (declared on the kernel) with a default config, launch helpers, and a check against the
//! reference over a set of problem sizes including edge shapes.
//!
//! [`library`] lists them for the CLI, the tests and the autotuner.

pub mod attention;
pub mod check;
pub mod fp8;
pub mod gemm;
pub mod gemm_tc;
pub mod reduce;
pub mod softmax;
pub mod vector_add;

use check::{compare, CheckError, CheckReport, Problem};
use warpforge_dsl::{Config, Device, KernelDef};

/// A library kernel, as the CLI and the test suite see it.
#[derive(Clone, Copy)]
pub struct LibraryKernel {
    pub name: &'static str,
    pub summary: &'static str,
    pub def: fn() -> &'static KernelDef,
    /// Problem sizes its checks run (small, with edge shapes).
    pub problems: fn() -> Vec<Problem>,
    /// The kernel's output for one config on a problem's (deterministic) inputs.
    pub output: fn(&Device, &Config, &Problem) -> Result<Vec<f32>, warpforge_dsl::Error>,
    /// The host reference's output on the same inputs.
    pub expected: fn(&Problem) -> Vec<f32>,
    /// Allowed error, relative to max(1, |expected|): 0 where the result is exact.
    pub tolerance: fn(&Problem) -> f64,
}

impl LibraryKernel {
    /// The heuristic default config.
    pub fn default_config(&self) -> Config {
        (self.def)().space.default_config()
    }

    /// Runs one config on one problem and compares with the host reference.
    pub fn check(
        &self,
        device: &Device,
        config: &Config,
        problem: &Problem,
    ) -> Result<CheckReport, CheckError> {
        let got = (self.output)(device, config, problem)?;
        Ok(compare(
            problem,
            &got,
            &(self.expected)(problem),
            (self.tolerance)(problem),
        ))
    }

    /// Every config of its declared space.
    pub fn configs(&self) -> Vec<Config> {
        (self.def)().space.configs()
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
}

/// The library's kernels grouped by generic source: the instances of one
/// `#[kernel(types(..))]` fn (same file and line) differ only in element types, so tests
/// can cover one instance's whole space and sample the others. Library order.
pub fn families() -> Vec<Vec<LibraryKernel>> {
    let mut out: Vec<Vec<LibraryKernel>> = Vec::new();
    for k in library() {
        let (def, site) = ((k.def)(), |d: &KernelDef| (d.file.clone(), d.line));
        match out.iter_mut().find(|f| site((f[0].def)()) == site(def)) {
            Some(family) => family.push(k),
            None => out.push(vec![k]),
        }
    }
    out
}

/// Every kernel of the library.
pub fn library() -> Vec<LibraryKernel> {
    let mut kernels = vec![
        LibraryKernel {
            name: "vector_add",
            summary: "c = a + b (f32), memory-bound",
            def: vector_add::vector_add::def,
            problems: vector_add::problems,
            output: vector_add::output,
            expected: vector_add::expected,
            tolerance: exact,
        },
        LibraryKernel {
            name: "sum_partials",
            summary: "sum of an f32 vector: per-block partial sums (shuffles + shared memory)",
            def: reduce::sum_partials::def,
            problems: reduce::problems,
            output: reduce::output,
            expected: reduce::expected,
            tolerance: reduce::tolerance,
        },
        LibraryKernel {
            name: "gemm",
            summary: "tiled f32 GEMM, shared-memory tiles and register micro-tiles",
            def: gemm::gemm::def,
            problems: gemm::problems,
            output: gemm::output,
            expected: gemm::expected,
            tolerance: exact,
        },
        LibraryKernel {
            name: "softmax",
            summary: "row-wise softmax (f32), online max/sum, one block per row",
            def: softmax::softmax::def,
            problems: softmax::problems,
            output: softmax::output,
            expected: softmax::expected,
            tolerance: ulps,
        },
    ];
    kernels.extend(gemm_tc::entries());
    kernels.extend(fp8::library::entries());
    kernels
}

/// The library kernel called `name`.
pub fn find(name: &str) -> Option<LibraryKernel> {
    library().into_iter().find(|k| k.name == name)
}

fn exact(_: &Problem) -> f64 {
    0.0
}

/// exp is an approximation on both sides (documented model): a few f32 ulps.
fn ulps(_: &Problem) -> f64 {
    2e-6
}
