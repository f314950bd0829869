//! The ptxas resource report (`--ptxas-options=-v`), parsed per function.
//!
//! ptxas writes, per entry function:
//! ```text
//! ptxas info    : Compiling entry function 'k' for 'sm_80'
//! ptxas info    : Function properties for k
//! ptxas         .     256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 32 registers, used 1 barriers, 256 bytes cumulative stack size, 1024 bytes smem, 380 bytes cmem[0]
//! ```
//! and for each non-inlined device function only the `Function properties` and stack lines.

use serde::{Deserialize, Serialize};

/// Resources one function uses, as ptxas reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub registers: u32,
    pub spill_stores_bytes: u32,
    pub spill_loads_bytes: u32,
    /// Static shared memory (`smem`).
    pub shared_bytes: u32,
    /// The function's own stack frame.
    pub stack_bytes: u32,
    /// Named barriers used (`bar.sync` ids).
    pub barriers: u32,
    /// Constant memory over all banks (`cmem[N]`; bank 0 holds the parameters).
    pub constant_bytes: u32,
}

impl ResourceUsage {
    /// Whether ptxas spilled registers to local memory.
    pub fn spills(&self) -> bool {
        self.spill_stores_bytes > 0 || self.spill_loads_bytes > 0
    }

    /// The element-wise maximum (the usage of a module with several entries).
    pub fn max(self, other: ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            registers: self.registers.max(other.registers),
            spill_stores_bytes: self.spill_stores_bytes.max(other.spill_stores_bytes),
            spill_loads_bytes: self.spill_loads_bytes.max(other.spill_loads_bytes),
            shared_bytes: self.shared_bytes.max(other.shared_bytes),
            stack_bytes: self.stack_bytes.max(other.stack_bytes),
            barriers: self.barriers.max(other.barriers),
            constant_bytes: self.constant_bytes.max(other.constant_bytes),
        }
    }
}

/// The report of one function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionResources {
    /// The (mangled, for device functions) symbol.
    pub name: String,
    /// A `__global__` entry (ptxas said "Compiling entry function").
    pub entry: bool,
    pub usage: ResourceUsage,
}

/// Parses every function's report from a compile log, in the order ptxas reports them.
pub fn parse_ptxas_log(log: &str) -> Vec<FunctionResources> {
    let mut out: Vec<FunctionResources> = Vec::new();
    let mut current: Option<usize> = None;
    for line in log.lines().filter_map(ptxas_message) {
        if let Some(name) = quoted_after(line, "Compiling entry function '") {
            let i = function_index(&mut out, name);
            out[i].entry = true;
            current = Some(i);
        } else if let Some(name) = line.strip_prefix("Function properties for ") {
            current = Some(function_index(&mut out, name.trim()));
        } else if let Some(i) = current {
            apply_counts(line, &mut out[i].usage);
        }
    }
    out
}

/// The combined usage of the entries in `functions`: the single entry's, or the maximum
/// over several.
pub fn entry_usage(functions: &[FunctionResources]) -> ResourceUsage {
    functions
        .iter()
        .filter(|f| f.entry)
        .fold(ResourceUsage::default(), |acc, f| acc.max(f.usage))
}

/// The message of a `ptxas ...` line, after its `info    :` / `.` tag.
fn ptxas_message(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("ptxas")?;
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix("info") {
        Some(r) => r.trim_start().strip_prefix(':')?,
        None => rest.strip_prefix('.')?,
    };
    Some(rest.trim())
}

fn quoted_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    rest.split('\'').next()
}

fn function_index(out: &mut Vec<FunctionResources>, name: &str) -> usize {
    if let Some(i) = out.iter().position(|f| f.name == name) {
        return i;
    }
    out.push(FunctionResources {
        name: name.to_string(),
        ..FunctionResources::default()
    });
    out.len() - 1
}

/// Applies the comma-separated counts of a stack or `Used ...` line.
fn apply_counts(line: &str, usage: &mut ResourceUsage) {
    let line = line.strip_prefix("Used ").unwrap_or(line);
    for item in line.split(',').map(str::trim) {
        let item = item.strip_prefix("used ").unwrap_or(item);
        let Some((count, what)) = item.split_once(' ') else {
            continue;
        };
        let Ok(n) = count.parse::<u32>() else {
            continue;
        };
        match what.trim() {
            "registers" => usage.registers = n,
            "barriers" => usage.barriers = n,
            "bytes stack frame" => usage.stack_bytes = n,
            "bytes spill stores" => usage.spill_stores_bytes = n,
            "bytes spill loads" => usage.spill_loads_bytes = n,
            "bytes smem" => usage.shared_bytes = n,
            w if w.starts_with("bytes cmem[") => usage.constant_bytes += n,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from NVRTC 12.9 for sm_80 (two entries and a non-inlined device function).
    const LOG: &str = "\
ptxas warning : For profile sm_80 adjusting per thread register count of 16 to lower bound of 24
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k2' for 'sm_80'
ptxas info    : Function properties for k2
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
ptxas info    : Compile time = 1.258 ms
ptxas info    : Compiling entry function 'k' for 'sm_80'
ptxas info    : Function properties for k
ptxas         .     256 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 256 bytes cumulative stack size, 1024 bytes smem, 380 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 5.084 ms
ptxas info    : Function properties for _Z6helperPfi
ptxas         .     40 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
";

    #[test]
    fn parses_every_function_of_a_recorded_log() {
        let f = parse_ptxas_log(LOG);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["k2", "k", "_Z6helperPfi"]);
        assert!(f[0].entry && f[1].entry && !f[2].entry);
        assert_eq!(
            f[1].usage,
            ResourceUsage {
                registers: 32,
                spill_stores_bytes: 24,
                spill_loads_bytes: 16,
                shared_bytes: 1024,
                stack_bytes: 256,
                barriers: 1,
                constant_bytes: 388,
            }
        );
        assert_eq!(f[0].usage.registers, 8);
        assert_eq!(f[0].usage.constant_bytes, 360);
        assert_eq!(f[2].usage.stack_bytes, 40);
        assert!(f[1].usage.spills() && !f[0].usage.spills());
    }

    #[test]
    fn entry_usage_is_the_maximum_over_entries() {
        let f = parse_ptxas_log(LOG);
        let u = entry_usage(&f);
        assert_eq!(u.registers, 32);
        assert_eq!(u.constant_bytes, 388);
        assert_eq!(
            u.stack_bytes, 256,
            "the device function's frame is not an entry's"
        );
    }

    #[test]
    fn sm90_format_without_cmem_and_an_empty_log() {
        let log = "ptxas info    : Compiling entry function 'add' for 'sm_90'\n\
                   ptxas info    : Function properties for add\n\
                   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                   ptxas info    : Used 10 registers\n";
        let f = parse_ptxas_log(log);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].usage.registers, 10);
        assert!(parse_ptxas_log("").is_empty());
    }
}
