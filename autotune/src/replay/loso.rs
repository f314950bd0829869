//! Leave-one-space-out: the surrogate's measured constants ([`SurrogateSettings`]) chosen, for
//! each space in turn, on the *other* spaces only, and that choice measured on the space left
//! out. A strategy whose constants were fitted to the spaces it is shown on would look better
//! here than on a space it has never seen; this check reports the figure an unseen space gets,
//! and whether the shipped constants are what every such choice picks.
//!
//! The choice minimises the sum over the other spaces of the p90 evaluations to the criterion
//! target (a missed p90 counts as twice the budget), the criterion the shipped constants were
//! chosen by; ties go to the earlier setting of the grid.

use std::path::PathBuf;

use serde::Serialize;

use super::bench::{strategy_report, BenchOptions, Contender, TargetStats};
use super::{ReplayError, ReplaySpace};
use crate::search::{StrategyKind, SurrogateSettings};

/// One space's line: what the other spaces chose, and how that does here.
#[derive(Clone, Debug, Serialize)]
pub struct LosoRow {
    pub space: String,
    /// The setting chosen on the other spaces.
    pub chosen: SurrogateSettings,
    /// The chosen setting on this space, at the criterion target.
    pub held_out: TargetStats,
    /// The shipped setting ([`SurrogateSettings::default`]) on this space.
    pub shipped: TargetStats,
}

/// The whole check.
#[derive(Clone, Debug, Serialize)]
pub struct LosoReport {
    /// The fraction of the optimum the choice is made at.
    pub target: f64,
    pub runs: usize,
    pub budget: usize,
    pub grid: Vec<SurrogateSettings>,
    pub rows: Vec<LosoRow>,
}

impl LosoReport {
    /// The spaces whose choice is not the shipped setting.
    pub fn disagreements(&self) -> impl Iterator<Item = &LosoRow> {
        let shipped = SurrogateSettings::default();
        self.rows.iter().filter(move |r| r.chosen != shipped)
    }
}

/// Runs every setting of `grid` (which must hold the shipped default) on every space of
/// `files`, without transfer, and makes the leave-one-space-out choice for each space at
/// `options`' middle target (0.95 by default). `progress` hears of each setting finished.
pub fn leave_one_space_out(
    files: &[PathBuf],
    options: BenchOptions,
    grid: &[SurrogateSettings],
    mut progress: impl FnMut(&SurrogateSettings),
) -> Result<LosoReport, ReplayError> {
    let options = options.check()?;
    let shipped = grid
        .iter()
        .position(|g| *g == SurrogateSettings::default())
        .ok_or_else(|| {
            ReplayError::Options("the grid must hold the shipped surrogate settings".into())
        })?;
    if files.len() < 2 {
        return Err(ReplayError::Options(
            "leave-one-space-out needs at least two spaces".into(),
        ));
    }
    let spaces: Vec<ReplaySpace> = files
        .iter()
        .map(|f| ReplaySpace::load(f))
        .collect::<Result<_, _>>()?;
    let target = options.targets[options.targets.len() / 2];
    // stats[g][s]: setting g on space s, at the criterion target.
    let mut stats: Vec<Vec<TargetStats>> = Vec::new();
    for settings in grid {
        let contender = Contender {
            label: settings.to_string(),
            settings: *settings,
            ..Contender::plain(StrategyKind::Surrogate)
        };
        let row = spaces
            .iter()
            .map(|space| {
                let report = strategy_report(space, &contender, &options);
                report.at(target).cloned().expect("the target is reported")
            })
            .collect();
        stats.push(row);
        progress(settings);
    }
    let penalty = 2.0 * options.budget as f64;
    let costs: Vec<Vec<f64>> = stats
        .iter()
        .map(|row| {
            row.iter()
                .map(|t| t.p90.map_or(penalty, |p| p as f64))
                .collect()
        })
        .collect();
    let rows = files
        .iter()
        .enumerate()
        .map(|(s, path)| {
            let g = choose(&costs, s);
            LosoRow {
                space: path.display().to_string(),
                chosen: grid[g],
                held_out: stats[g][s].clone(),
                shipped: stats[shipped][s].clone(),
            }
        })
        .collect();
    Ok(LosoReport {
        target,
        runs: options.runs,
        budget: options.budget,
        grid: grid.to_vec(),
        rows,
    })
}

/// The setting (row of `costs`, one column per space) of least total cost over every space
/// but `held_out`; the earliest on a tie. The held-out column is never read.
pub fn choose(costs: &[Vec<f64>], held_out: usize) -> usize {
    let total = |row: &Vec<f64>| -> f64 {
        row.iter()
            .enumerate()
            .filter(|&(s, _)| s != held_out)
            .map(|(_, c)| c)
            .sum()
    };
    let mut best = 0;
    for g in 1..costs.len() {
        if total(&costs[g]) < total(&costs[best]) {
            best = g;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn the_held_out_space_never_sways_the_choice() {
        // Setting 1 is best on spaces 0 and 1, setting 0 on space 2 by a wide margin.
        let costs = vec![vec![100.0, 100.0, 10.0], vec![50.0, 50.0, 400.0]];
        assert_eq!(choose(&costs, 2), 1, "left out space 2: 1 wins on 0 and 1");
        assert_eq!(
            choose(&costs, 0),
            0,
            "left out space 0: 100 + 10 < 50 + 400"
        );
        // Space 2's own figures do not matter when it is left out.
        let mut changed = costs.clone();
        changed[1][2] = 0.0;
        changed[0][2] = 1e9;
        assert_eq!(choose(&changed, 2), choose(&costs, 2));
    }

    #[test]
    fn ties_go_to_the_earlier_setting() {
        let costs = vec![vec![1.0, 2.0], vec![2.0, 1.0]];
        assert_eq!(choose(&costs, 0), 1);
        assert_eq!(choose(&costs, 1), 0);
        assert_eq!(choose(&[vec![3.0, 5.0], vec![3.0, 9.0]], 1), 0);
    }
}
