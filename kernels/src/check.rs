//! Checking a kernel against its host reference: problems, error measures, reports.

use std::fmt;

/// One problem size of a kernel check (`dims` meaning is the kernel's: `[n]`, `[m, n, k]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub name: String,
    pub dims: Vec<usize>,
}

impl Problem {
    pub fn new(name: impl Into<String>, dims: Vec<usize>) -> Problem {
        Problem {
            name: name.into(),
            dims,
        }
    }

    /// Flat problems `[n]`, named `n=N`.
    pub fn sizes(ns: &[usize]) -> Vec<Problem> {
        ns.iter()
            .map(|&n| Problem::new(format!("n={n}"), vec![n]))
            .collect()
    }

    /// Matrix problems `[rows, cols]`, named `RxC`.
    pub fn matrices(shapes: &[(usize, usize)]) -> Vec<Problem> {
        shapes
            .iter()
            .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
            .collect()
    }

    /// GEMM problems `[m, n, k]`, named `MxNxK`.
    pub fn gemms(shapes: &[(usize, usize, usize)]) -> Vec<Problem> {
        shapes
            .iter()
            .map(|&(m, n, k)| Problem::new(format!("{m}x{n}x{k}"), vec![m, n, k]))
            .collect()
    }
}

/// How far two configs' outputs may differ: `|got - want| <= rel·|want| + abs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rel: f64,
    pub abs: f64,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance { rel: 0.0, abs: 0.0 };
}

/// The outcome of one config on one problem.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub problem: String,
    pub elements: usize,
    pub max_abs_error: f64,
    pub max_rel_error: f64,
    /// Allowed error: |got - want| <= tolerance * max(1, |want|).
    pub tolerance: f64,
    /// First element out of tolerance: (index, got, want).
    pub first_bad: Option<(usize, f64, f64)>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.first_bad.is_none()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<14} max abs err {:.3e}  max rel err {:.3e}  (tolerance {:.1e})",
            self.problem, self.max_abs_error, self.max_rel_error, self.tolerance
        )?;
        if let Some((i, got, want)) = self.first_bad {
            write!(f, "  FAILED at [{i}]: got {got}, want {want}")?;
        }
        Ok(())
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
    #[error(transparent)]
    Device(#[from] warpforge_dsl::backend::DeviceError),
}

/// Compares `got` with `want` element by element.
pub fn compare(problem: &Problem, got: &[f32], want: &[f32], tolerance: f64) -> CheckReport {
    let mut report = CheckReport {
        problem: problem.name.clone(),
        elements: want.len(),
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        tolerance,
        first_bad: None,
    };
    if got.len() != want.len() {
        report.first_bad = Some((got.len().min(want.len()), f64::NAN, f64::NAN));
        return report;
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        // Equal values match even when infinite (an attention row with no key has LSE −∞).
        let abs = if g == w { 0.0 } else { (g - w).abs() };
        let rel = abs / w.abs().max(f64::MIN_POSITIVE);
        let bad = !(abs == 0.0 || abs <= tolerance * w.abs().max(1.0))
            || g.is_nan() != w.is_nan()
            || (w.is_infinite() && g != w);
        report.max_abs_error =
            report
                .max_abs_error
                .max(if abs.is_nan() { f64::INFINITY } else { abs });
        report.max_rel_error = report.max_rel_error.max(if w == 0.0 { abs } else { rel });
        if bad && report.first_bad.is_none() && !(g.is_nan() && w.is_nan()) {
            report.first_bad = Some((i, g, w));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_finds_the_first_bad_element() {
        let p = Problem::new("t", vec![3]);
        let r = compare(&p, &[1.0, 2.0, 3.5], &[1.0, 2.0, 3.0], 1e-3);
        assert!(!r.passed());
        assert_eq!(r.first_bad, Some((2, 3.5, 3.0)));
        assert!((r.max_abs_error - 0.5).abs() < 1e-12);
        let r = compare(&p, &[1.0, 2.0, 3.0005], &[1.0, 2.0, 3.0], 1e-3);
        assert!(r.passed(), "{r}");
        let r = compare(&p, &[1.0, f32::NAN, 3.0], &[1.0, 2.0, 3.0], 1e-3);
        assert!(!r.passed());
        let r = compare(&p, &[1.0], &[1.0, 2.0], 1e-3);
        assert!(!r.passed());
        let inf = f32::NEG_INFINITY;
        assert!(compare(&p, &[1.0, inf, 3.0], &[1.0, inf, 3.0], 0.0).passed());
        assert!(!compare(&p, &[1.0, 2.0, 3.0], &[1.0, inf, 3.0], 1e-3).passed());
        assert!(!compare(&p, &[1.0, -inf, 3.0], &[1.0, 2.0, 3.0], 1e-3).passed());
    }
}
