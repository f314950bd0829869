//! Helpers shared by the autotuner's integration tests.
#![allow(dead_code)]

use std::path::Path;
use warpforge_autotune::strategy::Exhaustive;
use warpforge_autotune::{
    Bench, Candidate, Config, DeviceKey, ProblemReport, ProblemShape, Pruning, TuneCache,
    TuneKernel, TuneOptions, Tuner,
};

pub fn device() -> DeviceKey {
    DeviceKey {
        name: "NVIDIA Test GPU".into(),
        arch: "sm_90".into(),
        sms: 132,
        driver: "12.8".into(),
        nvrtc: "12.9".into(),
        warpforge: "0.1.0".into(),
    }
}

pub fn kernel(name: &str) -> TuneKernel {
    TuneKernel::new(warpforge_kernels::find(name).unwrap()).unwrap()
}

/// Every given config kept, as if NVRTC had found them all fit.
pub fn kept(configs: &[Config]) -> Pruning {
    Pruning {
        kept: configs
            .iter()
            .map(|c| Candidate {
                config: c.clone(),
                resources: Default::default(),
                dynamic_shared_bytes: 0,
                threads: 256,
                occupancy: 1.0,
            })
            .collect(),
        pruned: Vec::new(),
    }
}

/// vector_add's whole space (9 configs): small enough to be searched exhaustively.
pub fn vector_add_space() -> (TuneKernel, Vec<Config>) {
    let k = kernel("vector_add");
    let space = k.space();
    assert_eq!(space.len(), 9);
    (k, space)
}

pub fn shape(kernel: &str, dims: &[usize]) -> ProblemShape {
    ProblemShape::new(kernel, dims.to_vec(), "test")
}

/// Tunes one problem, opening the cache in `dir` and saving it.
pub fn tune_once(
    dir: &Path,
    bench: &mut dyn Bench,
    kernel: &TuneKernel,
    shape: &ProblemShape,
    pruning: &Pruning,
    options: TuneOptions,
) -> ProblemReport {
    let mut cache = TuneCache::open(dir, &device()).unwrap();
    let mut tuner = Tuner::new(bench, &mut cache, options);
    tuner.tune(kernel, shape, pruning, &mut Exhaustive).unwrap()
}

/// A fast sampling policy for the fake device.
pub fn quick() -> TuneOptions {
    TuneOptions {
        policy: warpforge_autotune::SamplePolicy {
            warmup: 1,
            min_samples: 5,
            max_samples: 40,
            target_spread: 0.01,
            max_time: std::time::Duration::from_secs(5),
        },
        deadline: None,
    }
}
