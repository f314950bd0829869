//! The interpreter's sanitizer, end to end: each kernel here is seeded with exactly one bug
//! of a class the interpreter reports, and has a fixed twin that runs clean. Reports are
//! checked in full; source lines are found through `// @name` markers in this file.

use warpforge::dsl::interp::InterpOptions;
use warpforge::prelude::*;
use warpforge::{device, kernel};

const FILE: &str = "tests/sanitizer.rs";

/// The line of this file that holds the marker `// @{name}` (at its end, where rustfmt
/// allows).
fn line(name: &str) -> u32 {
    let marker = format!("// @{name}");
    let mut hits = include_str!("sanitizer.rs")
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split(' ').any(|w| w == format!("@{name}")) && l.contains(&marker));
    let (i, _) = hits.next().unwrap_or_else(|| panic!("no marker {marker}"));
    assert!(hits.next().is_none(), "marker {marker} is not unique");
    i as u32 + 1
}

fn at(name: &str) -> String {
    format!("{FILE}:{}", line(name))
}

/// Launches a one-buffer kernel over one block of `threads` threads.
fn launch1(
    device: &Device,
    threads: u32,
    run: impl FnOnce(&Device, LaunchDims, &mut Buffer<f32>) -> Result<(), warpforge::dsl::Error>,
) -> Result<Vec<f32>, String> {
    let mut out = device.zeros::<f32>(threads as usize).unwrap();
    run(device, LaunchDims::linear(1, threads), &mut out).map_err(|e| e.to_string())?;
    Ok(device.download(&out).unwrap())
}

// ---- Out of bounds: shared and local arrays (global: tests/dsl.rs) ----------------------

#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn shared_past_the_end<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(64);
    let t = thread_idx_x();
    tile[(t + 1 - FIXED) % 65] = t as f32; // @shared-oob
    sync_threads();
    out[t] = tile[t];
}

#[test]
fn an_out_of_bounds_shared_write_is_reported() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 64, |d, dims, out| {
        shared_past_the_end::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel shared_past_the_end: out-of-bounds write of tile[64] (length 64) by thread \
             (63,0,0) of block (0,0,0) at {}",
            at("shared-oob")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 64, |d, dims, out| {
        shared_past_the_end::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert_eq!(out, (0..64).map(|t| t as f32).collect::<Vec<_>>());
}

#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn local_past_the_end<const FIXED: u32>(out: &mut [f32]) {
    let mut acc = local_array::<f32>(4);
    let t = thread_idx_x();
    for k in 0..5 - FIXED {
        acc[k] = k as f32; // @local-oob
    }
    out[t] = acc[3];
}

#[test]
fn an_out_of_bounds_local_write_is_reported() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 32, |d, dims, out| {
        local_past_the_end::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel local_past_the_end: out-of-bounds write of acc[4] (length 4) by thread \
             (0,0,0) of block (0,0,0) at {}",
            at("local-oob")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 32, |d, dims, out| {
        local_past_the_end::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert!(out.iter().all(|&v| v == 3.0));
}

// ---- Shared-memory races ------------------------------------------------------------------

/// Each thread publishes its index and reads its right neighbour's; the seeded bug is the
/// missing barrier between the two (read-after-write by another thread).
#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn rotate<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(64);
    let t = thread_idx_x();
    tile[t] = t as f32; // @rotate-write
    if FIXED == 1 {
        sync_threads();
    }
    out[t] = tile[(t + 1) % 64]; // @rotate-read
}

