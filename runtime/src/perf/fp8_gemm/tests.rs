use super::*;

fn case(m: usize, n: usize, k: usize, scaling: Scaling) -> Case {
    Case {
        shape: Shape {
            name: format!("{m}x{n}x{k}"),
            m,
            n,
            k,
        },
        scaling,
    }
}

#[test]
fn cases_are_the_f16_shapes_block_scaled_plus_4096_cubed_per_tensor() {
    for quick in [false, true] {
        let all = cases(quick);
        let f16 = shapes(quick);
        assert_eq!(all.len(), f16.len() + 1);
        let blocked: Vec<&Shape> = all
            .iter()
            .filter(|c| c.scaling == Scaling::Blocks)
            .map(|c| &c.shape)
            .collect();
        assert_eq!(blocked, f16.iter().collect::<Vec<_>>());
        let tensor: Vec<&Case> = all
            .iter()
            .filter(|c| c.scaling == Scaling::Tensor)
            .collect();
        assert_eq!(tensor.len(), 1);
        assert_eq!(tensor[0].shape.name, "4096^3");
        // FP8 rows must be 16-byte aligned without padding for the buffers built here.
        assert!(all.iter().all(|c| fp8_gemm::padded(c.shape.k) == c.shape.k));
    }
    assert_eq!(cases(false).len(), 15);
    assert_eq!(cases(true).len(), 8);
}

#[test]
fn the_note_is_for_hopper_only() {
    assert!(note(Arch::SM90).unwrap().contains("emulates"));
    assert_eq!(note(Arch::SM89), None);
    assert_eq!(note(Arch::SM80), None);
    assert_eq!(note(Arch::new(12, 0)), None);
}

#[test]
fn the_kernel_needs_sm_89_and_older_gpus_skip_it() {
    let def = fp8_gemm::def_of(warpforge_dsl::ScalarType::BF16).unwrap();
    let needs = required_arch(def).unwrap();
    assert_eq!(needs.map(|(a, _)| a), Some(Arch::SM89));
    let why = skip_reason(Arch::SM80, needs).unwrap();
    assert!(why.starts_with("skipped: needs sm_89"), "{why}");
    assert!(why.contains("this GPU is sm_80"), "{why}");
    assert_eq!(skip_reason(Arch::SM89, needs), None);
    assert_eq!(skip_reason(Arch::SM90, needs), None);
    assert_eq!(skip_reason(Arch::SM80, None), None);
}

