//! Pruning before timing: every candidate is compiled with NVRTC (in parallel over the
//! host's cores, through the compile cache) and those the device cannot run well are
//! dropped, each with the reason.
//!
//! Dropped: a config that fails to compile (a kernel bug, reported), one over the arch's
//! opt-in shared-memory limit per block, the per-thread or per-block register limit, or the
//! thread limit, and one that spills registers to local memory — unless every remaining
//! config spills, in which case spilling ones are kept (something has to be timed).
//!
//! Shared memory is ptxas's static count plus the dynamic shared memory the launch passes
//! ([`codegen::dynamic_shared_bytes`]: the generator carves arrays over 48 KiB from dynamic
//! shared memory, which ptxas does not count).

use crate::kernel::{specialize, TuneKernel};
use crate::TuneError;
use rayon::prelude::*;
use std::fmt;
use warpforge_dsl::codegen;
use warpforge_dsl::nvrtc::{self, Arch, CompileOptions, NvrtcError, ResourceUsage};
use warpforge_dsl::Config;

/// Per-block limits of a device. sm_80, sm_86, sm_89 and sm_90 share all but shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Shared memory per block, static plus dynamic, with the opt-in beyond 48 KiB
    /// (`cudaDevAttrMaxSharedMemoryPerBlockOptin`).
    pub shared_bytes_per_block: u32,
    pub registers_per_thread: u32,
    /// The register file of one SM, the most a single block can hold.
    pub registers_per_block: u32,
    pub threads_per_block: u32,
    /// What one SM holds at once, for the occupancy a config allows.
    pub sm: SmCapacity,
}

/// The resident warps, blocks and shared memory of one SM (CUDA programming guide,
/// compute capabilities table). Registers per SM equal [`Limits::registers_per_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmCapacity {
    pub warps: u32,
    pub blocks: u32,
    pub shared_bytes: u32,
}

/// The smallest SM of those listed, for an arch not listed.
const SMALLEST_SM: SmCapacity = SmCapacity {
    warps: 48,
    blocks: 16,
    shared_bytes: 100 * 1024,
};

const SM_CAPACITY: [(Arch, SmCapacity); 4] = [
    (
        Arch::SM80,
        SmCapacity {
            warps: 64,
            blocks: 32,
            shared_bytes: 164 * 1024,
        },
    ),
    (Arch::new(8, 6), SMALLEST_SM),
    (
        Arch::SM89,
        SmCapacity {
            warps: 48,
            blocks: 24,
            shared_bytes: 100 * 1024,
        },
    ),
    (
        Arch::SM90,
        SmCapacity {
            warps: 64,
            blocks: 32,
            shared_bytes: 228 * 1024,
        },
    ),
];

/// Shared memory the hardware reserves per resident block (sm_80 and later).
const RESERVED_SHARED_PER_BLOCK: u64 = 1024;

impl Limits {
    pub fn for_arch(arch: Arch) -> Limits {
        let sm = SM_CAPACITY.iter().find(|(a, _)| *a == arch);
        Limits {
            shared_bytes_per_block: opt_in_shared_bytes(arch),
            registers_per_thread: 255,
            registers_per_block: 64 * 1024,
            threads_per_block: 1024,
            sm: sm.map_or(SMALLEST_SM, |(_, c)| *c),
        }
    }

    /// The share of an SM's warp slots that blocks of `threads` threads, each thread using
    /// `registers` and each block `shared_bytes`, fill at once: the fewest blocks that the warp
    /// slots, the register file, shared memory and the block slots allow, times the block's
    /// warps. 0 for a kernel that declares no block size.
    pub fn occupancy(&self, registers: u32, shared_bytes: u64, threads: u32) -> f64 {
        if threads == 0 {
            return 0.0;
        }
        let warps = threads.div_ceil(32);
        let block_registers = Limits::block_registers(registers.max(1), threads);
        let blocks = [
            u64::from(self.sm.warps / warps),
            u64::from(self.registers_per_block) / block_registers,
            u64::from(self.sm.shared_bytes) / (shared_bytes + RESERVED_SHARED_PER_BLOCK),
            u64::from(self.sm.blocks),
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        (blocks * u64::from(warps)) as f64 / f64::from(self.sm.warps)
    }

    /// Registers a block occupies: the hardware allocates per warp, each thread's count
    /// rounded up to a multiple of 8 (256 registers per warp). This is
    /// `registers × threads` when both are already aligned.
    pub fn block_registers(registers: u32, threads: u32) -> u64 {
        let warps = threads.div_ceil(32) as u64;
        warps * 32 * registers.next_multiple_of(8) as u64
    }
}

/// The opt-in shared memory per block of each arch warpforge targets (CUDA programming
/// guide, compute capabilities table); the smallest of them for an arch not listed.
const OPT_IN_SHARED: [(Arch, u32); 4] = [
    (Arch::SM80, 163 * 1024),
    (Arch::new(8, 6), 99 * 1024),
    (Arch::SM89, 99 * 1024),
    (Arch::SM90, 227 * 1024),
];

fn opt_in_shared_bytes(arch: Arch) -> u32 {
    let known = OPT_IN_SHARED.iter().find(|(a, _)| *a == arch);
    let smallest = OPT_IN_SHARED.iter().map(|(_, b)| *b).min();
    known.map(|(_, b)| *b).or(smallest).unwrap_or(48 * 1024)
}

/// A config that compiled and fits the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub config: Config,
    /// ptxas's report; its `shared_bytes` is the static shared memory only.
    pub resources: ResourceUsage,
    /// Dynamic shared memory each launch passes (0 for arrays within 48 KiB).
    pub dynamic_shared_bytes: u32,
    /// Threads per block (from the kernel's declared block; 0 when it declares none).
    pub threads: u32,
    /// The share of the SM's warp slots its blocks fill ([`Limits::occupancy`]).
    pub occupancy: f64,
}

