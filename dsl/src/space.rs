//! Tunable spaces and configs: the values of a kernel's const generics.

use std::fmt;

/// Values of a kernel's const generic parameters, by name, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Config {
    pub values: Vec<(String, i64)>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Builder style: `Config::new().with("BLOCK", 256)`.
    pub fn with(mut self, name: &str, value: i64) -> Config {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: i64) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Parses `NAME=VALUE,NAME=VALUE` (the CLI's `--config`).
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config = Config::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not NAME=VALUE"))?;
            let value: i64 = match value.trim() {
                "true" => 1,
                "false" => 0,
                v => v
                    .parse()
                    .map_err(|_| format!("`{v}` (for {}) is not an integer", name.trim()))?,
            };
            config.set(name.trim(), value);
        }
        Ok(config)
    }

    /// A short stable name for file names and generated symbols: `BLOCK256_TM4`.
    pub fn suffix(&self) -> String {
        self.values
            .iter()
            .map(|(n, v)| format!("{n}{v}").replace('-', "m"))
            .collect::<Vec<_>>()
            .join("_")
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.values.is_empty() {
            return f.write_str("(no parameters)");
        }
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A constraint between tunables, as declared: `constraint = BM * BK % (BLOCK * 4) == 0`.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// The Rust source text of the condition, for messages.
    pub text: String,
    /// The condition, compiled by the macro into a Rust function of the config.
    pub check: fn(&Config) -> bool,
}

/// A kernel's declared tunable space: a list of values per tunable const generic, and the
/// constraints every config must satisfy. Const generics without a `tune(...)` list are not
/// tunable: a config must give them (or the kernel gives a default via `default(...)`).
#[derive(Clone, Debug, Default)]
pub struct TuneSpace {
    pub params: Vec<TuneParam>,
    pub constraints: Vec<Constraint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuneParam {
    pub name: String,
    pub values: Vec<i64>,
    /// The value the heuristic default config uses (the first listed unless `default(..)`).
    pub default: i64,
}

impl TuneSpace {
    /// Every config of the space (the cartesian product) that satisfies all constraints.
    pub fn configs(&self) -> Vec<Config> {
        let mut out = vec![Config::new()];
        for p in &self.params {
            out = out
                .into_iter()
                .flat_map(|c| p.values.iter().map(move |&v| c.clone().with(&p.name, v)))
                .collect();
        }
        out.retain(|c| self.satisfies(c).is_ok());
        out
    }

    /// The heuristic default: each tunable at its default value.
    pub fn default_config(&self) -> Config {
        let mut c = Config::new();
        for p in &self.params {
            c.set(&p.name, p.default);
        }
        c
    }

    /// Ok, or the text of the first constraint the config violates.
    pub fn satisfies(&self, config: &Config) -> Result<(), String> {
        match self.constraints.iter().find(|k| !(k.check)(config)) {
            Some(k) => Err(k.text.clone()),
            None => Ok(()),
        }
    }

    /// Whether the config names only declared values of the tunables.
    pub fn check_member(&self, config: &Config) -> Result<(), String> {
        for p in &self.params {
            match config.get(&p.name) {
                Some(v) if p.values.contains(&v) => {}
                Some(v) => {
                    return Err(format!(
                        "{}={v} is outside the declared space {:?}",
                        p.name, p.values
                    ))
                }
                None => return Err(format!("the config does not give {}", p.name)),
            }
        }
        self.satisfies(config)
            .map_err(|c| format!("the config violates the constraint `{c}`"))
    }
}

impl fmt::Display for TuneSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                let vals: Vec<String> = p.values.iter().map(|v| v.to_string()).collect();
                format!("{} ∈ {{{}}}", p.name, vals.join(", "))
            })
            .collect();
        f.write_str(&parts.join(", "))?;
        for c in &self.constraints {
            write!(f, "; {}", c.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even_sum(c: &Config) -> bool {
        (c.get("A").unwrap() + c.get("B").unwrap()) % 2 == 0
    }

    #[test]
    fn product_respects_constraints() {
        let space = TuneSpace {
            params: vec![
                TuneParam {
                    name: "A".into(),
                    values: vec![1, 2, 3],
                    default: 1,
                },
                TuneParam {
                    name: "B".into(),
                    values: vec![1, 2],
                    default: 1,
                },
            ],
            constraints: vec![Constraint {
                text: "(A + B) % 2 == 0".into(),
                check: even_sum,
            }],
        };
        let configs = space.configs();
        assert_eq!(configs.len(), 3);
        assert!(configs.iter().all(even_sum));
        assert_eq!(
            space.default_config(),
            Config::new().with("A", 1).with("B", 1)
        );
        assert!(space
            .check_member(&Config::new().with("A", 4).with("B", 2))
            .is_err());
        assert!(space
            .check_member(&Config::new().with("A", 2).with("B", 1))
            .is_err());
    }

    #[test]
    fn parse_config() {
        let c = Config::parse("BLOCK=256, TM=4").unwrap();
        assert_eq!(c.get("BLOCK"), Some(256));
        assert_eq!(c.to_string(), "BLOCK=256,TM=4");
        assert!(Config::parse("BLOCK").is_err());
        assert!(Config::parse("BLOCK=x").is_err());
    }
}
