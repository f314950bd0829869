//! gpu-check's job loop with an injected sticky fault (no GPU needed).

use super::*;
use std::cell::{Cell, RefCell};
use warpforge_dsl::backend::DeviceError;

#[test]
fn a_sticky_fault_stops_gpu_work_and_labels_the_rest() {
    let kernels = warpforge_kernels::library();
    let jobs = gpu_jobs(&kernels[..4], 0);
    assert!(jobs.len() >= 4, "{}", jobs.len());
    assert!(jobs.iter().all(|j| !j.sampled));
    let faulty = 1; // the second job faults
    let lost: RefCell<Option<(String, String)>> = RefCell::new(None);
    let calls = Cell::new(0usize);
    let results = run_jobs(
        &jobs,
        Duration::from_secs(60),
        &|| {
            lost.borrow()
                .clone()
                .map(|(after, fault)| DeviceError::ContextLost { after, fault })
        },
        &mut |job| {
            let i = calls.get();
            calls.set(i + 1);
            if i != faulty {
                return (Outcome::Passed, serde_json::json!({}));
            }
            // What the cuda backend returns at the fault, and remembers for later calls.
            let after = format!("{} ({})", job.kernel.name(), job.config);
            let fault = DeviceError::Fault {
                during: "copying a buffer from the GPU".into(),
                message: "CUDA_ERROR_ILLEGAL_ADDRESS".into(),
                after: after.clone(),
            };
            *lost.borrow_mut() = Some((after, "CUDA_ERROR_ILLEGAL_ADDRESS".into()));
            let e = warpforge_dsl::Error::from(fault);
            (
                Outcome::of_error(&e),
                serde_json::json!({ "error": e.to_string() }),
            )
        },
    );
    assert_eq!(calls.get(), faulty + 1, "no GPU work after the fault");
    assert_eq!(results.len(), jobs.len());
    assert_eq!(results[0].0, Outcome::Passed);
    assert!(matches!(results[faulty].0, Outcome::Failed(_)));
    let fault_entry = &results[faulty].1;
    assert!(
        fault_entry["error"]
            .as_str()
            .unwrap()
            .contains("CUDA fault while copying"),
        "{fault_entry}"
    );
    let label = format!(
        "not run (context lost after {} ({}))",
        jobs[faulty].kernel.name(),
        jobs[faulty].config
    );
    for (outcome, entry) in &results[faulty + 1..] {
        assert_eq!(outcome.status(), label);
        assert_eq!(entry["status"], label.as_str());
        assert_eq!(entry["passed"], false);
    }
    let mut tally = Tally::default();
    results.iter().for_each(|(o, _)| tally.add(o));
    assert_eq!((tally.passed, tally.failed), (1, 1));
    assert_eq!(tally.not_run, jobs.len() - 2);
}

#[test]
fn sampled_configs_stop_at_the_budget_as_skips() {
    let kernels = warpforge_kernels::library();
    let jobs = gpu_jobs(&kernels, 2);
    let sampled = jobs.iter().filter(|j| j.sampled).count();
    assert!(sampled > 0, "the library has spaces to sample");
    assert!(jobs
        .iter()
        .filter(|j| j.sampled)
        .all(|j| j.config != j.kernel.default_config()));
    let results = run_jobs(&jobs, Duration::ZERO, &|| None, &mut |_| {
        std::thread::sleep(Duration::from_millis(1));
        (Outcome::Passed, serde_json::json!({}))
    });
    let skipped = results
        .iter()
        .filter(|(o, _)| matches!(o, Outcome::Skipped(w) if w.contains("budget")))
        .count();
    assert_eq!(
        skipped,
        sampled - 1,
        "the first sampled job runs, then the budget is spent"
    );
}