/// The names of [`Candidate::compile_stats`], in order: also the fields a replayed space's
/// entries may carry them in (`num_regs` is Kernel Tuner's `RegisterObserver`'s).
pub const COMPILE_STATS: [&str; 5] = [
    "num_regs",
    "shared_bytes",
    "threads",
    "occupancy",
    "spill_bytes",
];

/// Why a config was dropped before timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PruneReason {
    CompileFailed {
        message: String,
    },
    SharedMemory {
        /// Static plus dynamic.
        bytes: u64,
        limit: u32,
    },
    RegistersPerThread {
        registers: u32,
        limit: u32,
    },
    RegistersPerBlock {
        registers: u32,
        threads: u32,
        total: u64,
        limit: u32,
    },
    Threads {
        threads: u32,
        limit: u32,
    },
    Spills {
        stores: u32,
        loads: u32,
    },
}

impl fmt::Display for PruneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PruneReason::CompileFailed { message } => {
                let first = message.lines().next().unwrap_or("");
                write!(f, "does not compile: {first}")
            }
            PruneReason::SharedMemory { bytes, limit } => {
                write!(f, "{bytes} B of shared memory > {limit} B")
            }
            PruneReason::RegistersPerThread { registers, limit } => {
                write!(f, "{registers} registers/thread > {limit}")
            }
            PruneReason::RegistersPerBlock {
                registers,
                threads,
                total,
                limit,
            } => write!(
                f,
                "{registers} registers × {threads} threads = {total} registers/block > {limit}"
            ),
            PruneReason::Threads { threads, limit } => {
                write!(f, "{threads} threads/block > {limit}")
            }
            PruneReason::Spills { stores, loads } => {
                write!(f, "spills ({stores} B stores, {loads} B loads)")
            }
        }
    }
}

/// A config dropped before timing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    pub config: Config,
    pub reason: PruneReason,
}

/// The outcome of pruning a space.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pruning {
    pub kept: Vec<Candidate>,
    pub pruned: Vec<Pruned>,
}

impl Candidate {
    /// Shared memory per block: static plus dynamic.
    pub fn shared_bytes(&self) -> u64 {
        self.resources.shared_bytes as u64 + self.dynamic_shared_bytes as u64
    }

    /// What compiling it told, as the search's model sees it (named by [`COMPILE_STATS`]):
    /// registers per thread, shared memory per block, threads per block, occupancy, and the
    /// bytes spilled (stores plus loads).
    pub fn compile_stats(&self) -> [f64; 5] {
        let usage = &self.resources;
        [
            f64::from(usage.registers),
            self.shared_bytes() as f64,
            f64::from(self.threads),
            self.occupancy,
            f64::from(usage.spill_stores_bytes) + f64::from(usage.spill_loads_bytes),
        ]
    }
}

/// One config's compile result.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledConfig {
    pub config: Config,
    /// The dynamic shared memory its launch passes (the generator's, not ptxas's count).
    pub dynamic_shared_bytes: u32,
    /// Resource usage and threads per block, or the compile error's text.
    pub result: Result<(ResourceUsage, u32), String>,
}

impl CompiledConfig {
    /// The config as a candidate on a device of `limits` (which decide its occupancy), or
    /// the config and its compile error.
    pub fn candidate(self, limits: &Limits) -> Result<Candidate, (Config, String)> {
        let (usage, threads) = match self.result {
            Ok(r) => r,
            Err(message) => return Err((self.config, message)),
        };
        let shared = u64::from(usage.shared_bytes) + u64::from(self.dynamic_shared_bytes);
        Ok(Candidate {
            config: self.config,
            resources: usage,
            dynamic_shared_bytes: self.dynamic_shared_bytes,
            threads,
            occupancy: limits.occupancy(usage.registers, shared, threads),
        })
    }
}

