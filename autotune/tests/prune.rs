//! Pruning by compiled resource usage: scripted usage for every rule, and the library's
//! spaces through NVRTC when it is installed.

use warpforge_autotune::prune::{apply_limits, prune_space, CompiledConfig};
use warpforge_autotune::{Config, Limits, PruneReason, TuneKernel};
use warpforge_dsl::nvrtc::{self, Arch, ResourceUsage};

fn usage(registers: u32, shared: u32, spill: u32) -> ResourceUsage {
    ResourceUsage {
        registers,
        shared_bytes: shared,
        spill_stores_bytes: spill,
        spill_loads_bytes: spill,
        ..ResourceUsage::default()
    }
}

fn compiled(i: i64, result: Result<(ResourceUsage, u32), String>) -> CompiledConfig {
    CompiledConfig {
        config: Config::new().with("X", i),
        dynamic_shared_bytes: 0,
        result,
    }
}

/// The opt-in shared memory per block of each arch, in bytes.
const OPT_IN: [(Arch, u32); 4] = [
    (Arch::SM80, 166912),
    (Arch::new(8, 6), 101376),
    (Arch::SM89, 101376),
    (Arch::SM90, 232448),
];

#[test]
fn every_limit_drops_its_configs_with_the_reason() {
    let limits = Limits::for_arch(Arch::SM90);
    let pruning = apply_limits(
        vec![
            compiled(0, Ok((usage(32, 4096, 0), 256))),
            compiled(1, Ok((usage(32, 232448 + 4, 0), 256))),
            compiled(2, Ok((usage(256, 0, 0), 128))),
            compiled(3, Ok((usage(128, 0, 0), 1024))),
            compiled(4, Ok((usage(16, 0, 0), 2048))),
            compiled(5, Ok((usage(40, 0, 8), 128))),
            compiled(6, Err("kernel.cu(3): error: bad".into())),
            compiled(7, Ok((usage(64, 232448, 0), 1024))),
        ],
        &limits,
    );
    let kept: Vec<i64> = pruning
        .kept
        .iter()
        .map(|c| c.config.get("X").unwrap())
        .collect();
    assert_eq!(kept, [0, 7], "exactly at the limits is allowed");
    let reason = |i: i64| {
        let p = pruning.pruned.iter().find(|p| p.config.get("X") == Some(i));
        p.unwrap().reason.clone()
    };
    assert_eq!(
        reason(1),
        PruneReason::SharedMemory {
            bytes: 232452,
            limit: 232448
        }
    );
    assert!(matches!(
        reason(2),
        PruneReason::RegistersPerThread { registers: 256, .. }
    ));
    assert_eq!(
        reason(3),
        PruneReason::RegistersPerBlock {
            registers: 128,
            threads: 1024,
            total: 131072,
            limit: 65536
        }
    );
    assert!(matches!(
        reason(4),
        PruneReason::Threads { threads: 2048, .. }
    ));
    assert_eq!(
        reason(5),
        PruneReason::Spills {
            stores: 8,
            loads: 8
        }
    );
    assert!(matches!(reason(6), PruneReason::CompileFailed { .. }));
    assert_eq!(pruning.pruned.len(), 6);
    assert_eq!(
        reason(3).to_string(),
        "128 registers × 1024 threads = 131072 registers/block > 65536"
    );
    assert!(reason(6).to_string().contains("kernel.cu(3)"));
}

#[test]
fn static_plus_dynamic_shared_memory_is_held_to_each_arch_opt_in_limit() {
    for (arch, limit) in OPT_IN {
        let limits = Limits::for_arch(arch);
        assert_eq!(limits.shared_bytes_per_block, limit, "{arch}");
        // ptxas counts 1 KiB of static shared memory; the rest is dynamic.
        let with_dynamic = |i: i64, dynamic: u32| CompiledConfig {
            dynamic_shared_bytes: dynamic,
            ..compiled(i, Ok((usage(32, 1024, 0), 256)))
        };
        let pruning = apply_limits(
            vec![
                with_dynamic(0, limit - 1024),
                with_dynamic(1, limit - 1024 + 16),
                with_dynamic(2, 64 * 1024),
            ],
            &limits,
        );
        let kept: Vec<i64> = pruning
            .kept
            .iter()
            .map(|c| c.config.get("X").unwrap())
            .collect();
        assert_eq!(kept, [0, 2], "{arch}");
        assert_eq!(pruning.kept[0].shared_bytes(), limit as u64, "{arch}");
        assert_eq!(
            pruning.pruned[0].reason,
            PruneReason::SharedMemory {
                bytes: limit as u64 + 16,
                limit
            },
            "{arch}"
        );
    }
    // An arch not in the table gets the smallest opt-in limit, 99 KiB.
    for arch in [Arch::new(8, 7), Arch::new(12, 0), Arch::new(7, 5)] {
        assert_eq!(
            Limits::for_arch(arch).shared_bytes_per_block,
            101376,
            "{arch}"
        );
    }
}

