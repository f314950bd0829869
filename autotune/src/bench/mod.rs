//! The timing harness: what a device must do to be tuned on ([`Bench`]), the adaptive
//! sampling loop ([`measure`]) and the output check ([`compare`]).
//!
//! Implementations: [`DeviceBench`] runs the library kernels on a [`warpforge_dsl::Device`]
//! (CUDA events on a GPU, wall time on the interpreter); [`FakeBench`] replays scripted
//! timings, noise and faults for tests.

#[cfg(feature = "cuda")]
mod cuda_timer;
mod device;
mod fake;
mod stats;

#[cfg(feature = "cuda")]
pub use cuda_timer::CudaTimer;
pub use device::{DeviceBench, Timer, WallTimer};
pub use fake::{FakeBench, Fault, Script};
pub use stats::{quartiles, Measurement};

use crate::shapes::ProblemShape;
use std::time::{Duration, Instant};
use warpforge_dsl::Config;

/// Why a candidate's run failed. A failure is recorded in the cache and the candidate is
/// never retried for that key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunFailure {
    /// The kernel faulted (an out-of-bounds access, an illegal instruction). On a GPU the
    /// context is lost with it: [`Bench::healthy`] turns false.
    #[error("crashed: {0}")]
    Crashed(String),
    /// The launch or a call around it returned an error.
    #[error("error: {0}")]
    Error(String),
    /// One launch ran longer than the limit.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The output differs from the reference config's.
    #[error("wrong output: {0}")]
    WrongOutput(String),
}

/// How outputs of a problem are compared: `|got - want| <= rel·|want| + abs` (each
/// library kernel declares its own, beside its kernels).
pub use warpforge_kernels::check::Tolerance;

/// A device the tuner can time candidates on, for one prepared problem at a time.
pub trait Bench {
    /// Allocates and fills the buffers of `shape` (inputs deterministic).
    fn prepare(&mut self, shape: &ProblemShape) -> Result<(), RunFailure>;
    /// Runs `config` once, waits, and returns its output (summarized by the problem: a
    /// reduction's partials become their sum, since their number depends on the config).
    fn output(&mut self, config: &Config) -> Result<Vec<f32>, RunFailure>;
    /// Times one launch of `config`, in seconds. Flushes the L2 cache first (untimed).
    fn sample(&mut self, config: &Config) -> Result<f64, RunFailure>;
    /// Whether the prepared problem's kernel accumulates into its output in place, so the
    /// output must be restored before every run.
    fn accumulates(&self) -> bool;
    /// Restores the output buffers to their initial contents (untimed).
    fn restore(&mut self) -> Result<(), RunFailure>;
    /// How the prepared problem's outputs compare.
    fn tolerance(&self) -> Tolerance;
    /// False once a fault left the device unusable (a CUDA context error is sticky):
    /// the tuner then stops, leaving the remaining candidates untried (and uncached).
    fn healthy(&self) -> bool;
}

/// When to stop sampling a candidate.
///
/// Spread is the interquartile range relative to the median, `(p75 - p25) / median`:
/// robust to the odd slow sample (a clock change, a context switch), which a standard
/// deviation is not. Sampling stops at `min_samples` once the spread is at most
/// `target_spread`, or at `max_samples`, or when `max_time` has passed; the figure is the
/// median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplePolicy {
    /// Untimed runs first (module load, clocks, TLB).
    pub warmup: u32,
    pub min_samples: u32,
    pub max_samples: u32,
    pub target_spread: f64,
    pub max_time: Duration,
}

impl Default for SamplePolicy {
    fn default() -> SamplePolicy {
        SamplePolicy {
            warmup: 3,
            min_samples: 10,
            max_samples: 200,
            target_spread: 0.01,
            max_time: Duration::from_secs(2),
        }
    }
}

/// Warms up, then samples `config` until the policy says stop. Restores the outputs
/// before every run when the problem accumulates.
pub fn measure(
    bench: &mut dyn Bench,
    config: &Config,
    policy: &SamplePolicy,
) -> Result<Measurement, RunFailure> {
    let run = |bench: &mut dyn Bench| {
        if bench.accumulates() {
            bench.restore()?;
        }
        bench.sample(config)
    };
    for _ in 0..policy.warmup {
        run(bench)?;
    }
    let mut samples = Vec::with_capacity(policy.min_samples.max(1) as usize);
    let started = Instant::now();
    loop {
        samples.push(run(bench)?);
        let m = Measurement::of(&samples);
        let enough = samples.len() as u32 >= policy.min_samples.max(1);
        if enough
            && (m.spread <= policy.target_spread
                || samples.len() as u32 >= policy.max_samples
                || started.elapsed() >= policy.max_time)
        {
            return Ok(m);
        }
    }
}

/// Ok, or a description of the first element out of tolerance.
pub fn compare(reference: &[f32], got: &[f32], tol: Tolerance) -> Result<(), String> {
    if reference.len() != got.len() {
        return Err(format!(
            "{} elements, the reference has {}",
            got.len(),
            reference.len()
        ));
    }
    for (i, (&w, &g)) in reference.iter().zip(got).enumerate() {
        let (w, g) = (w as f64, g as f64);
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else {
            (g - w).abs() <= tol.rel * w.abs() + tol.abs || g == w
        };
        if !ok {
            return Err(format!(
                "element {i} is {g}, the reference config gives {w} \
                 (allowed: {:e}·|ref| + {:e})",
                tol.rel, tol.abs
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_the_first_difference() {
        let tol = Tolerance {
            rel: 1e-3,
            abs: 0.0,
        };
        assert!(compare(&[1.0, 1000.0], &[1.0, 1000.5], tol).is_ok());
        let e = compare(&[1.0, 2.0], &[1.0, 2.5], tol).unwrap_err();
        assert!(
            e.contains("element 1 is 2.5, the reference config gives 2"),
            "{e}"
        );
        assert!(compare(&[1.0], &[1.0, 2.0], tol).is_err());
        assert!(compare(&[f32::NAN], &[f32::NAN], Tolerance::EXACT).is_ok());
        assert!(compare(&[1.0], &[f32::NAN], tol).is_err());
        assert!(compare(&[f32::INFINITY], &[f32::INFINITY], Tolerance::EXACT).is_ok());
    }
}
