//! The CPU interpreter of the typed IR.
//!
//! A launch is checked against the kernel's parameters, compiled once into a register
//! program (`program`), and run block by block — in parallel on rayon's threads when
//! [`InterpOptions::parallel`] is set. Within a block all threads run in lockstep over an
//! active mask (`exec`), which makes `sync_threads()` and warp collectives natural
//! rendezvous points: one that not every participating thread reaches is an error, never a
//! hang. Every memory access is bounds-checked, and arithmetic follows the PTX ISA bit for
//! bit (see `scalar` and [`crate::convert`]).
//!
//! The sanitizer (module `sanitize`), on by default, reports data races on shared memory and on
//! global memory between threads of a block, and stops a block that runs past a step
//! budget (an infinite loop); reads of shared memory never written are reported on request.
//! Bounds and collective-divergence checks are always on: the interpreter's memory safety
//! and its lockstep semantics rest on them.

mod access;
#[cfg(test)]
mod build;
mod collective;
mod compile;
mod cp_async;
mod error;
mod exec;
pub(crate) mod half2;
mod ldmatrix;
mod memory;
mod mma;
mod program;
#[cfg(test)]
mod sample;
mod sanitize;
mod scalar;
#[cfg(test)]
mod tests;

pub use error::{AccessKind, Coord, InterpError, Lanes, RaceAccess, Space, ThreadList};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::backend::{Arg, LaunchDims, RawBuffer};
use crate::typed::{self, ParamKind};
use crate::types::Type;
use compile::Binding;
use memory::GlobalBuf;
use program::{MemInfo, MemKind};

/// The most threads a CUDA block can have.
const MAX_THREADS_PER_BLOCK: u32 = 1024;

/// The default [`InterpOptions::step_budget`]: about 4.3 billion thread-steps per block,
/// far more than any kernel of the library needs per block, and reached in seconds.
pub const DEFAULT_STEP_BUDGET: u64 = 1 << 32;

/// Interpreter switches. The default runs blocks in parallel with the sanitizer on.
#[derive(Clone, Debug)]
pub struct InterpOptions {
    /// Run blocks in parallel on the CPU's threads (rayon).
    pub parallel: bool,
    /// Report data races: two threads of a block touching the same shared or global element,
    /// at least one writing, with no `sync_threads()` between them (module `sanitize`).
    /// On by default; [`InterpOptions::fast`] turns it off.
    pub races: bool,
    /// Report reads (and atomics) of shared memory that no thread of the block has written
    /// in this launch. Off by default: it costs a check per shared access, and
    /// [`InterpOptions::poison_shared`] already makes most such reads fail the result.
    pub uninit_shared_reads: bool,
    /// Fill each block's shared memory with a poison pattern before it runs: every bit set
    /// (a NaN in every float type, FP8 included; -1 / the maximum in the integer types;
    /// `true` for `bool`), so a kernel that forgets to zero its histogram bins or
    /// accumulators gives a wrong result here, as it may on a GPU, instead of passing on
    /// zeros. On by default; off gives zeroed shared memory.
    pub poison_shared: bool,
    /// The most thread-steps one block may run (an instruction or a loop iteration of one
    /// thread is a step); a block past it stops with
    /// [`InterpError::StepBudgetExceeded`] instead of hanging. Always on.
    pub step_budget: u64,
}

impl Default for InterpOptions {
    fn default() -> Self {
        InterpOptions {
            parallel: true,
            races: true,
            uninit_shared_reads: false,
            poison_shared: true,
            step_budget: DEFAULT_STEP_BUDGET,
        }
    }
}

impl InterpOptions {
    /// Blocks one after another on the calling thread (deterministic even for kernels whose
    /// blocks race, and easier to debug).
    pub fn sequential() -> InterpOptions {
        InterpOptions {
            parallel: false,
            ..InterpOptions::default()
        }
    }

    /// The default without race detection, for speed on kernels already checked.
    pub fn fast() -> InterpOptions {
        InterpOptions {
            races: false,
            ..InterpOptions::default()
        }
    }
}

/// What a launch did, for throughput measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStats {
    pub blocks: u64,
    /// Register-level IR instructions executed, summed over the threads that executed them
    /// (a thread-statement count).
    pub thread_instructions: u64,
}

