//! The optimizers (`lamb_update`, `lamb_trust`, `lamb_apply`, `adamw_step`) on the CPU
//! interpreter: every config at the family's check problems, ten LAMB and AdamW steps
//! against the f64 references step by step, the trust ratio's edge cases (zero weights,
//! zero update, excluded tensors), bias correction at step 1, run-to-run bit equality, and
//! NVRTC compiles of the defaults.

mod train_support;

use train_support::{check_whole_space, compile_defaults, kernel};
use warpforge::dsl::Device;
use warpforge::kernels::family::Lcg;
use warpforge::kernels::optim::host::{
    adamw_reference, lamb_reference, launch_adamw, launch_lamb, DeviceTables, HostState, Hyper,
    LambPlan, LambScratch, OptimError, ParamTable, State,
};

const NAMES: [&str; 4] = ["lamb_update", "lamb_trust", "lamb_apply", "adamw_step"];

#[test]
fn whole_space_of_every_kernel_matches_the_reference() {
    let runs = check_whole_space(&NAMES);
    println!("{runs} (kernel, config, problem) runs within tolerance");
}

/// A model-like table: matrices (adapted) and biases/norm weights (excluded).
fn model_table() -> ParamTable {
    ParamTable::new(&[
        (300, true),
        (17, false),
        (2049, true),
        (6, false),
        (90, true),
    ])
    .unwrap()
}

fn host_state(table: &ParamTable, seed: u64) -> HostState {
    let mut rng = Lcg::for_dims(&[table.len], seed);
    let w = table.fill(|_, _| rng.float(1.0));
    HostState {
        w: w.iter().map(|&x| x as f64).collect(),
        grad: vec![0.0; table.len],
        m: vec![0.0; table.len],
        v: vec![0.0; table.len],
    }
}

fn upload(device: &Device, s: &HostState) -> State {
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    State {
        w: device.upload(&narrow(&s.w)).unwrap(),
        grad: device.upload(&narrow(&s.grad)).unwrap(),
        m: device.upload(&narrow(&s.m)).unwrap(),
        v: device.upload(&narrow(&s.v)).unwrap(),
    }
}

/// The largest error of `got` against `want` relative to max(|want|, 1e-3).
fn worst(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1e-3))
        .fold(0.0, f64::max)
}

/// Ten steps with fresh gradients each step, the kernels' state against the f64
/// reference's after every step (f32 state, so the reference is fed the kernel's f32
/// gradients; the weights and moments drift only by f32 rounding).
fn ten_steps(lamb: bool) -> f64 {
    let device = Device::cpu();
    let table = model_table();
    let mut host = host_state(&table, 9);
    let mut state = upload(&device, &host);
    let defaults = |name: &str| kernel(name).default_config();
    let (update, trust, apply) = (
        defaults("lamb_update"),
        defaults("lamb_trust"),
        defaults("lamb_apply"),
    );
    let adamw = defaults("adamw_step");
    let tables_update = DeviceTables::upload(&device, &table, &update).unwrap();
    let tables_apply = DeviceTables::upload(&device, &table, &apply).unwrap();
    let tables_adamw = DeviceTables::upload(&device, &table, &adamw).unwrap();
    let mut scratch = LambScratch::new(&device, &tables_update).unwrap();
    let mut rng = Lcg::for_dims(&[table.len], 10);
    let mut largest = 0.0f64;
    for step in 1..=10 {
        let grad = table.fill(|_, _| rng.float(1.0));
        state.grad = device.upload(&grad).unwrap();
        host.grad = grad.iter().map(|&g| g as f64).collect();
        let hyper = Hyper::lamb(0.01, step);
        if lamb {
            let plan = LambPlan {
                update: (&update, &tables_update),
                trust: &trust,
                apply: (&apply, &tables_apply),
            };
            launch_lamb(&device, &plan, &mut state, &mut scratch, &hyper).unwrap();
            lamb_reference(&table, &mut host, &hyper);
        } else {
            launch_adamw(&device, &adamw, &mut state, &tables_adamw, &hyper).unwrap();
            adamw_reference(&table, &mut host, &hyper);
        }
        for (what, got, want) in [
            ("w", &state.w, &host.w),
            ("m", &state.m, &host.m),
            ("v", &state.v, &host.v),
        ] {
            let err = worst(&device.download(got).unwrap(), want);
            assert!(err < 2e-5, "lamb={lamb} step {step} {what}: {err:.2e}");
            largest = largest.max(err);
        }
    }
    largest
}

#[test]
fn lamb_tracks_the_f64_reference_for_ten_steps() {
    println!("LAMB, 10 steps: max relative error {:.2e}", ten_steps(true));
}

#[test]
fn adamw_tracks_the_f64_reference_for_ten_steps() {
    println!(
        "AdamW, 10 steps: max relative error {:.2e}",
        ten_steps(false)
    );
}