#[test]
fn register_allocation_rounds_per_warp() {
    // 65 registers allocate as 72; 96 threads are 3 warps.
    assert_eq!(Limits::block_registers(65, 96), 3 * 32 * 72);
    assert_eq!(Limits::block_registers(64, 1024), 65536);
    let pruning = apply_limits(
        vec![compiled(0, Ok((usage(65, 0, 0), 1000)))],
        &Limits::for_arch(Arch::SM80),
    );
    assert!(
        pruning.kept.is_empty(),
        "65 regs round to 72: 72 × 1024 > 64K"
    );
}

#[test]
fn spilling_configs_are_kept_when_all_spill() {
    let limits = Limits::for_arch(Arch::SM80);
    let pruning = apply_limits(
        vec![
            compiled(0, Ok((usage(255, 0, 16), 128))),
            compiled(1, Ok((usage(255, 0, 64), 128))),
            compiled(2, Ok((usage(255, 200 * 1024, 0), 128))),
        ],
        &limits,
    );
    assert_eq!(pruning.kept.len(), 2);
    assert_eq!(pruning.pruned.len(), 1);
    assert!(matches!(
        pruning.pruned[0].reason,
        PruneReason::SharedMemory { .. }
    ));
}

#[test]
fn library_spaces_compile_in_parallel_and_defaults_survive() {
    if let Err(e) = nvrtc::supported_archs() {
        eprintln!("skipping: NVRTC is not installed here ({e})");
        return;
    }
    // One instance per generic source: the others differ only in element types.
    for family in warpforge_kernels::families() {
        let kernel = TuneKernel::new(family[0]).unwrap();
        for arch in [Arch::SM80, Arch::SM90] {
            if let Some(why) = kernel.unsupported_on(arch) {
                // Every config is refused before NVRTC, naming the intrinsic.
                let pruning = prune_space(&kernel, arch).unwrap();
                assert!(pruning.kept.is_empty(), "{why}");
                assert!(
                    pruning
                        .pruned
                        .iter()
                        .all(|p| p.reason.to_string().contains("needs sm_89")),
                    "{why}"
                );
                continue;
            }
            let pruning = prune_space(&kernel, arch).unwrap();
            assert_eq!(
                pruning.kept.len() + pruning.pruned.len(),
                kernel.space().len(),
                "{} on {arch}: every config is kept or pruned",
                kernel.name()
            );
            let default = kernel.default_config();
            assert!(
                pruning.kept.iter().any(|c| c.config == default),
                "{} on {arch}: the default is kept; pruned: {:?}",
                kernel.name(),
                pruning.pruned
            );
            for c in &pruning.kept {
                assert!(c.resources.registers > 0 && c.threads >= 32, "{c:?}");
            }
        }
    }
}

#[test]
fn an_arch_nvrtc_lacks_is_an_error_not_a_pruned_space() {
    if let Err(e) = nvrtc::supported_archs() {
        eprintln!("skipping: NVRTC is not installed here ({e})");
        return;
    }
    let kernel = TuneKernel::new(warpforge_kernels::find("vector_add").unwrap()).unwrap();
    let err = prune_space(&kernel, Arch::new(3, 0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sm_30"), "{err}");
}

#[test]
fn occupancy_is_the_scarcest_resource_per_sm() {
    let h100 = Limits::for_arch(Arch::SM90);
    // 256 threads (8 warps) of 32 registers: 8 blocks fill the 64 warp slots.
    assert_eq!(h100.occupancy(32, 0, 256), 1.0);
    // 64 registers: 8 × 32 × 64 = 16K per block, 4 blocks in the 64K register file.
    assert_eq!(h100.occupancy(64, 0, 256), 0.5);
    // 100 KiB of shared memory (plus 1 KiB reserved): 2 blocks in 228 KiB.
    assert_eq!(h100.occupancy(32, 100 * 1024, 256), 0.25);
    // 32 threads: the 32 block slots, not the warps, are the limit.
    assert_eq!(h100.occupancy(32, 0, 32), 0.5);
    // sm_89 holds 48 warps and 24 blocks: 6 blocks of 8 warps.
    assert_eq!(Limits::for_arch(Arch::SM89).occupancy(32, 0, 256), 1.0);
    assert_eq!(Limits::for_arch(Arch::SM89).occupancy(32, 0, 32), 0.5);
    assert_eq!(h100.occupancy(32, 0, 0), 0.0, "no declared block");
    // Pruning records it with each kept candidate.
    let pruning = apply_limits(vec![compiled(0, Ok((usage(64, 0, 0), 256)))], &h100);
    let stats = pruning.kept[0].compile_stats();
    assert_eq!(stats, [64.0, 0.0, 256.0, 0.5, 0.0]);
}
