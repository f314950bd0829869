//! Search strategies: which candidates to time, in which order.
//!
//! A space of at most [`EXHAUSTIVE_LIMIT`] candidates (after pruning) is always timed
//! whole. Larger spaces go through a [`SearchStrategy`]: the tuner asks it for batches of
//! candidates until it returns none or the budget is spent. Strategies see the results of
//! earlier runs (from the cache too), so a resumed search continues where it stopped.

use crate::TuneError;
use warpforge_dsl::Config;

/// Spaces up to this size are searched exhaustively, whatever the strategy.
pub const EXHAUSTIVE_LIMIT: usize = 64;

/// What is known of one candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trial {
    /// Not timed yet.
    Pending,
    /// Median seconds.
    Measured(f64),
    /// Failed (crashed, erred, timed out or gave a wrong output); never retried.
    Failed,
}

/// Chooses candidates to time.
pub trait SearchStrategy {
    fn name(&self) -> &str;

    /// The next candidates to time, as indices into `space` (`trials[i]` is what is
    /// known of `space[i]`). Only pending indices are run; an answer with none ends the
    /// search.
    fn propose(&mut self, space: &[Config], trials: &[Trial]) -> Vec<usize>;
}

/// Every pending candidate, in space order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exhaustive;

impl SearchStrategy for Exhaustive {
    fn name(&self) -> &str {
        "exhaustive"
    }

    fn propose(&mut self, _space: &[Config], trials: &[Trial]) -> Vec<usize> {
        (0..trials.len())
            .filter(|&i| trials[i] == Trial::Pending)
            .collect()
    }
}

/// Strategy names [`strategy_by_name`] knows.
// The lead adds the search/ strategies (and `--replay`) here.
pub const STRATEGIES: &[&str] = &["exhaustive"];

/// The strategy called `name`.
pub fn strategy_by_name(name: &str) -> Result<Box<dyn SearchStrategy>, TuneError> {
    match name {
        "exhaustive" => Ok(Box::new(Exhaustive)),
        _ => Err(TuneError::UnknownStrategy {
            name: name.to_string(),
            known: STRATEGIES.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_proposes_only_pending() {
        let space = vec![Config::new(); 4];
        let trials = [
            Trial::Pending,
            Trial::Measured(1.0),
            Trial::Failed,
            Trial::Pending,
        ];
        assert_eq!(Exhaustive.propose(&space, &trials), [0, 3]);
        assert!(Exhaustive
            .propose(&space, &[Trial::Failed, Trial::Measured(2.0)])
            .is_empty());
        assert_eq!(strategy_by_name("exhaustive").unwrap().name(), "exhaustive");
        let e = strategy_by_name("bayes").err().unwrap().to_string();
        assert!(e.contains("`bayes`") && e.contains("exhaustive"), "{e}");
    }
}
