//! Every workload on the CPU interpreter at a tiny shape: two configs agree under the
//! workload's tolerance, both equal the kernel's host reference, and the accumulating
//! ones give the same output when launched twice after one restore.

use super::*;
use crate::bench::compare;
use warpforge_dsl::prelude::{bf16, f16, F8E4M3, F8E5M2};
use warpforge_kernels::fp8::coat::reference as coat_ref;
use warpforge_kernels::fp8::reference::{self, Granularity};
use warpforge_kernels::fp8::{Fp8Float, Fp8Type};
use warpforge_kernels::gemm_tc::{self as tc, padded};

/// Runs `config` after a restore and returns the output.
fn run(w: &mut Workload, cpu: &Device, config: &Config) -> Vec<f32> {
    w.restore(cpu).unwrap();
    w.launch(cpu, config).unwrap();
    w.output(cpu, config).unwrap()
}

/// The default config and another admitted one of `kernel`'s space (the default again
/// where it is the only one: `fp8_quantize_rows_t_*`, whose only tunable is G).
fn two_configs(kernel: &str) -> (Config, Config) {
    let def = (warpforge_kernels::find(kernel).unwrap().def)();
    let default = def.space.default_config();
    let other = def
        .space
        .configs()
        .into_iter()
        .find(|c| *c != default && admits(kernel, c))
        .unwrap_or_else(|| default.clone());
    (default, other)
}

/// Builds `kernel` at `dims`, checks two configs against each other and `expected`, and
/// the restore path.
fn check(kernel: &str, dims: &[usize], expected: &[f32]) {
    let cpu = Device::cpu();
    let shape = ProblemShape::new(kernel, dims.to_vec(), "test");
    let mut w = Workload::new(&cpu, &shape).unwrap();
    let (a, b) = two_configs(kernel);
    let first = run(&mut w, &cpu, &a);
    let second = run(&mut w, &cpu, &b);
    compare(&first, &second, w.tolerance).unwrap_or_else(|e| panic!("{kernel} {b}: {e}"));
    compare(expected, &first, Tolerance::EXACT)
        .unwrap_or_else(|e| panic!("{kernel} vs the host reference: {e}"));
    if w.accumulates {
        w.restore(&cpu).unwrap();
        w.launch(&cpu, &a).unwrap();
        let again = run(&mut w, &cpu, &a);
        assert_eq!(again, first, "{kernel}: restore did not reset the state");
    }
}

fn rng(dims: &[usize]) -> Lcg {
    Lcg::for_dims(dims)
}

#[test]
fn tensor_core_gemms_match_the_reference() {
    let (m, n, k) = (20, 24, 40);
    for name in ["gemm_tc_nt_f16_f32", "gemm_tc_nn_bf16_f32"] {
        let layout = gemm_tc::layout_of(name);
        let (a, b) = gemm_tc::operands::<f32>(layout, (m, n, k), &mut rng(&[m, n, k]));
        let lds = (padded(k), layout.ldb(n, k));
        check(
            name,
            &[m, n, k],
            &tc::reference(&a, &b, layout, (m, n, k), lds),
        );
    }
}

#[test]
fn fp8_gemm_matches_the_reference() {
    let (m, n, k) = (20, 24, 300);
    let problem = warpforge_kernels::check::Problem::new("t", vec![m, n, k, 1]);
    let (ops, shape) = warpforge_kernels::fp8::gemm::inputs(&problem);
    let expected = warpforge_kernels::fp8::gemm::reference(&ops, shape);
    check("fp8_gemm_e4m3_f32", &[m, n, k], &expected);
}

