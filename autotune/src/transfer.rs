//! Transfer across devices in a real tuning run: the same problem's results in the caches of
//! other GPUs (the sibling `<device>.json` files of the cache dir) become a [`Prior`] for the
//! search, so a tuning run on an H200 starts from what an H100 found. Configs match by their
//! text (`NAME=VALUE,...`), not by code hash: another device's result is a hint about where to
//! look first, never a time this device trusts, so a stale one costs at most a few evaluations.

use crate::cache::{config_text, CacheFile, Outcome as CachedOutcome};
use crate::key::EntryKey;
use crate::search::{Outcome, Prior, PriorSource};
use warpforge_dsl::space::Config;

/// The results of `key`'s problem (same kernel, dtypes and bucket) in `others`, per config
/// of `space` (in its order); None when no other device timed any of them.
pub fn prior_from_caches(others: &[CacheFile], key: &EntryKey, space: &[Config]) -> Option<Prior> {
    let texts: Vec<String> = space.iter().map(config_text).collect();
    let sources = others
        .iter()
        .filter_map(|file| {
            let entry = file.entries.iter().find(|e| e.same_problem(key))?;
            let outcomes = texts
                .iter()
                .map(|text| {
                    let record = entry.results.iter().find(|r| &r.config == text)?;
                    Some(match record.outcome {
                        CachedOutcome::Measured { median_ns, .. } => Outcome::Time(median_ns),
                        CachedOutcome::Failed { .. } => Outcome::Failed,
                    })
                })
                .collect();
            Some(PriorSource {
                name: file.device.name.clone(),
                outcomes,
            })
        })
        .collect();
    Prior::new(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Entry, ResultRecord, FORMAT};
    use crate::key::{Bucket, DeviceKey};

    fn record(config: &Config, outcome: CachedOutcome) -> ResultRecord {
        ResultRecord {
            config: config_text(config),
            config_hash: "stale".into(),
            outcome,
        }
    }

    #[test]
    fn results_of_the_same_problem_match_by_config_text() {
        let space: Vec<Config> = (0..3).map(|a| Config::new().with("A", a)).collect();
        let bucket = Bucket::of(&[64]).unwrap();
        let key = EntryKey {
            kernel: "k".into(),
            ir_hash: "now".into(),
            dtypes: vec!["f32".into()],
            bucket,
        };
        let measured = CachedOutcome::Measured {
            median_ns: 5.0,
            spread: 0.0,
            samples: 3,
        };
        let failed = CachedOutcome::Failed {
            reason: "spilled".into(),
        };
        let entry = |bucket: Vec<u64>| Entry {
            kernel: "k".into(),
            ir_hash: "then".into(),
            dtypes: vec!["f32".into()],
            bucket,
            shape: vec![64],
            results: vec![
                record(&space[2], measured.clone()),
                record(&space[0], failed.clone()),
            ],
        };
        let device = |name: &str| DeviceKey {
            name: name.into(),
            arch: "sm_90".into(),
            sms: 132,
            driver: "12.8".into(),
            nvrtc: "12.9".into(),
            warpforge: "0.1.0".into(),
        };
        let file = |name: &str, bucket: Vec<u64>| CacheFile {
            format: FORMAT,
            device: device(name),
            entries: vec![entry(bucket)],
        };
        let others = [file("H100", vec![64]), file("A100", vec![1 << 12])];
        let prior = prior_from_caches(&others, &key, &space).unwrap();
        assert_eq!(prior.sources().len(), 1, "A100 timed another bucket");
        let outcomes = &prior.sources()[0].outcomes;
        assert_eq!(
            outcomes,
            &[Some(Outcome::Failed), None, Some(Outcome::Time(5.0))]
        );
        assert!(prior_from_caches(&others[1..], &key, &space).is_none());
    }
}
