//! Summary statistics of a candidate's samples.

use serde::{Deserialize, Serialize};

/// A candidate's timing: the median and the relative interquartile spread.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Seconds.
    pub median: f64,
    /// `(p75 - p25) / median`.
    pub spread: f64,
    pub samples: u32,
}

impl Measurement {
    /// Of at least one sample.
    pub fn of(samples: &[f64]) -> Measurement {
        let (p25, median, p75) = quartiles(samples);
        let spread = if median > 0.0 {
            (p75 - p25) / median
        } else {
            0.0
        };
        Measurement {
            median,
            spread,
            samples: samples.len() as u32,
        }
    }
}

/// (p25, p50, p75) by linear interpolation between the sorted samples; NaNs sort last.
/// All zero for no samples.
pub fn quartiles(samples: &[f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (s.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
    };
    (at(0.25), at(0.5), at(0.75))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        assert_eq!(quartiles(&[3.0]), (3.0, 3.0, 3.0));
        assert_eq!(quartiles(&[4.0, 1.0, 3.0, 2.0, 5.0]), (2.0, 3.0, 4.0));
        assert_eq!(quartiles(&[1.0, 2.0]), (1.25, 1.5, 1.75));
    }

    #[test]
    fn spread_ignores_one_outlier() {
        let mut s = vec![10.0; 9];
        s.push(1000.0);
        let m = Measurement::of(&s);
        assert_eq!(m.median, 10.0);
        assert_eq!(m.spread, 0.0);
        let m = Measurement::of(&[9.0, 10.0, 11.0]);
        assert!((m.spread - 0.1).abs() < 1e-12);
    }
}