fn flat_expected<T: Fp8Float, F: Fp8Type>(op: fp8::Op, rows: usize, cols: usize) -> Vec<f32> {
    let dims: Vec<usize> = if op == fp8::Op::Tensor || op == fp8::Op::Delayed {
        vec![cols]
    } else {
        vec![rows, cols]
    };
    let x: Vec<f32> = fp8::activations_as::<T>(rows, cols, &mut rng(&dims))
        .iter()
        .map(|v| v.to_f32())
        .collect();
    let g = fp8_launch::ROW_GROUP as usize;
    match op {
        fp8::Op::Tensor => reference::quantize_tensor(&x, F::FORMAT).flatten(),
        fp8::Op::Delayed => {
            let mut q = reference::quantize_with(&x, fp8::delayed_scale::<F>(&x), F::FORMAT);
            q.scales = vec![reference::amax(&x)];
            q.flatten()
        }
        fp8::Op::Rows => reference::quantize_rows(&x, rows, cols, g, F::FORMAT).flatten(),
        fp8::Op::RowsT => reference::quantize_rows_t(&x, rows, cols, g, F::FORMAT).flatten(),
        fp8::Op::Blocks => reference::quantize_blocks(&x, rows, cols, F::FORMAT).flatten(),
    }
}

fn check_pair<T: Fp8Float, F: Fp8Type>() {
    let ops = [
        ("tensor", fp8::Op::Tensor, 1, 300),
        ("delayed", fp8::Op::Delayed, 1, 300),
        ("rows", fp8::Op::Rows, 3, 260),
        ("rows_t", fp8::Op::RowsT, 130, 12),
        ("blocks", fp8::Op::Blocks, 130, 20),
    ];
    for (name, op, rows, cols) in ops {
        let kernel = format!("fp8_quantize_{name}_{}_{}", T::NAME, F::NAME);
        let dims = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        check(&kernel, &dims, &flat_expected::<T, F>(op, rows, cols));
    }
    let (rows, cols) = (3, 260);
    let q = fp8::dequant_inputs(rows, cols, &mut rng(&[rows, cols]));
    let expected: Vec<f32> =
        reference::dequantize(&q, rows, cols, Granularity::Rows { g: 128 }, F::FORMAT)
            .iter()
            .map(|&y| T::from_f32(y).to_f32())
            .collect();
    check(
        &format!("fp8_dequantize_{}_{}", F::NAME, T::NAME),
        &[rows, cols],
        &expected,
    );
}

fn check_type<T: Fp8Float>() {
    let x: Vec<f32> = fp8::activations_as::<T>(1, 300, &mut rng(&[300]))
        .iter()
        .map(|v| v.to_f32())
        .collect();
    check(
        &format!("fp8_amax_{}", T::NAME),
        &[300],
        &[reference::amax(&x)],
    );
    check_pair::<T, F8E4M3>();
    check_pair::<T, F8E5M2>();
}

#[test]
fn fp8_workloads_match_the_reference_for_every_instance() {
    check_type::<f32>();
    check_type::<f16>();
    check_type::<bf16>();
}

#[test]
fn coat_workloads_match_the_reference() {
    let n = 300;
    let x = coat::states(n, &mut rng(&[n]));
    check("coat_dre_quantize", &[n], &coat_ref::quantize(&x).flatten());
    let q = coat::random_state(n, false, &mut rng(&[n]));
    check("coat_dre_dequantize", &[n], &coat_ref::dequantize(&q));
    let mut s = coat::adamw_state(n, &mut rng(&[n]));
    let h = coat_ref::AdamW::default();
    h.step_fp8(&mut s.w, &s.g, &mut s.m, &mut s.v, coat::ADAMW_STEP);
    let mut expected = s.w;
    expected.extend(s.m.flatten());
    expected.extend(s.v.flatten());
    check("coat_adamw_step", &[n], &expected);
}

#[test]
fn row_group_configs_other_than_128_are_not_candidates_and_fail_clearly() {
    let kernel = "fp8_quantize_rows_bf16_e4m3";
    let g32 = two_configs(kernel).0.with("G", 32);
    assert!(!admits(kernel, &g32));
    assert!(admits("fp8_amax_f32", &g32));
    let cpu = Device::cpu();
    let mut w = Workload::new(&cpu, &ProblemShape::new(kernel, vec![2, 128], "")).unwrap();
    let err = w.launch(&cpu, &g32).unwrap_err().to_string();
    assert!(err.contains("layout parameter"), "{err}");
}