/// Compiles every config for `arch`, in parallel. A missing NVRTC or an arch it does
/// not support is an error (nothing could be pruned); a config that fails to compile is
/// a per-config result.
pub fn compile_space(
    kernel: &TuneKernel,
    configs: &[Config],
    arch: Arch,
) -> Result<Vec<CompiledConfig>, TuneError> {
    let supported = nvrtc::supported_archs().map_err(nvrtc_error)?;
    if !supported.contains(&arch) {
        return Err(nvrtc_error(NvrtcError::UnsupportedArch {
            arch,
            supported: supported.to_vec(),
        }));
    }
    configs
        .par_iter()
        .map(|config| compile_one(kernel, config, arch))
        .collect()
}

fn compile_one(
    kernel: &TuneKernel,
    config: &Config,
    arch: Arch,
) -> Result<CompiledConfig, TuneError> {
    let typed = specialize(kernel.def(), config)?;
    let threads = typed.block_dim.map_or(0, |b| b.iter().product());
    let source = codegen::cuda_source(&typed);
    let dynamic_shared_bytes = codegen::dynamic_shared_bytes(&typed);
    // An intrinsic the arch lacks: refused before NVRTC, with the intrinsic named.
    let compiled = nvrtc::check_arch(&typed, arch)
        .and_then(|()| nvrtc::compile_cached(&source, arch, &CompileOptions::default()));
    let result = match compiled {
        Ok(compiled) => Ok((compiled.resources, threads)),
        Err(e @ (NvrtcError::Compile { .. } | NvrtcError::ArchTooOld { .. })) => Err(e.to_string()),
        Err(e) => return Err(nvrtc_error(e)),
    };
    Ok(CompiledConfig {
        config: config.clone(),
        dynamic_shared_bytes,
        result,
    })
}

fn nvrtc_error(e: NvrtcError) -> TuneError {
    TuneError::Kernel(e.into())
}

/// Applies `limits` to compile results (no NVRTC involved, so tests can script usage).
pub fn apply_limits(compiled: Vec<CompiledConfig>, limits: &Limits) -> Pruning {
    let mut out = Pruning::default();
    let mut spilling = Vec::new();
    for c in compiled {
        let candidate = match c.candidate(limits) {
            Ok(candidate) => candidate,
            Err((config, message)) => {
                out.pruned.push(Pruned {
                    config,
                    reason: PruneReason::CompileFailed { message },
                });
                continue;
            }
        };
        match over_limit(&candidate, limits) {
            Some(reason) => out.pruned.push(Pruned {
                config: candidate.config,
                reason,
            }),
            None if candidate.resources.spills() => spilling.push(candidate),
            None => out.kept.push(candidate),
        }
    }
    if out.kept.is_empty() {
        out.kept = spilling;
    } else {
        out.pruned.extend(spilling.into_iter().map(|c| Pruned {
            reason: PruneReason::Spills {
                stores: c.resources.spill_stores_bytes,
                loads: c.resources.spill_loads_bytes,
            },
            config: c.config,
        }));
    }
    out
}

fn over_limit(candidate: &Candidate, limits: &Limits) -> Option<PruneReason> {
    let (usage, threads) = (&candidate.resources, candidate.threads);
    let shared = candidate.shared_bytes();
    if shared > limits.shared_bytes_per_block as u64 {
        return Some(PruneReason::SharedMemory {
            bytes: shared,
            limit: limits.shared_bytes_per_block,
        });
    }
    if usage.registers > limits.registers_per_thread {
        return Some(PruneReason::RegistersPerThread {
            registers: usage.registers,
            limit: limits.registers_per_thread,
        });
    }
    if threads > limits.threads_per_block {
        return Some(PruneReason::Threads {
            threads,
            limit: limits.threads_per_block,
        });
    }
    let total = Limits::block_registers(usage.registers, threads);
    if total > limits.registers_per_block as u64 {
        return Some(PruneReason::RegistersPerBlock {
            registers: usage.registers,
            threads,
            total,
            limit: limits.registers_per_block,
        });
    }
    None
}

/// Compiles and prunes a kernel's whole declared space for `arch`.
pub fn prune_space(kernel: &TuneKernel, arch: Arch) -> Result<Pruning, TuneError> {
    let compiled = compile_space(kernel, &kernel.space(), arch)?;
    Ok(apply_limits(compiled, &Limits::for_arch(arch)))
}
