//! How one check ended, and the tally the commands print and exit on.
//!
//! A kernel the device cannot run (its newest intrinsic needs a later arch) is skipped, not
//! failed; after a sticky driver fault the device refuses all work, and what was left is
//! "not run", not failed. A command exits 0 when every check that could run passed.

use std::fmt;
use std::process::ExitCode;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::nvrtc::{Arch, NvrtcError};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::Kernel;

/// The end of one check (a kernel, a config, a problem).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Why it cannot run here: `needs sm_89: mma_m16n8k32_e4m3_f32`.
    Skipped(String),
    /// Why it was not tried: `context lost after KERNEL (CONFIG)`.
    NotRun(String),
}

impl Outcome {
    /// The outcome of an error: arch too old is a skip, a lost context "not run", anything
    /// else a failure.
    pub fn of_error(err: &(dyn std::error::Error + 'static)) -> Outcome {
        if let Some(why) = skip_reason(err) {
            return Outcome::Skipped(why);
        }
        match find::<DeviceError>(err) {
            Some(DeviceError::ContextLost { after, .. }) => {
                Outcome::NotRun(format!("context lost after {after}"))
            }
            _ => Outcome::Failed(err.to_string()),
        }
    }

    /// `passed`, `failed`, `skipped` or `not_run` (the JSON reports' status field).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
            Outcome::NotRun(_) => "not_run",
        }
    }

    /// The report's `status`: `passed`, `failed`, `skipped (…)`, `not run (…)`.
    pub fn status(&self) -> String {
        match self {
            Outcome::Passed => "passed".into(),
            Outcome::Failed(_) => "failed".into(),
            Outcome::Skipped(why) => format!("skipped ({why})"),
            Outcome::NotRun(why) => format!("not run ({why})"),
        }
    }
}

/// `needs sm_89: mma_m16n8k32_e4m3_f32` for an arch-too-old error from either the launch
/// check or the compiler.
fn skip_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(DeviceError::ArchTooOld {
        intrinsic, needs, ..
    }) = find::<DeviceError>(err)
    {
        return Some(format!("needs {needs}: {intrinsic}"));
    }
    if let Some(NvrtcError::ArchTooOld {
        intrinsic, needs, ..
    }) = find::<NvrtcError>(err)
    {
        return Some(format!("needs {needs}: {intrinsic}"));
    }
    None
}

/// The first error of type `E` in `err`'s chain, looking through the DSL's wrapper.
fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = at {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        // Transparent wrappers delegate `source()` past the error they wrap: look inside.
        use warpforge_kernels::check::CheckError;
        let dsl = match e.downcast_ref::<CheckError>() {
            Some(CheckError::Device(d)) => return (d as &dyn std::error::Error).downcast_ref(),
            Some(CheckError::Kernel(k)) => Some(k),
            None => e.downcast_ref::<warpforge_dsl::Error>(),
        };
        if let Some(dsl) = dsl {
            let inner: Option<&E> = match dsl {
                warpforge_dsl::Error::Device(d) => (d as &dyn std::error::Error).downcast_ref(),
                warpforge_dsl::Error::Nvrtc(n) => (n as &dyn std::error::Error).downcast_ref(),
                _ => None,
            };
            if inner.is_some() {
                return inner;
            }
        }
        at = e.source();
    }
    None
}

/// Why `kernel` at `config` cannot run on `device` (`needs sm_89: …`), decided before any
/// launch; `None` on the interpreter, which runs every arch's intrinsics.
pub fn arch_skip(device: &Device, kernel: Kernel, config: &Config) -> Option<String> {
    let arch = device.arch()?;
    needs_newer(kernel, config, arch)
}

/// `needs sm_XY: intrinsic` when `kernel` at `config` needs a newer arch than `arch`.
pub fn needs_newer(kernel: Kernel, config: &Config, arch: Arch) -> Option<String> {
    let typed = warpforge_dsl::resolve::specialize(kernel.def(), config).ok()?;
    match warpforge_dsl::min_arch(&typed) {
        Some((needs, intrinsic)) if needs > arch => Some(format!("needs {needs}: {intrinsic}")),
        _ => None,
    }
}

/// Counts of each outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_run: usize,
}

impl Tally {
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::NotRun(_) => self.not_run += 1,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.not_run += other.not_run;
    }

    /// Success when nothing that ran failed and nothing was cut off by a lost context.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed == 0 && self.not_run == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed, "failed": self.failed,
            "skipped": self.skipped, "not_run": self.not_run,
        })
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped, {} not run",
            self.passed, self.failed, self.skipped, self.not_run
        )
    }
}

#[cfg(test)]
mod tests;