#[test]
fn a_read_after_another_threads_write_without_a_barrier_is_a_race() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 64, |d, dims, out| {
        rotate::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel rotate: data race on shared array `tile`[1] in block (0,0,0): thread \
             (1,0,0) wrote it at {}, then thread (0,0,0) read it at {}, with no \
             sync_threads() between; put a sync_threads() between the two accesses, or give \
             each thread its own element",
            at("rotate-write"),
            at("rotate-read")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 64, |d, dims, out| {
        rotate::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert_eq!(
        out,
        (0..64).map(|t| ((t + 1) % 64) as f32).collect::<Vec<_>>()
    );
}

/// A stencil that updates in place: the write of `tile[t]` races with the left neighbour's
/// earlier read of it unless a barrier separates reads from writes (write-after-read).
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn smooth_in_place<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(33);
    let t = thread_idx_x();
    tile[t] = t as f32;
    if t == 0 {
        tile[32] = 32.0;
    }
    sync_threads();
    let right = tile[t + 1]; // @smooth-read
    if FIXED == 1 {
        sync_threads();
    }
    tile[t] = (tile[t] + right) * 0.5; // @smooth-write
    sync_threads();
    out[t] = tile[t];
}

#[test]
fn a_write_after_another_threads_read_without_a_barrier_is_a_race() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 32, |d, dims, out| {
        smooth_in_place::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel smooth_in_place: data race on shared array `tile`[1] in block (0,0,0): \
             thread (0,0,0) read it at {}, then thread (1,0,0) wrote it at {}, with no \
             sync_threads() between; put a sync_threads() between the two accesses, or give \
             each thread its own element",
            at("smooth-read"),
            at("smooth-write")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 32, |d, dims, out| {
        smooth_in_place::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert_eq!(out, (0..32).map(|t| t as f32 + 0.5).collect::<Vec<_>>());
}

/// Stores `v` at `tile[i]`: the racing write sits in a device function.
#[device]
fn publish(tile: &mut [f32], i: u32, v: f32) {
    tile[i] = v; // @publish
}

/// Every thread writes slot `t / 2`: pairs of threads write the same word
/// (write-after-write), unless each thread gets its own slot.
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn pairs_collide<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(32);
    let t = thread_idx_x();
    let slot = if FIXED == 1 { t } else { t / 2 };
    publish(&mut tile, slot, t as f32);
    sync_threads();
    out[t] = tile[t];
}

