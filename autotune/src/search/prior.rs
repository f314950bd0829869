//! Transfer across devices: results of the same kernel on other GPUs, matched to the configs
//! of the space being searched. A search uses them twice (see [`super::SurrogateSearch`]): it
//! evaluates the sources' fastest configs first, interleaved by rank so that no single source
//! (possibly another vendor's GPU, whose best can be poor here) is bet on, and its model sees
//! each config's rank on every source as a feature, so it learns how far each source agrees.

use super::{Outcome, SearchSpace};

/// One other device's results, per config id of the searched space.
#[derive(Clone, Debug)]
pub struct PriorSource {
    pub name: String,
    /// Per config id: its outcome there, or None where that device did not run it.
    pub outcomes: Vec<Option<Outcome>>,
}

impl PriorSource {
    /// `source`'s results matched to `target`'s configs by parameter name and value; None if
    /// the two spaces do not have the same parameter names.
    pub fn matched(
        name: &str,
        target: &SearchSpace,
        source: &SearchSpace,
        outcome: impl Fn(usize) -> Outcome,
    ) -> Option<PriorSource> {
        // Per target parameter: its position in the source, and each value's index there.
        let maps: Vec<(usize, Vec<Option<u16>>)> = target
            .params()
            .iter()
            .map(|p| {
                let at = source.params().iter().position(|q| q.name == p.name)?;
                let values = &source.params()[at].values;
                let map = p
                    .values
                    .iter()
                    .map(|v| values.iter().position(|w| w == v).map(|i| i as u16))
                    .collect();
                Some((at, map))
            })
            .collect::<Option<_>>()?;
        if maps.len() != source.params().len() {
            return None;
        }
        let mut probe = vec![0u16; maps.len()];
        let outcomes = target
            .points()
            .iter()
            .map(|point| {
                for ((at, map), &i) in maps.iter().zip(point.iter()) {
                    probe[*at] = map[usize::from(i)]?;
                }
                source.id_of(&probe).map(&outcome)
            })
            .collect();
        Some(PriorSource {
            name: name.to_string(),
            outcomes,
        })
    }

    /// The config ids that ran there, fastest first.
    fn ranking(&self) -> Vec<usize> {
        let mut timed: Vec<(usize, f64)> = self
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(id, o)| o.and_then(Outcome::time).map(|t| (id, t)))
            .collect();
        timed.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
        timed.into_iter().map(|t| t.0).collect()
    }

    /// Per config id, its rank there scaled to [0, 1] (0 the fastest); a failure ranks 1.25,
    /// beyond every config that ran, and a config it did not run sits in the middle (0.5).
    fn rank_column(&self) -> Vec<f32> {
        let ranking = self.ranking();
        let scale = ranking.len().saturating_sub(1).max(1) as f32;
        let mut column: Vec<f32> = self
            .outcomes
            .iter()
            .map(|o| match o {
                Some(Outcome::Failed) => 1.25,
                _ => 0.5,
            })
            .collect();
        for (rank, id) in ranking.into_iter().enumerate() {
            column[id] = rank as f32 / scale;
        }
        column
    }
}

/// Results of the same kernel on other devices.
#[derive(Clone, Debug, Default)]
pub struct Prior {
    sources: Vec<PriorSource>,
}

impl Prior {
    /// A prior of the sources that ran at least one config; None if none did.
    pub fn new(sources: Vec<PriorSource>) -> Option<Prior> {
        let sources: Vec<PriorSource> = sources
            .into_iter()
            .filter(|s| s.outcomes.iter().flatten().any(|o| o.time().is_some()))
            .collect();
        (!sources.is_empty()).then_some(Prior { sources })
    }

    pub fn sources(&self) -> &[PriorSource] {
        &self.sources
    }