/// τ = 1 for zero weights, for a zero update and for an excluded tensor; ‖w‖/‖u‖ otherwise.
#[test]
fn trust_ratio_edge_cases() {
    let device = Device::cpu();
    // Tensors: zero weights; zero weights and zero gradient (u = 0); excluded; ordinary.
    let table = ParamTable::new(&[(8, true), (8, true), (8, false), (8, true)]).unwrap();
    let mut rng = Lcg::for_dims(&[32], 12);
    let w = table.fill(|k, _| if k < 2 { 0.0 } else { rng.float(1.0) });
    let g = table.fill(|k, _| if k == 1 { 0.0 } else { rng.float(1.0) });
    let mut host = HostState {
        w: w.iter().map(|&x| x as f64).collect(),
        grad: g.iter().map(|&x| x as f64).collect(),
        m: vec![0.0; table.len],
        v: vec![0.0; table.len],
    };
    let mut state = upload(&device, &host);
    let config = kernel("lamb_update").default_config();
    let tables = DeviceTables::upload(&device, &table, &config).unwrap();
    let mut scratch = LambScratch::new(&device, &tables).unwrap();
    let plan = LambPlan {
        update: (&config, &tables),
        trust: &kernel("lamb_trust").default_config(),
        apply: (&config, &tables),
    };
    let hyper = Hyper::lamb(0.01, 1);
    launch_lamb(&device, &plan, &mut state, &mut scratch, &hyper).unwrap();
    let ratios = lamb_reference(&table, &mut host, &hyper);
    let got = device.download(&scratch.ratio).unwrap();
    assert_eq!(&got[..3], &[1.0, 1.0, 1.0]);
    assert_eq!(&ratios[..3], &[1.0, 1.0, 1.0]);
    assert!(ratios[3] != 1.0 && (got[3] as f64 - ratios[3]).abs() < 1e-6 * ratios[3]);
    // The zero tensor with zero gradient does not move; the excluded one has no decay.
    let w_after = device.download(&state.w).unwrap();
    assert!(w_after[8..16].iter().all(|&x| x == 0.0));
}

/// At step 1 from zero moments, m̂ = g and v̂ = g², so AdamW moves each weight by
/// lr·(g/(|g| + ε) + λw): bias correction on.
#[test]
fn adamw_bias_correction_at_step_one() {
    let device = Device::cpu();
    let table = ParamTable::new(&[(5, true)]).unwrap();
    let w = vec![0.5f32, -0.25, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0];
    let g = vec![0.1f32, -2.0, 1e-3, 3.0, -0.5, 0.0, 0.0, 0.0];
    let mut state = State {
        w: device.upload(&w).unwrap(),
        grad: device.upload(&g).unwrap(),
        m: device.zeros(8).unwrap(),
        v: device.zeros(8).unwrap(),
    };
    let config = kernel("adamw_step").default_config();
    let tables = DeviceTables::upload(&device, &table, &config).unwrap();
    let hyper = Hyper::lamb(0.01, 1);
    launch_adamw(&device, &config, &mut state, &tables, &hyper).unwrap();
    let got = device.download(&state.w).unwrap();
    for i in 0..5 {
        let (wi, gi) = (w[i] as f64, g[i] as f64);
        let want = wi - 0.01 * (gi / (gi.abs() + 1e-6) + 0.01 * wi);
        assert!(
            (got[i] as f64 - want).abs() < 1e-6,
            "{i}: {} vs {want}",
            got[i]
        );
    }
    assert_eq!(&got[5..], &[0.0; 3], "padding stays zero");
}

#[test]
fn lamb_step_is_bit_reproducible() {
    let device = Device::cpu();
    let table = model_table();
    let host = host_state(&table, 13);
    let mut rng = Lcg::for_dims(&[table.len], 14);
    let grad = table.fill(|_, _| rng.float(1.0));
    let run = || {
        let mut state = upload(&device, &host);
        state.grad = device.upload(&grad).unwrap();
        let config = kernel("lamb_update").default_config();
        let tables = DeviceTables::upload(&device, &table, &config).unwrap();
        let mut scratch = LambScratch::new(&device, &tables).unwrap();
        let plan = LambPlan {
            update: (&config, &tables),
            trust: &kernel("lamb_trust").default_config(),
            apply: (&config, &tables),
        };
        launch_lamb(
            &device,
            &plan,
            &mut state,
            &mut scratch,
            &Hyper::lamb(0.01, 1),
        )
        .unwrap();
        let w = device.download(&state.w).unwrap();
        w.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn layout_pads_tensors_and_refuses_oversized_buffers() {
    let table = ParamTable::new(&[(5, true), (3, false), (4, true)]).unwrap();
    let offsets: Vec<usize> = table.tensors.iter().map(|t| t.offset).collect();
    assert_eq!((offsets, table.len), (vec![0, 8, 12], 16));
    let chunks = table.chunk_tables(4);
    assert_eq!(chunks.chunk_tensor, [0, 0, 1, 2]);
    assert_eq!(chunks.tensors, [0, 5, 1, 0, 8, 3, 0, 2, 12, 4, 1, 3]);
    assert_eq!(
        ParamTable::new(&[(1 << 31, true), (1 << 31, true)]),
        Err(OptimError::TooLarge(1 << 32))
    );
}

/// The default configs compile with NVRTC without spilling (see [`compile_defaults`]).
#[test]
fn default_configs_compile_with_nvrtc() {
    compile_defaults(&NAMES);
}
