//! A fake device for tests: scripted timings with noise, and scripted faults.
//!
//! Its "kernel" writes one value: 1.0, or adds 1.0 to the output when the problem is set
//! to accumulate in place — so a run without a restore before it gives a different output,
//! as a real accumulating kernel would.

use super::{Bench, RunFailure, Tolerance};
use crate::shapes::ProblemShape;
use std::collections::HashMap;
use std::time::Duration;
use warpforge_dsl::Config;

/// A scripted fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The kernel faults; the device stays usable.
    Crash,
    /// The kernel faults and takes the device with it (a sticky CUDA error).
    CrashLosesDevice,
    /// The launch returns an error.
    Error,
    /// The launch never finishes within the limit.
    Timeout,
    /// The output is off by 0.5.
    WrongOutput,
}

/// What one config does on the fake device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Script {
    /// Seconds per launch before noise.
    pub time: f64,
    /// A fault, and the run (0 = the first, the output check) at which it strikes.
    pub fault: Option<(Fault, u32)>,
}

impl Script {
    pub fn time(time: f64) -> Script {
        Script { time, fault: None }
    }

    pub fn fault(fault: Fault, at_run: u32) -> Script {
        Script {
            time: 1e-3,
            fault: Some((fault, at_run)),
        }
    }
}

/// The fake device.
#[derive(Clone, Debug)]
pub struct FakeBench {
    scripts: HashMap<Config, Script>,
    /// Time of a config without a script.
    pub default_time: f64,
    /// Relative noise amplitude: each sample is `time · (1 + noise·u)`, u in [-1, 1).
    pub noise: f64,
    /// Whether problems accumulate into their output in place.
    pub accumulates: bool,
    rng: u64,
    runs: HashMap<Config, u32>,
    output: f32,
    restores: u32,
    healthy: bool,
    prepared: Vec<ProblemShape>,
}

impl FakeBench {
    pub fn new() -> FakeBench {
        FakeBench {
            scripts: HashMap::new(),
            default_time: 1e-3,
            noise: 0.0,
            accumulates: false,
            rng: 0x9e37_79b9_7f4a_7c15,
            runs: HashMap::new(),
            output: 0.0,
            restores: 0,
            healthy: true,
            prepared: Vec::new(),
        }
    }

    pub fn script(&mut self, config: Config, script: Script) -> &mut FakeBench {
        self.scripts.insert(config, script);
        self
    }

    /// How often `config` ran (output checks, warm-ups and samples).
    pub fn runs(&self, config: &Config) -> u32 {
        self.runs.get(config).copied().unwrap_or(0)
    }

    pub fn total_runs(&self) -> u32 {
        self.runs.values().sum()
    }

    pub fn restores(&self) -> u32 {
        self.restores
    }

    /// The problems prepared, in order.
    pub fn prepared(&self) -> &[ProblemShape] {
        &self.prepared
    }

    /// A deterministic uniform number in [-1, 1) (xorshift64*).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// One run of `config`: applies its fault, if this is the run it strikes at.
    fn run(&mut self, config: &Config) -> Result<Script, RunFailure> {
        if !self.healthy {
            return Err(RunFailure::Error("the device was lost earlier".into()));
        }
        let n = self.runs.entry(config.clone()).or_insert(0);
        let index = *n;
        *n += 1;
        let script = self
            .scripts
            .get(config)
            .copied()
            .unwrap_or(Script::time(self.default_time));
        self.output = if self.accumulates {
            self.output + 1.0
        } else {
            1.0
        };
        match script.fault {
            Some((fault, at)) if at == index => self.fail(fault, config),
            _ => Ok(script),
        }
    }

    fn fail(&mut self, fault: Fault, config: &Config) -> Result<Script, RunFailure> {
        Err(match fault {
            Fault::Crash => RunFailure::Crashed(format!("illegal address in {config}")),
            Fault::CrashLosesDevice => {
                self.healthy = false;
                RunFailure::Crashed(format!("illegal address in {config}; context lost"))
            }
            Fault::Error => RunFailure::Error("too many resources requested for launch".into()),
            Fault::Timeout => RunFailure::TimedOut(Duration::from_secs(1)),
            Fault::WrongOutput => {
                self.output += 0.5;
                return Ok(Script::time(self.default_time));
            }
        })
    }
}

impl Default for FakeBench {
    fn default() -> FakeBench {
        FakeBench::new()
    }
}

impl Bench for FakeBench {
    fn prepare(&mut self, shape: &ProblemShape) -> Result<(), RunFailure> {
        self.prepared.push(shape.clone());
        self.output = 0.0;
        Ok(())
    }

    fn output(&mut self, config: &Config) -> Result<Vec<f32>, RunFailure> {
        self.run(config)?;
        Ok(vec![self.output])
    }

    fn sample(&mut self, config: &Config) -> Result<f64, RunFailure> {
        let script = self.run(config)?;
        Ok(script.time * (1.0 + self.noise * self.uniform()))
    }

    fn accumulates(&self) -> bool {
        self.accumulates
    }

    fn restore(&mut self) -> Result<(), RunFailure> {
        self.restores += 1;
        self.output = 0.0;
        Ok(())
    }

    fn tolerance(&self) -> Tolerance {
        Tolerance::EXACT
    }

    fn healthy(&self) -> bool {
        self.healthy
    }
}
