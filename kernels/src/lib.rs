//! warpforge's kernel library. Each kernel comes with a host reference, its tunable space
//! (declared on the kernel) with a default config, launch helpers, and a check against the
//! reference over a set of problem sizes including edge shapes.
//!
//! Each family describes its kernels once ([`family::LibraryKernel`]: problems, inputs on a
//! device, launch, output, reference, tolerance, the shapes a model implies); [`library`]
//! lists them for the CLI, the tests, the autotuner, gpu-check and the benches.
//!
//! ```
//! use warpforge_dsl::Device;
//! use warpforge_kernels::vector_add;
//!
//! // Every library kernel is found by name, with its tunable space...
//! let kernel = warpforge_kernels::find("vector_add").unwrap();
//! let config = kernel.def().space.default_config();
//! // ...and its module has a launch helper and a host reference.
//! let (a, b) = (vec![1.0f32; 1000], (0..1000).map(|i| i as f32).collect::<Vec<_>>());
//! let sum = vector_add::run(&Device::cpu(), &config, &a, &b).unwrap();
//! assert_eq!(sum, vector_add::reference(&a, &b));
//! ```

pub mod act;
pub mod attention;
pub mod check;
pub mod embed;
pub mod family;
pub mod fp8;
pub mod gemm;
pub mod gemm_tc;
pub mod int4;
pub mod loss;
pub mod norm;
pub mod operand;
pub mod optim;
pub mod prepack;
pub mod reduce;
pub mod rope;
pub mod softmax;
pub mod tile;
pub mod vector_add;

pub use family::{Case, Kernel, LibraryKernel, ModelShape};

use std::sync::OnceLock;
use warpforge_dsl::KernelDef;

/// The families, one registration line each: each module's `kernels()` lists its kernels
/// (every instance of its generic sources), described once in the module
/// ([`family`] says what a description holds).
const FAMILIES: &[fn() -> Vec<Kernel>] = &[
    vector_add::kernels,
    reduce::kernels,
    gemm::kernels,
    softmax::kernels,
    gemm_tc::kernels,
    fp8::kernels,
    fp8::gemm::kernels,
    fp8::coat::kernels,
    norm::kernels,
    attention::kernels,
    act::kernels,
    rope::kernels,
    prepack::kernels,
    int4::kernels,
    loss::kernels,
    norm::backward_kernels,
    embed::kernels,
    optim::kernels,
    norm::layernorm_backward_kernels,
    attention::backward_kernels,
];

/// Every kernel of the library, in registration order.
pub fn library() -> Vec<Kernel> {
    static LIBRARY: OnceLock<Vec<Kernel>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| FAMILIES.iter().flat_map(|kernels| kernels()).collect())
        .clone()
}

/// The library's kernels grouped by generic source: the instances of one
/// `#[kernel(types(..))]` fn (same file and line) differ only in element types, so tests
/// can cover one instance's whole space and sample the others. Library order.
pub fn families() -> Vec<Vec<Kernel>> {
    let mut out: Vec<Vec<Kernel>> = Vec::new();
    let site = |d: &KernelDef| (d.file.clone(), d.line);
    for k in library() {
        match out.iter_mut().find(|f| site(f[0].def()) == site(k.def())) {
            Some(family) => family.push(k),
            None => out.push(vec![k]),
        }
    }
    out
}

/// The library kernel called `name`.
pub fn find(name: &str) -> Option<Kernel> {
    library().into_iter().find(|k| k.name() == name)
}
