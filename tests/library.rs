//! T1: every library kernel on the CPU interpreter against its host reference, over its
//! whole tunable space, at small and edge shapes.

use warpforge::dsl::Device;
use warpforge::kernels::{find, LibraryKernel};

fn check_whole_space(k: LibraryKernel) {
    let device = Device::cpu();
    let configs = k.configs();
    assert!(!configs.is_empty(), "{} has an empty space", k.name);
    let mut runs = 0;
    for config in &configs {
        for problem in (k.problems)() {
            let report = k
                .check(&device, config, &problem)
                .unwrap_or_else(|e| panic!("{} {config} {}: {e}", k.name, problem.name));
            assert!(report.passed(), "{} {config}: {report}", k.name);
            runs += 1;
        }
    }
    eprintln!("{}: {} configs, {runs} runs passed", k.name, configs.len());
}

#[test]
fn vector_add_over_its_space() {
    check_whole_space(find("vector_add").unwrap());
}

#[test]
fn sum_partials_over_its_space() {
    check_whole_space(find("sum_partials").unwrap());
}

#[test]
fn gemm_over_its_space() {
    check_whole_space(find("gemm").unwrap());
}

#[test]
fn softmax_over_its_space() {
    check_whole_space(find("softmax").unwrap());
}

/// One test per FP8 instance (each element type and format), named after the kernel, so
/// they run in parallel and a failure names its instance.
macro_rules! fp8_instance_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            check_whole_space(find(stringify!($name)).unwrap());
        })*

        /// The instances tested above.
        const FP8_TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

fp8_instance_tests!(
    fp8_amax_f32,
    fp8_quantize_tensor_f32_e4m3,
    fp8_quantize_delayed_f32_e4m3,
    fp8_quantize_rows_f32_e4m3,
    fp8_quantize_rows_t_f32_e4m3,
    fp8_quantize_blocks_f32_e4m3,
    fp8_dequantize_e4m3_f32,
    fp8_quantize_tensor_f32_e5m2,
    fp8_quantize_delayed_f32_e5m2,
    fp8_quantize_rows_f32_e5m2,
    fp8_quantize_rows_t_f32_e5m2,
    fp8_quantize_blocks_f32_e5m2,
    fp8_dequantize_e5m2_f32,
    fp8_amax_f16,
    fp8_quantize_tensor_f16_e4m3,
    fp8_quantize_delayed_f16_e4m3,
    fp8_quantize_rows_f16_e4m3,
    fp8_quantize_rows_t_f16_e4m3,
    fp8_quantize_blocks_f16_e4m3,
    fp8_dequantize_e4m3_f16,
    fp8_quantize_tensor_f16_e5m2,
    fp8_quantize_delayed_f16_e5m2,
    fp8_quantize_rows_f16_e5m2,
    fp8_quantize_rows_t_f16_e5m2,
    fp8_quantize_blocks_f16_e5m2,
    fp8_dequantize_e5m2_f16,
    fp8_amax_bf16,
    fp8_quantize_tensor_bf16_e4m3,
    fp8_quantize_delayed_bf16_e4m3,
    fp8_quantize_rows_bf16_e4m3,
    fp8_quantize_rows_t_bf16_e4m3,
    fp8_quantize_blocks_bf16_e4m3,
    fp8_dequantize_e4m3_bf16,
    fp8_quantize_tensor_bf16_e5m2,
    fp8_quantize_delayed_bf16_e5m2,
    fp8_quantize_rows_bf16_e5m2,
    fp8_quantize_rows_t_bf16_e5m2,
    fp8_quantize_blocks_bf16_e5m2,
    fp8_dequantize_e5m2_bf16,
);

#[test]
fn every_fp8_instance_in_the_library_is_tested() {
    let library: Vec<&str> = warpforge::kernels::library()
        .iter()
        .map(|k| k.name)
        .filter(|n| warpforge::kernels::fp8::instance_of(n).is_some())
        .collect();
    assert_eq!(library, FP8_TESTED);
}

#[test]
fn coat_dre_quantize_over_its_space() {
    check_whole_space(find("coat_dre_quantize").unwrap());
}

#[test]
fn coat_dre_dequantize_over_its_space() {
    check_whole_space(find("coat_dre_dequantize").unwrap());
}

#[test]
fn coat_adamw_step_over_its_space() {
    check_whole_space(find("coat_adamw_step").unwrap());
}

#[test]
fn a_broken_reference_would_be_caught() {
    // The check is not vacuous: perturb one expected value and it must fail.
    let k = find("vector_add").unwrap();
    let problem = (k.problems)().remove(2);
    let got = (k.output)(&Device::cpu(), &k.default_config(), &problem).unwrap();
    let mut expected = (k.expected)(&problem);
    expected[3] += 1.0;
    let report = warpforge::kernels::check::compare(&problem, &got, &expected, 0.0);
    assert_eq!(report.first_bad.map(|b| b.0), Some(3));
}
