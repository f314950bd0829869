//! warpforge: GPU kernels written in Rust syntax, lowered to CUDA C, compiled at run time with
//! NVRTC, proven on a CPU interpreter of the same IR, and autotuned per GPU.
//!
//! This crate is the one to depend on: it re-exports the workspace's library crates, and
//! `#[kernel]` / `#[device]` expand to paths through it (`::warpforge::dsl::…`), so a
//! program with only `warpforge` in its `Cargo.toml` can write and launch its own kernels.
//!
//! | module | crate | what |
//! | --- | --- | --- |
//! | [`dsl`] | `warpforge-dsl` | IR, CUDA C generator, NVRTC, devices and buffers, interpreter |
//! | [`prelude`] | `warpforge-dsl` | what kernel bodies `use`: types and intrinsics |
//! | [`kernel`], [`device`] | `warpforge-macros` | the attributes that make a fn a kernel |
//! | [`kernels`] | `warpforge-kernels` | the kernel library, each with a host reference |
//! | [`autotune`] | `warpforge-autotune` | search spaces, timing, the per-device tuning cache |
//!
//! # A kernel of your own
//!
//! Written once, run here on the CPU interpreter ([`dsl::Device::cpu`]); the same launch
//! runs on a GPU with [`dsl::Device::cuda`].
//!
//! ```
//! use warpforge::dsl::{Device, LaunchDims};
//! use warpforge::kernel;
//! use warpforge::prelude::*;
//!
//! #[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256]))]
//! pub fn saxpy<const BLOCK: u32>(x: &[f32], y: &mut [f32], a: f32, n: u32) {
//!     let i = block_idx_x() * BLOCK + thread_idx_x();
//!     if i < n {
//!         y[i] = a * x[i] + y[i];
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::cpu();
//! let n = 1000u32;
//! let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
//! let x_buf = device.upload(&x)?;
//! let mut y_buf = device.upload(&vec![1.0f32; n as usize])?;
//!
//! let config = saxpy::default_config(); // BLOCK = 64, the first listed value
//! let block = config.get("BLOCK").unwrap() as u32;
//! saxpy::launch(&device, &config, LaunchDims::cover(n, block), &x_buf, &mut y_buf, 2.0, n)?;
//!
//! let y = device.download(&y_buf)?;
//! assert!(y.iter().zip(&x).all(|(y, x)| *y == 2.0 * x + 1.0));
//! # Ok(())
//! # }
//! ```
//!
//! The CUDA C of one specialization, for reading or for another build system:
//!
//! ```
//! # use warpforge::kernel;
//! # use warpforge::prelude::*;
//! # #[kernel(block = (BLOCK), tune(BLOCK = [64, 128]))]
//! # pub fn saxpy<const BLOCK: u32>(x: &[f32], y: &mut [f32], a: f32, n: u32) {
//! #     let i = block_idx_x() * BLOCK + thread_idx_x();
//! #     if i < n { y[i] = a * x[i] + y[i]; }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let typed = warpforge::dsl::resolve::specialize(saxpy::def(), &saxpy::default_config())?;
//! let cuda_c = warpforge::dsl::codegen::cuda_source(&typed);
//! assert!(cuda_c.contains("__global__"));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/user_kernel.rs` goes further: a host reference check, NVRTC, a GPU launch when
//! there is one, and tuning. `docs/architecture.md` describes how a kernel travels.

// `#[kernel]` names `::warpforge::dsl` inside this package too (its tests and doctests).
extern crate self as warpforge;

pub use warpforge_autotune as autotune;
pub use warpforge_dsl as dsl;
pub use warpforge_dsl::prelude;
pub use warpforge_kernels as kernels;
pub use warpforge_macros::{device, kernel};

/// The README's Rust example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