    /// Up to `k` distinct configs: every source's fastest, then every source's second, ...
    pub fn round_robin(&self, k: usize) -> Vec<usize> {
        let rankings: Vec<Vec<usize>> = self.sources.iter().map(PriorSource::ranking).collect();
        let deepest = rankings.iter().map(Vec::len).max().unwrap_or(0);
        let mut out: Vec<usize> = Vec::with_capacity(k);
        for rank in 0..deepest {
            for r in &rankings {
                if out.len() == k {
                    return out;
                }
                if let Some(&id) = r.get(rank) {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }

    /// Per source, each config's rank there (see [`PriorSource::rank_column`]).
    pub(super) fn rank_columns(&self) -> Vec<Vec<f32>> {
        self.sources.iter().map(PriorSource::rank_column).collect()
    }

    /// What the search takes from the prior, for the user.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        format!(
            "transfer from {} other device(s) ({}): their fastest configs first, their ranks as model features",
            names.len(),
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SearchParam;

    fn space(a: &[i64], b: &[i64]) -> SearchSpace {
        let params = vec![
            SearchParam {
                name: "a".into(),
                values: a.to_vec(),
            },
            SearchParam {
                name: "b".into(),
                values: b.to_vec(),
            },
        ];
        let points =
            (0..a.len() as u16).flat_map(|i| (0..b.len() as u16).map(move |j| vec![i, j].into()));
        SearchSpace::new(params, points).unwrap()
    }

    #[test]
    fn sources_match_by_name_and_value() {
        let target = space(&[1, 2, 4], &[8, 16]);
        // The source lists b first (by name order it differs) and lacks a = 4.
        let params = vec![
            SearchParam {
                name: "b".into(),
                values: vec![16, 8],
            },
            SearchParam {
                name: "a".into(),
                values: vec![2, 1],
            },
        ];
        let points = (0..2u16).flat_map(|i| (0..2u16).map(move |j| vec![i, j].into()));
        let source = SearchSpace::new(params, points).unwrap();
        // Time = a·100 + b on the source.
        let time = |id: usize| {
            let c = source.config(id);
            Outcome::Time((c.get("a").unwrap() * 100 + c.get("b").unwrap()) as f64)
        };
        let s = PriorSource::matched("src", &target, &source, time).unwrap();
        let at = |a: u16, b: u16| s.outcomes[target.id_of(&[a, b]).unwrap()];
        assert_eq!(at(0, 0), Some(Outcome::Time(108.0)));
        assert_eq!(at(1, 1), Some(Outcome::Time(216.0)));
        assert_eq!(at(2, 0), None, "a = 4 never ran there");
        let prior = Prior::new(vec![s]).unwrap();
        let first = prior.round_robin(2);
        assert_eq!(
            first,
            [
                target.id_of(&[0, 0]).unwrap(),
                target.id_of(&[0, 1]).unwrap()
            ]
        );
        let ranks = &prior.rank_columns()[0];
        assert_eq!(ranks[target.id_of(&[0, 0]).unwrap()], 0.0);
        assert_eq!(ranks[target.id_of(&[2, 1]).unwrap()], 0.5);
    }

    #[test]
    fn round_robin_interleaves_sources_without_repeats() {
        let out = |times: [f64; 4]| times.map(|t| Some(Outcome::Time(t))).to_vec();
        let a = PriorSource {
            name: "a".into(),
            outcomes: out([1.0, 2.0, 3.0, 4.0]),
        };
        let b = PriorSource {
            name: "b".into(),
            outcomes: out([1.0, 4.0, 3.0, 2.0]),
        };
        let prior = Prior::new(vec![a, b]).unwrap();
        assert_eq!(prior.round_robin(10), [0, 1, 3, 2]);
        assert!(prior.describe().contains("2 other device(s) (a, b)"));
        let mismatch = space(&[1], &[2]);
        let other = SearchSpace::new(
            vec![SearchParam {
                name: "c".into(),
                values: vec![1],
            }],
            [vec![0u16].into()],
        )
        .unwrap();
        assert!(PriorSource::matched("x", &mismatch, &other, |_| Outcome::Failed).is_none());
    }
}
