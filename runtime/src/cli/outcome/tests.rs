use super::*;
use warpforge_dsl::nvrtc::Arch;

fn fp8_gemm() -> Kernel {
    warpforge_kernels::library()
        .into_iter()
        .find(|k| k.name().starts_with("fp8_gemm"))
        .expect("the library has an FP8 GEMM")
}

#[test]
fn an_arch_gated_kernel_is_skipped_with_what_it_needs() {
    let k = fp8_gemm();
    let config = k.default_config();
    let why = needs_newer(k, &config, Arch::SM80).expect("FP8 mma needs sm_89");
    assert_eq!(why, "needs sm_89: mma_m16n8k32_e4m3_f32");
    assert_eq!(needs_newer(k, &config, Arch::SM89), None);
    assert_eq!(needs_newer(k, &config, Arch::SM90), None);
    assert_eq!(
        arch_skip(&Device::cpu(), k, &config),
        None,
        "the interpreter runs it"
    );
    // The same kernel through the compiler for sm_80: the error is a skip, not a failure.
    let typed = warpforge_dsl::resolve::specialize(k.def(), &config).unwrap();
    let err = warpforge_dsl::nvrtc::check_arch(&typed, Arch::SM80).unwrap_err();
    let outcome = Outcome::of_error(&warpforge_dsl::Error::from(err));
    assert_eq!(outcome, Outcome::Skipped(why.clone()));
    assert_eq!(
        outcome.status(),
        "skipped (needs sm_89: mma_m16n8k32_e4m3_f32)"
    );
    // And from the launch check of a GPU older than sm_89.
    let launch = DeviceError::ArchTooOld {
        kernel: k.name().into(),
        intrinsic: "mma_m16n8k32_e4m3_f32",
        needs: Arch::SM89,
        device: "NVIDIA A100".into(),
    };
    let check_err = warpforge_kernels::check::CheckError::from(launch);
    assert_eq!(Outcome::of_error(&check_err), Outcome::Skipped(why));
}

#[test]
fn a_lost_context_is_not_run_and_other_errors_fail() {
    let lost = DeviceError::ContextLost {
        after: "gemm_tc_nt_f16_f32 (BM=128)".into(),
        fault: "CUDA_ERROR_ILLEGAL_ADDRESS while synchronizing".into(),
    };
    let outcome = Outcome::of_error(&warpforge_dsl::Error::from(lost));
    assert_eq!(
        outcome.status(),
        "not run (context lost after gemm_tc_nt_f16_f32 (BM=128))"
    );
    let other = DeviceError::NoDevice {
        ordinal: 0,
        count: 0,
    };
    assert!(matches!(Outcome::of_error(&other), Outcome::Failed(_)));
}

#[test]
fn skips_pass_the_exit_code_failures_and_lost_work_do_not() {
    let mut t = Tally::default();
    t.add(&Outcome::Passed);
    t.add(&Outcome::Skipped("needs sm_89: x".into()));
    assert_eq!(t.exit_code(), ExitCode::SUCCESS);
    assert_eq!(t.to_string(), "1 passed, 0 failed, 1 skipped, 0 not run");
    let mut lost = t.clone();
    lost.add(&Outcome::NotRun("context lost after k (c)".into()));
    assert_eq!(lost.exit_code(), ExitCode::FAILURE);
    t.add(&Outcome::Failed("bad".into()));
    assert_eq!(t.exit_code(), ExitCode::FAILURE);
}
