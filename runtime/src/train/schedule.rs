//! Learning-rate schedules: cosine with warmup (the common baseline), warmup-stable-decay
//! (WSD) and the Power scheduler. Each maps the progress of a run — the step and the
//! tokens seen so far — to a learning rate; they are pure functions of that progress, so
//! a resumed run gets the same rates.
//!
//! - **Cosine**: linear warmup over `warmup` steps to `lr_max`, then
//!   `lr_min + (lr_max − lr_min)·(1 + cos(π·p))/2` with `p` the fraction of the remaining
//!   steps done (Loshchilov & Hutter, SGDR, arXiv 1608.03983, without restarts).
//! - **WSD**: linear warmup, a constant `lr_max` stage, then a decay over the last
//!   `decay` steps to `lr_min`, linear or `1 − √p` (Hu et al., MiniCPM, arXiv 2404.06395;
//!   the `1 − √p` cooldown from Hägele et al., arXiv 2405.18392).
//! - **Power** (Shen et al., "Power Scheduler", arXiv 2408.13359; IBM dolomite-engine's
//!   `scheduler.py`): in tokens seen `n`, `lr(n) = min(lr_max, β·a·n^b)` with the paper's
//!   `b = −0.51`, `a = 4.6` and `lr_max = 0.02` (their μP setting; the `a` is recalled from
//!   the paper — one third-party implementation uses 4 — see
//!   `../shared/reference/seed-algorithms.md` §7.3). `β` is the batch size factor of the
//!   paper's law (`η_opt ≈ β·a·T^b`); `β = 1` gives the plain `min(lr_max, a·n^b)`. A linear
//!   warmup over the first `warmup_tokens` rises to the value at its end (dolomite's
//!   warmup), and an optional final decay anneals linearly to 0 over the last
//!   `decay_tokens` of `total_tokens` (the paper anneals at the end; its exact shape is
//!   not reproduced here).

use thiserror::Error;

/// Why a schedule's parameters cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    #[error("{what} = {value} must be {rule}")]
    Invalid {
        what: &'static str,
        value: f64,
        rule: &'static str,
    },
    #[error("unknown schedule {0:?}: use power, wsd or cosine")]
    Unknown(String),
}

fn check(
    what: &'static str,
    value: f64,
    ok: bool,
    rule: &'static str,
) -> Result<(), ScheduleError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ScheduleError::Invalid { what, value, rule })
    }
}

/// How WSD's final stage decays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    Linear,
    /// `1 − √p` of the decay's progress `p`.
    OneMinusSqrt,
}

/// A learning-rate schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Cosine {
        lr_max: f64,
        lr_min: f64,
        warmup: u64,
        total: u64,
    },
    Wsd {
        lr_max: f64,
        lr_min: f64,
        warmup: u64,
        decay: u64,
        total: u64,
        shape: Decay,
    },
    Power(Power),
}

/// The Power scheduler's parameters (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Power {
    pub lr_max: f64,
    pub a: f64,
    pub b: f64,
    pub batch_factor: f64,
    pub warmup_tokens: u64,
    /// Anneal to 0 over the last `decay_tokens` of `total_tokens` (0: no decay).
    pub decay_tokens: u64,
    pub total_tokens: u64,
}

impl Power {
    /// The paper's constants (`a = 4.6`, `b = −0.51`, `lr_max = 0.02`, `β = 1`), no decay.
    pub fn paper(warmup_tokens: u64, total_tokens: u64) -> Power {
        Power {
            lr_max: 0.02,
            a: 4.6,
            b: -0.51,
            batch_factor: 1.0,
            warmup_tokens,
            decay_tokens: 0,
            total_tokens,
        }
    }

    /// `min(lr_max, β·a·n^b)` without warmup or decay (`n ≥ 1`).
    pub fn law(&self, tokens: u64) -> f64 {
        let n = tokens.max(1) as f64;
        self.lr_max.min(self.batch_factor * self.a * n.powf(self.b))
    }

    fn lr(&self, tokens: u64) -> f64 {
        if tokens < self.warmup_tokens {
            return self.law(self.warmup_tokens) * (tokens + 1) as f64 / self.warmup_tokens as f64;
        }
        let decay_start = self.total_tokens.saturating_sub(self.decay_tokens);
        if self.decay_tokens > 0 && tokens >= decay_start {
            let left = self.total_tokens.saturating_sub(tokens) as f64;
            return self.law(decay_start) * left / self.decay_tokens as f64;
        }
        self.law(tokens)
    }
}