#[test]
fn codes_and_scales_are_exact_small_values() {
    let c = codes(5, 100_000);
    let values: Vec<f32> = c.iter().map(|x| x.to_f32()).collect();
    assert!(values
        .iter()
        .all(|v| v.fract() == 0.0 && (-8.0..=8.0).contains(v)));
    for want in [-8.0, 0.0, 8.0] {
        assert!(values.contains(&want), "{want} never drawn");
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    assert!(mean.abs() < 0.1, "{mean}");
    let s = scales(6, 10_000);
    assert!(s.iter().all(|x| [0.25, 0.5, 1.0, 2.0, 4.0].contains(x)));
    assert!(s.contains(&0.25) && s.contains(&4.0));
}

#[test]
fn scale_tables_match_the_kernel_library_layout() {
    for (m, n, k) in [(37, 129, 200), (1, 4096, 11008), (4096, 11008, 4096)] {
        let problem = Problem::new("p", vec![m, n, k, 1]);
        let (ops, _) = fp8_gemm::inputs(&problem);
        let lens = scale_lens(Scaling::Blocks, m, n, k);
        assert_eq!(lens, (ops.a_scale.len(), ops.b_scale.len()));
    }
    assert_eq!(scale_lens(Scaling::Tensor, 8192, 8192, 8192), (1, 1));
    assert_eq!(
        scale_lens(Scaling::Blocks, 16, 4096, 11008),
        (16 * 86, 32 * 86)
    );
}

#[test]
fn timed_operands_launch_correctly_on_the_interpreter() {
    let device = Device::cpu();
    let default = fp8_gemm::def_of(warpforge_dsl::ScalarType::BF16)
        .unwrap()
        .space
        .default_config();
    for scaling in [Scaling::Blocks, Scaling::Tensor] {
        let c = case(40, 136, 256, scaling);
        let mut ops = Operands::new(&device, &c).unwrap();
        ops.launch(&device, &default, &c).unwrap();
        let got = device.download(&ops.c).unwrap();
        let want = fp8_gemm::reference(&host_operands(&c), (40, 136, 256));
        assert_eq!(max_abs_error(&got, &want), 0.0, "{scaling:?}");
        assert!(want.iter().any(|x| x.abs() > 100.0));
    }
}

#[test]
fn the_check_reports_agreement_per_scaling() {
    let device = Device::cpu();
    let default = fp8_gemm::def_of(warpforge_dsl::ScalarType::BF16)
        .unwrap()
        .space
        .default_config();
    let report = check(&device, &default, (33, 70, 160));
    assert_eq!(report.len(), 2);
    for (e, scaling) in report.iter().zip(["blocks", "tensor"]) {
        assert_eq!(e["scaling"], scaling);
        assert_eq!(e["shape"], "33x70x160");
        assert_eq!(e["agrees"], true, "{e}");
        assert_eq!(e["max_abs_error"], 0.0);
    }
    assert!(check_line(&report).contains("agrees"));
    assert!(!check_line(&report).contains("DISAGREES"));
}

#[test]
fn max_abs_error_compares_with_the_rounded_reference() {
    let c = [bf16::from_f32(1.0), bf16::from_f32(257.0)];
    // 257 rounds to 256 in bf16: no error against the rounded reference.
    assert_eq!(max_abs_error(&c, &[1.0, 257.0]), 0.0);
    assert_eq!(max_abs_error(&c, &[3.0, 257.0]), 2.0);
    assert!(max_abs_error(&[bf16::NAN, bf16::ONE], &[1.0, 1.0]).is_nan());
}

fn gemm_section() -> Value {
    json!({ "shapes": [
        { "kernel": "gemm_tc_nn_f16_f32", "shape": "4096^3", "m": 4096, "n": 4096, "k": 4096,
          "ours": { "ms": 9.0 } },
        { "kernel": F16_KERNEL, "shape": "4096^3", "m": 4096, "n": 4096, "k": 4096,
          "ours": { "ms": 2.0 }, "tuned": { "ms": 1.0 } },
        { "kernel": F16_KERNEL, "shape": "qkvo m=1", "m": 1, "n": 4096, "k": 4096,
          "error": "launch failed" },
    ] })
}

#[test]
fn the_ratio_divides_the_best_f16_time_by_ours() {
    let mut e = json!({ "kernel": KERNEL, "shape": "4096^3", "scaling": "blocks",
        "ours": { "ms": 0.8 }, "tuned": { "ms": 0.5 } });
    compare_with_f16(&mut e, &gemm_section());
    assert_eq!(e["f16"]["ms"], 1.0);
    assert_eq!(e["vs_f16"], 2.0);
    // The f16 FLOP count: 4096³ in 1 ms.
    let t = e["f16"]["tflops"].as_f64().unwrap();
    assert!((t - tflops(4096, 4096, 4096, 1e-3)).abs() < 1e-9, "{t}");
    let line = summary_line(&e);
    assert!(line.contains("f16 1.000 ms, vs f16 2.000"), "{line}");
    assert!(line.contains("tuned 0.500 ms"), "{line}");
}

#[test]
fn a_missing_f16_time_says_why() {
    let mut e = json!({ "kernel": KERNEL, "shape": "qkvo m=1", "ours": { "ms": 0.1 } });
    compare_with_f16(&mut e, &gemm_section());
    assert_eq!(e["f16"], "not measured (launch failed)");
    assert!(e.get("vs_f16").is_none());
    let mut e = json!({ "kernel": KERNEL, "shape": "8192^3", "ours": { "ms": 0.1 } });
    compare_with_f16(&mut e, &json!({ "error": "not a GPU" }));
    assert!(e["f16"].as_str().unwrap().contains("no 8192^3 entry"));
    // Our own failure: the f16 time is still reported, with no ratio.
    let mut e = json!({ "kernel": KERNEL, "shape": "4096^3", "error": "boom" });
    compare_with_f16(&mut e, &gemm_section());
    assert_eq!(e["f16"]["ms"], 1.0);
    assert!(e.get("vs_f16").is_none());
    assert!(summary_line(&e).ends_with("ERROR boom"));
}

#[test]
fn without_a_gpu_the_section_says_so() {
    let v = run(&Device::cpu(), &PerfOptions::default(), &json!({}));
    assert_eq!(v["status"], "error: not a GPU");
}