#[test]
fn two_threads_writing_one_word_race_and_device_function_lines_are_named() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 32, |d, dims, out| {
        pairs_collide::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    let site = format!("line {} in device function publish", line("publish"));
    assert_eq!(
        err,
        format!(
            "kernel pairs_collide: data race on shared array `tile`[0] in block (0,0,0): \
             thread (0,0,0) wrote it at {site}, then thread (1,0,0) wrote it at {site}, with \
             no sync_threads() between; put a sync_threads() between the two accesses, or \
             give each thread its own element"
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 32, |d, dims, out| {
        pairs_collide::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert_eq!(out, (0..32).map(|t| t as f32).collect::<Vec<_>>());
}

/// The classic warp-synchronous tail of a reduction: lanes read what other lanes wrote with
/// no barrier, relying on the warp running in lockstep. Not guaranteed since Volta, and
/// reported; the fixed twin reduces with shuffles.
#[kernel(block = (32), tune(SHUFFLE = [0, 1]))]
fn warp_tail<const SHUFFLE: u32>(out: &mut [f32]) {
    let mut partial = shared_array::<f32>(64);
    let t = thread_idx_x();
    let mut v = t as f32;
    if SHUFFLE == 1 {
        for k in 0..5u32 {
            v += warp_shfl_xor(v, 16u32 >> k);
        }
    } else {
        partial[t] = v;
        partial[t + 32] = 0.0;
        sync_threads();
        for k in 0..5u32 {
            v += partial[t + (16u32 >> k)]; // @tail-read
            partial[t] = v; // @tail-write
        }
    }
    out[t] = v;
}

#[test]
fn warp_synchronous_shared_memory_is_reported_and_shuffles_are_the_fix() {
    let device = Device::cpu();
    let bad = Config::new().with("SHUFFLE", 0);
    let err = launch1(&device, 32, |d, dims, out| {
        warp_tail::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel warp_tail: data race on shared array `partial`[16] in block (0,0,0): \
             thread (0,0,0) read it at {}, then thread (16,0,0) wrote it at {}, with no \
             sync_threads() between; put a sync_threads() between the two accesses, or give \
             each thread its own element",
            at("tail-read"),
            at("tail-write"),
        )
    );
    let fixed = Config::new().with("SHUFFLE", 1);
    let out = launch1(&device, 32, |d, dims, out| {
        warp_tail::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert!(out.iter().all(|&v| v == 496.0), "{out:?}");
}

// ---- Atomics and global memory ---------------------------------------------------------

/// Every thread counts itself with an atomic (not a race); the seeded bug reads the
/// counter in the same barrier interval.
#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn count_threads<const FIXED: u32>(out: &mut [u32]) {
    let mut count = shared_array::<u32>(1);
    let t = thread_idx_x();
    if t == 0 {
        count[0] = 0;
    }
    sync_threads();
    atomic_add(&mut count, 0, 1u32); // @count-atomic
    if FIXED == 1 {
        sync_threads();
    }
    out[t] = count[0]; // @count-read
}

#[test]
fn atomics_do_not_race_with_each_other_but_do_with_plain_reads() {
    let device = Device::cpu();
    let run = |fixed: i64| {
        let mut out = device.zeros::<u32>(64).unwrap();
        let config = Config::new().with("FIXED", fixed);
        count_threads::launch(&device, &config, LaunchDims::linear(1, 64), &mut out)
            .map(|()| device.download(&out).unwrap())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        run(0).unwrap_err(),
        format!(
            "kernel count_threads: data race on shared array `count`[0] in block (0,0,0): \
             thread (1,0,0) atomically updated it at {}, then thread (0,0,0) read it at {}, \
             with no sync_threads() between; put a sync_threads() between the two accesses, \
             or give each thread its own element",
            at("count-atomic"),
            at("count-read")
        )
    );
    assert_eq!(run(1).unwrap(), vec![64; 64]);
}

/// Threads of one block write one global element (write-after-write on global memory);
/// the fix keeps a single writer. Blocks write their own element.
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn last_writer_wins<const FIXED: u32>(out: &mut [u32]) {
    let t = thread_idx_x();
    if FIXED == 0 || t == 31 {
        out[block_idx_x()] = t; // @last-writer
    }
}

#[test]
fn threads_of_a_block_writing_one_global_element_race() {
    let device = Device::cpu();
    let run = |fixed: i64| {
        let mut out = device.zeros::<u32>(4).unwrap();
        let config = Config::new().with("FIXED", fixed);
        last_writer_wins::launch(&device, &config, LaunchDims::linear(4, 32), &mut out)
            .map(|()| device.download(&out).unwrap())
            .map_err(|e| e.to_string())
    };
    let site = at("last-writer");
    assert_eq!(
        run(0).unwrap_err(),
        format!(
            "kernel last_writer_wins: data race on global buffer `out`[0] in block (0,0,0): \
             thread (0,0,0) wrote it at {site}, then thread (1,0,0) wrote it at {site}, with \
             no sync_threads() between; put a sync_threads() between the two accesses, or \
             give each thread its own element"
        )
    );
    assert_eq!(run(1).unwrap(), vec![31; 4]);
    // The fast options skip race detection: the seeded kernel runs (last lane wins).
    let fast = Device::cpu_with(InterpOptions::fast());
    let mut out = fast.zeros::<u32>(4).unwrap();
    let bad = Config::new().with("FIXED", 0);
    last_writer_wins::launch(&fast, &bad, LaunchDims::linear(4, 32), &mut out).unwrap();
    assert_eq!(fast.download(&out).unwrap(), vec![31; 4]);
}

// ---- Collective divergence -------------------------------------------------------------

/// A barrier inside a branch only the first half of the block takes.
#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn half_barrier<const FIXED: u32>(out: &mut [f32]) {
    let t = thread_idx_x();
    if t < 32 || FIXED == 1 {
        sync_threads(); // @half-barrier
    }
    out[t] = 1.0;
}

#[test]
fn a_barrier_reached_by_half_the_block_names_both_halves() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 64, |d, dims, out| {
        half_barrier::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel half_barrier: sync_threads() in block (0,0,0) is reached by threads \
             [(0,0,0), (1,0,0), (2,0,0), (3,0,0), (4,0,0), (5,0,0), (6,0,0), (7,0,0) and 24 \
             more] but not by threads [(32,0,0), (33,0,0), (34,0,0), (35,0,0), (36,0,0), \
             (37,0,0), (38,0,0), (39,0,0) and 24 more] (the barrier is at {}); every thread \
             of the block that has not exited must reach the same sync_threads() (move the \
             barrier out of the divergent branch or loop)",
            at("half-barrier")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 64, |d, dims, out| {
        half_barrier::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert!(out.iter().all(|&v| v == 1.0));
}

/// A shuffle that only the even lanes execute.
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn even_lanes_shuffle<const FIXED: u32>(out: &mut [f32]) {
    let t = thread_idx_x();
    let mut v = t as f32;
    if t % 2 == 0 || FIXED == 1 {
        v = warp_shfl_xor(v, 1u32); // @even-shuffle
    }
    out[t] = v;
}

#[test]
fn a_shuffle_reached_by_some_lanes_names_the_warp_and_lanes() {
    let device = Device::cpu();
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&device, 32, |d, dims, out| {
        even_lanes_shuffle::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    let even: Vec<u32> = (0..32).step_by(2).collect();
    let odd: Vec<u32> = (1..32).step_by(2).collect();
    assert_eq!(
        err,
        format!(
            "kernel even_lanes_shuffle: warp_shfl_xor in warp 0 of block (0,0,0) is reached \
             by lanes {even:?} but not by lanes {odd:?} (at {}); all lanes of the warp that \
             have not exited must execute it together",
            at("even-shuffle")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&device, 32, |d, dims, out| {
        even_lanes_shuffle::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert_eq!(out, (0..32).map(|t| (t ^ 1) as f32).collect::<Vec<_>>());
}

// ---- Reads of shared memory never written (opt-in) -------------------------------------

/// Only even threads fill the tile, but every thread reads its own slot.
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn half_filled<const FIXED: u32>(out: &mut [f32]) {
    let mut tile = shared_array::<f32>(32);
    let t = thread_idx_x();
    if t % 2 == 0 || FIXED == 1 {
        tile[t] = 2.0;
    }
    sync_threads();
    out[t] = tile[t]; // @half-read
}

#[test]
fn a_read_of_shared_memory_never_written_is_reported_on_request() {
    let checked = Device::cpu_with(InterpOptions {
        uninit_shared_reads: true,
        ..InterpOptions::default()
    });
    let bad = Config::new().with("FIXED", 0);
    let err = launch1(&checked, 32, |d, dims, out| {
        half_filled::launch(d, &bad, dims, out)
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "kernel half_filled: thread (1,0,0) of block (0,0,0) reads shared array \
             `tile`[1] at {}, which no thread of the block has written in this launch; shared \
             memory starts undefined on a GPU, so write the element before reading it",
            at("half-read")
        )
    );
    let fixed = Config::new().with("FIXED", 1);
    let out = launch1(&checked, 32, |d, dims, out| {
        half_filled::launch(d, &fixed, dims, out)
    })
    .unwrap();
    assert!(out.iter().all(|&v| v == 2.0));
    // Off by default: the poison is read (a NaN in f32), and zeros without the poison.
    let out = launch1(&Device::cpu(), 32, |d, dims, out| {
        half_filled::launch(d, &bad, dims, out)
    })
    .unwrap();
    assert!(out[1].is_nan(), "{}", out[1]);
    assert_eq!(out[0], 2.0);
    let zeroed = Device::cpu_with(InterpOptions {
        poison_shared: false,
        ..InterpOptions::default()
    });
    let out = launch1(&zeroed, 32, |d, dims, out| {
        half_filled::launch(d, &bad, dims, out)
    })
    .unwrap();
    assert_eq!(out[1], 0.0);
}

// ---- Poisoned shared memory (default) ----------------------------------------------------

/// A block-wide histogram of `values` into 8 bins; the seeded bug never zeroes the bins.
#[kernel(block = (64), tune(FIXED = [0, 1]))]
fn histogram8<const FIXED: u32>(values: &[u32], bins: &mut [u32], n: u32) {
    let mut local = shared_array::<u32>(8);
    let t = thread_idx_x();
    if FIXED == 1 && t < 8 {
        local[t] = 0;
    }
    sync_threads();
    let mut i = t;
    while i < n {
        atomic_add(&mut local, values[i] % 8, 1);
        i += 64;
    }
    sync_threads();
    if t < 8 {
        bins[t] = local[t];
    }
}

#[test]
fn a_histogram_that_forgets_to_zero_its_bins_fails_on_poisoned_shared_memory() {
    let values: Vec<u32> = (0..200).map(|v| v * 7 + 3).collect();
    let mut expected = [0u32; 8];
    values.iter().for_each(|v| expected[(v % 8) as usize] += 1);
    let run = |device: &Device, fixed: i64| {
        let x = device.upload(&values).unwrap();
        let mut bins = device.zeros::<u32>(8).unwrap();
        let config = Config::new().with("FIXED", fixed);
        histogram8::launch(
            device,
            &config,
            LaunchDims::linear(1, 64),
            &x,
            &mut bins,
            200,
        )
        .unwrap();
        device.download(&bins).unwrap()
    };
    // Every bin starts at u32::MAX: each count comes out one short (wrapped).
    let poisoned = run(&Device::cpu(), 0);
    assert_ne!(poisoned, expected);
    assert_eq!(poisoned[0], expected[0].wrapping_sub(1));
    assert_eq!(run(&Device::cpu(), 1), expected);
    // Zeroed shared memory hides the bug, which is why the poison is the default.
    let zeroed = Device::cpu_with(InterpOptions {
        poison_shared: false,
        ..InterpOptions::default()
    });
    assert_eq!(run(&zeroed, 0), expected);
}

// ---- The step budget -------------------------------------------------------------------

/// Counts to `stop`; the seeded bug keeps thread 3 looping forever.
#[kernel(block = (32), tune(FIXED = [0, 1]))]
fn count_to<const FIXED: u32>(out: &mut [u32], stop: u32) {
    let t = thread_idx_x();
    let mut n = 0u32;
    // @count-loop (marks the next line)
    loop {
        if n >= stop && (t != 3 || FIXED == 1) {
            break;
        }
        n += 1;
    }
    out[t] = n;
}

#[test]
fn a_block_past_its_step_budget_stops_naming_a_thread_still_looping() {
    let device = Device::cpu_with(InterpOptions {
        step_budget: 1 << 20,
        ..InterpOptions::default()
    });
    let run = |fixed: i64| {
        let mut out = device.zeros::<u32>(32).unwrap();
        let config = Config::new().with("FIXED", fixed);
        count_to::launch(&device, &config, LaunchDims::linear(1, 32), &mut out, 100)
            .map(|()| device.download(&out).unwrap())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        run(0).unwrap_err(),
        format!(
            "kernel count_to: block (0,0,0) ran past the step budget of 1048576 thread-steps; \
             thread (3,0,0) is still in the loop at {FILE}:{} (an infinite loop?). If the \
             kernel really needs more, raise InterpOptions::step_budget",
            line("count-loop") + 1
        )
    );
    assert_eq!(run(1).unwrap(), vec![100; 32]);
}

/// `loop {}` with an empty body (no instruction to count, only iterations): an error, not
/// a hang.
#[kernel(block = (1), tune(UNUSED = [1]))]
fn spin_forever<const UNUSED: u32>(out: &mut [u32]) {
    out[0] = 1;
    loop {}
}

#[test]
fn an_empty_infinite_loop_ends_with_an_error() {
    let device = Device::cpu_with(InterpOptions {
        step_budget: 1 << 24,
        ..InterpOptions::default()
    });
    let mut out = device.zeros::<u32>(1).unwrap();
    let config = spin_forever::default_config();
    let err = spin_forever::launch(&device, &config, LaunchDims::linear(1, 1), &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ran past the step budget of 16777216"),
        "{err}"
    );
    assert!(err.contains("thread (0,0,0) is still in the loop"), "{err}");
}