impl Schedule {
    /// Checks the parameters (rates positive and finite, `lr_min ≤ lr_max`, phases inside
    /// the run, Power's exponent negative).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let rates = |lr_max: f64, lr_min: f64| {
            check("lr_max", lr_max, lr_max > 0.0, "positive")?;
            check(
                "lr_min",
                lr_min,
                (0.0..=lr_max).contains(&lr_min),
                "between 0 and lr_max",
            )
        };
        match *self {
            Schedule::Cosine {
                lr_max,
                lr_min,
                warmup,
                total,
            } => {
                rates(lr_max, lr_min)?;
                check(
                    "warmup",
                    warmup as f64,
                    warmup < total,
                    "below the total steps",
                )
            }
            Schedule::Wsd {
                lr_max,
                lr_min,
                warmup,
                decay,
                total,
                ..
            } => {
                rates(lr_max, lr_min)?;
                let phases = warmup as f64 + decay as f64;
                check(
                    "warmup + decay",
                    phases,
                    warmup + decay <= total,
                    "at most the total steps",
                )
            }
            Schedule::Power(ref p) => {
                check("lr_max", p.lr_max, p.lr_max > 0.0, "positive")?;
                check("a", p.a, p.a > 0.0, "positive")?;
                check(
                    "b",
                    p.b,
                    p.b < 0.0,
                    "negative (the rate falls with tokens seen)",
                )?;
                check(
                    "batch_factor",
                    p.batch_factor,
                    p.batch_factor > 0.0,
                    "positive",
                )?;
                let decay = p.decay_tokens as f64;
                check(
                    "decay_tokens",
                    decay,
                    p.decay_tokens <= p.total_tokens.saturating_sub(p.warmup_tokens),
                    "at most the tokens after warmup",
                )
            }
        }
    }

    /// The learning rate of step `step` (from 0), after `tokens` tokens have been seen
    /// (Power uses the tokens, the others the step).
    pub fn lr(&self, step: u64, tokens: u64) -> f64 {
        match *self {
            Schedule::Cosine {
                lr_max,
                lr_min,
                warmup,
                total,
            } => {
                if step < warmup {
                    return lr_max * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let p = ((step - warmup) as f64 / span).min(1.0);
                lr_min + (lr_max - lr_min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Schedule::Wsd {
                lr_max,
                lr_min,
                warmup,
                decay,
                total,
                shape,
            } => {
                if step < warmup {
                    return lr_max * (step + 1) as f64 / warmup as f64;
                }
                let decay_start = total.saturating_sub(decay);
                if step < decay_start || decay == 0 {
                    return lr_max;
                }
                let p = ((step - decay_start) as f64 / decay as f64).min(1.0);
                let f = match shape {
                    Decay::Linear => 1.0 - p,
                    Decay::OneMinusSqrt => 1.0 - p.sqrt(),
                };
                lr_min + (lr_max - lr_min) * f
            }
            Schedule::Power(ref p) => p.lr(tokens),
        }
    }

    /// The schedule called `name` (`power`, `wsd`, `cosine`) with common defaults for a run
    /// of `steps` steps of `batch_tokens` tokens and peak rate `lr_max` (Power keeps the
    /// paper's `lr_max` as its cap): warmup 1% of the run (at least one step), WSD decaying
    /// over the last 20% with `1 − √p`, floors at 10% of the peak.
    pub fn named(
        name: &str,
        lr_max: f64,
        steps: u64,
        batch_tokens: u64,
    ) -> Result<Schedule, ScheduleError> {
        let warmup = (steps / 100).max(1).min(steps.saturating_sub(1));
        let schedule = match name {
            "cosine" => Schedule::Cosine {
                lr_max,
                lr_min: lr_max / 10.0,
                warmup,
                total: steps,
            },
            "wsd" => Schedule::Wsd {
                lr_max,
                lr_min: lr_max / 10.0,
                warmup,
                decay: steps / 5,
                total: steps,
                shape: Decay::OneMinusSqrt,
            },
            "power" => Schedule::Power(Power::paper(warmup * batch_tokens, steps * batch_tokens)),
            other => return Err(ScheduleError::Unknown(other.to_string())),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300)
    }

    fn cosine() -> Schedule {
        Schedule::Cosine {
            lr_max: 1e-3,
            lr_min: 1e-4,
            warmup: 10,
            total: 110,
        }
    }

    #[test]
    fn cosine_warms_up_then_follows_the_half_cosine() {
        let s = cosine();
        s.validate().unwrap();
        assert!(close(s.lr(0, 0), 1e-4));
        assert!(close(s.lr(9, 0), 1e-3), "warmup ends at the peak");
        assert!(close(s.lr(10, 0), 1e-3), "decay starts at the peak");
        assert!(
            close(s.lr(60, 0), 5.5e-4),
            "halfway: the mean of peak and floor"
        );
        assert!(
            close(s.lr(110, 0), 1e-4) && close(s.lr(500, 0), 1e-4),
            "then the floor"
        );
        let after: Vec<f64> = (10..=110).map(|t| s.lr(t, 0)).collect();
        assert!(
            after.windows(2).all(|w| w[1] <= w[0]),
            "non-increasing after warmup"
        );
    }

    #[test]
    fn wsd_has_three_phases() {
        for shape in [Decay::Linear, Decay::OneMinusSqrt] {
            let s = Schedule::Wsd {
                lr_max: 2e-3,
                lr_min: 0.0,
                warmup: 4,
                decay: 20,
                total: 100,
                shape,
            };
            s.validate().unwrap();
            assert!(close(s.lr(1, 0), 1e-3));
            assert!((4..80).all(|t| s.lr(t, 0) == 2e-3), "stable stage");
            assert_eq!(s.lr(100, 0), 0.0);
            let decay: Vec<f64> = (80..=100).map(|t| s.lr(t, 0)).collect();
            assert!(decay.windows(2).all(|w| w[1] < w[0]), "strictly decaying");
            let quarter = s.lr(85, 0) / 2e-3;
            let want = match shape {
                Decay::Linear => 0.75,
                Decay::OneMinusSqrt => 0.5,
            };
            assert!(close(quarter, want), "{shape:?}: {quarter}");
        }
    }

    #[test]
    fn power_follows_the_law_in_tokens_and_clamps() {
        let p = Power::paper(1 << 20, 1 << 40);
        let s = Schedule::Power(p.clone());
        s.validate().unwrap();
        // a·n^b crosses lr_max = 0.02 near n = (0.02/4.6)^(1/b) ≈ 43 000 tokens.
        let cross = (0.02f64 / 4.6).powf(1.0 / -0.51);
        assert!((4.0e4..4.6e4).contains(&cross), "{cross}");
        assert_eq!(p.law(40_000), 0.02, "clamped below the crossing");
        // Unclamped, doubling the tokens multiplies the rate by 2^b.
        let (n, m) = (1u64 << 30, 1u64 << 31);
        assert!(close(s.lr(0, m) / s.lr(0, n), 2f64.powf(-0.51)));
        assert!(close(s.lr(0, n), 4.6 * (n as f64).powf(-0.51)));
        // The step does not matter, only tokens: the same tokens through a batch twice as
        // large give the same rate.
        assert_eq!(s.lr(1000, n), s.lr(500, n));
        let later: Vec<f64> = (20..40).map(|k| s.lr(0, 1 << k)).collect();
        assert!(
            later.windows(2).all(|w| w[1] <= w[0]),
            "non-increasing after warmup"
        );
    }

    #[test]
    fn power_warmup_is_continuous_and_the_batch_factor_scales() {
        let mut p = Power::paper(1 << 24, 1 << 34);
        let s = Schedule::Power(p.clone());
        let end = p.law(1 << 24);
        assert!(
            close(s.lr(0, (1 << 24) - 1), end),
            "warmup reaches the law's value"
        );
        assert!(close(s.lr(0, 1 << 24), end));
        assert!(close(s.lr(0, (1 << 23) - 1), end / 2.0), "linear in tokens");
        p.batch_factor = 2.0;
        assert!(close(p.law(1 << 30), 2.0 * Power::paper(0, 1).law(1 << 30)));
    }

    #[test]
    fn power_decay_anneals_to_zero() {
        let mut p = Power::paper(1000, 1_000_000);
        p.decay_tokens = 100_000;
        let s = Schedule::Power(p.clone());
        s.validate().unwrap();
        assert!(
            close(s.lr(0, 900_000), p.law(900_000)),
            "decay starts at the law's value"
        );
        assert!(close(s.lr(0, 950_000), p.law(900_000) / 2.0));
        assert_eq!(s.lr(0, 1_000_000), 0.0);
    }

    #[test]
    fn bad_parameters_and_names_are_refused() {
        let bad = Schedule::Cosine {
            lr_max: 1e-3,
            lr_min: 1e-2,
            warmup: 0,
            total: 10,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("lr_min"));
        let mut p = Power::paper(0, 10);
        p.b = 0.5;
        assert!(Schedule::Power(p)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert_eq!(
            Schedule::named("linear", 1e-3, 100, 1024),
            Err(ScheduleError::Unknown("linear".into()))
        );
        for name in ["power", "wsd", "cosine"] {
            let s = Schedule::named(name, 1e-3, 1000, 4096).unwrap();
            assert!(s.lr(0, 0) > 0.0 && s.lr(999, 999 * 4096) > 0.0, "{name}");
        }
    }
}