/// Runs `kernel` over the whole grid of `dims` with `args` (one per kernel parameter).
///
/// When several blocks fault, the error of the lowest-numbered failing block is returned
/// (blocks are numbered `x + gx * (y + gy * z)`), in parallel mode too.
pub fn run(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    args: &mut [Arg],
    options: &InterpOptions,
) -> Result<LaunchStats, InterpError> {
    check_dims(kernel, dims)?;
    let (bindings, globals) = bind_args(kernel, args)?;
    let prog = compile::compile(kernel, *dims, bindings)?;
    let blocks = dims.blocks();
    let block_of = |b: u64| {
        let [gx, gy, _] = dims.grid.map(|g| g as u64);
        [
            (b % gx) as u32,
            ((b / gx) % gy) as u32,
            (b / (gx * gy)) as u32,
        ]
    };
    let executed = AtomicU64::new(0);
    let stats = || LaunchStats {
        blocks,
        thread_instructions: executed.load(Ordering::Relaxed),
    };
    if !options.parallel {
        let mut state = exec::BlockState::new(&prog, &globals, options);
        (0..blocks).try_for_each(|b| state.run(block_of(b)))?;
        executed.store(state.thread_instructions, Ordering::Relaxed);
        return Ok(stats());
    }
    // Lowest failing block so far: blocks above it are skipped, blocks below still run, so
    // the reported error does not depend on scheduling.
    let first_failure = AtomicU64::new(u64::MAX);
    let failure: Mutex<Option<InterpError>> = Mutex::new(None);
    (0..blocks).into_par_iter().for_each_init(
        || exec::BlockState::new(&prog, &globals, options),
        |state, b| {
            if b > first_failure.load(Ordering::Relaxed) {
                return;
            }
            state.thread_instructions = 0;
            let result = state.run(block_of(b));
            executed.fetch_add(state.thread_instructions, Ordering::Relaxed);
            if let Err(e) = result {
                let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                if b < first_failure.load(Ordering::Relaxed) {
                    first_failure.store(b, Ordering::Relaxed);
                    *slot = Some(e);
                }
            }
        },
    );
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(stats()),
    }
}

fn check_dims(kernel: &typed::Kernel, dims: &LaunchDims) -> Result<(), InterpError> {
    let bad = |reason: String| InterpError::BadLaunch {
        kernel: kernel.name.clone(),
        reason,
    };
    if let Some(declared) = kernel.block_dim {
        if declared != dims.block {
            return Err(bad(format!(
                "the kernel is written for blocks of {declared:?} threads, launched with {:?}",
                dims.block
            )));
        }
    }
    if dims.block.contains(&0) || dims.grid.contains(&0) {
        return Err(bad(format!(
            "empty grid {:?} or block {:?}",
            dims.grid, dims.block
        )));
    }
    let threads = dims.block.iter().map(|&d| d as u64).product::<u64>();
    if threads > MAX_THREADS_PER_BLOCK as u64 {
        return Err(bad(format!(
            "{threads} threads per block (block {:?}); CUDA allows at most {MAX_THREADS_PER_BLOCK}",
            dims.block
        )));
    }
    Ok(())
}

/// Checks each argument against its parameter; returns the bindings for the compiler and
/// the global buffers (in the order of the slice parameters).
fn bind_args(
    kernel: &typed::Kernel,
    args: &mut [Arg],
) -> Result<(Vec<Binding>, Vec<GlobalBuf>), InterpError> {
    let params = &kernel.body.params;
    if args.len() != params.len() {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        return Err(InterpError::BadArgument {
            kernel: kernel.name.clone(),
            param: names.join(", "),
            expected: format!("{} arguments", params.len()),
            got: format!("{} arguments", args.len()),
        });
    }
    let mut bindings = Vec::with_capacity(args.len());
    let mut globals = Vec::new();
    for (param, arg) in params.iter().zip(args.iter_mut()) {
        let mismatch = |expected: String, arg: &Arg| InterpError::BadArgument {
            kernel: kernel.name.clone(),
            param: param.name.clone(),
            expected,
            got: arg.describe(),
        };
        match param.kind {
            ParamKind::Value { ty, .. } => match arg {
                Arg::Value(v) if Type::Scalar(v.ty) == ty => bindings.push(Binding::Value(v.bits)),
                _ => return Err(mismatch(format!("a {ty} value"), arg)),
            },
            ParamKind::Slice { elem, mutable } => {
                let expected = if mutable {
                    format!("&mut [{elem}]")
                } else {
                    format!("&[{elem}]")
                };
                let buf = match arg {
                    Arg::SliceMut(b) => b.len_as(elem).and_then(|n| host_buffer_mut(b, elem, n)),
                    Arg::Slice(b) if !mutable => {
                        b.len_as(elem).and_then(|n| host_buffer(b, elem, n))
                    }
                    _ => None,
                };
                let Some((buf, len)) = buf else {
                    return Err(mismatch(format!("{expected} in host memory"), arg));
                };
                bindings.push(Binding::Buffer(MemInfo {
                    kind: MemKind::Global { arg: globals.len() },
                    name: param.name.clone(),
                    elem: elem.elem(),
                    lanes: elem.lanes(),
                    len,
                    writable: mutable,
                }));
                globals.push(buf);
            }
        }
    }
    Ok((bindings, globals))
}

/// The host bytes of a buffer seen as `len` elements of `elem`; `None` when it is not on
/// the host or holds fewer bytes than that needs.
fn host_buffer(b: &RawBuffer, elem: Type, len: usize) -> Option<(GlobalBuf, u64)> {
    let need = len.checked_mul(elem.size_bytes())?;
    let bytes = b.host_bytes()?;
    (bytes.len() >= need).then(|| (GlobalBuf::new(bytes), len as u64))
}

fn host_buffer_mut(b: &mut RawBuffer, elem: Type, len: usize) -> Option<(GlobalBuf, u64)> {
    let need = len.checked_mul(elem.size_bytes())?;
    let bytes = b.host_bytes_mut()?;
    (bytes.len() >= need).then(|| (GlobalBuf::new_mut(bytes), len as u64))
}
