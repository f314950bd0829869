//! What a tuning result is keyed by: the device, the kernel's code, its dtypes and the
//! problem's shape bucket.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most dimensions a problem shape may have (every library kernel has at most 3).
pub const MAX_RANK: usize = 6;

/// A power-of-two shape bucket: each dimension rounded up to a power of two, held as its
/// exponent so that a bucket is `Copy`, hashes without allocating and compares in
/// log-space. A dimension of 0 counts as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    rank: u8,
    log2: [u8; MAX_RANK],
}

impl Bucket {
    /// The bucket of `dims`; `None` when it has more than [`MAX_RANK`] dimensions.
    pub fn of(dims: &[usize]) -> Option<Bucket> {
        if dims.len() > MAX_RANK {
            return None;
        }
        let mut log2 = [0u8; MAX_RANK];
        for (slot, &d) in log2.iter_mut().zip(dims) {
            *slot = ceil_log2(d);
        }
        Some(Bucket {
            rank: dims.len() as u8,
            log2,
        })
    }

    /// From dimensions that are already powers of two (as stored in the cache file).
    pub fn from_powers(dims: &[u64]) -> Option<Bucket> {
        if dims.len() > MAX_RANK || dims.iter().any(|d| !d.is_power_of_two()) {
            return None;
        }
        let mut log2 = [0u8; MAX_RANK];
        for (slot, &d) in log2.iter_mut().zip(dims) {
            *slot = d.trailing_zeros() as u8;
        }
        Some(Bucket {
            rank: dims.len() as u8,
            log2,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// The rounded dimensions.
    pub fn dims(&self) -> Vec<u64> {
        self.exponents().iter().map(|&e| 1u64 << e).collect()
    }

    pub fn exponents(&self) -> &[u8] {
        &self.log2[..self.rank as usize]
    }

    /// Log-distance: the sum over dimensions of |log2 a - log2 b| (how many doublings
    /// apart); `None` when the ranks differ.
    pub fn distance(&self, other: &Bucket) -> Option<u32> {
        if self.rank != other.rank {
            return None;
        }
        let d = self
            .exponents()
            .iter()
            .zip(other.exponents())
            .map(|(&a, &b)| a.abs_diff(b) as u32)
            .sum();
        Some(d)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims().iter().map(u64::to_string).collect();
        f.write_str(&dims.join("x"))
    }
}

/// ⌈log2 d⌉, with 0 and 1 both giving 0.
fn ceil_log2(d: usize) -> u8 {
    if d <= 1 {
        0
    } else {
        (usize::BITS - (d - 1).leading_zeros()) as u8
    }
}

/// The device a cache file belongs to. Results measured under another driver, NVRTC or
/// warpforge version are not trusted: the file is rebuilt when any of these changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// The GPU's name as the driver reports it (`NVIDIA H200`).
    pub name: String,
    /// Compute capability (`sm_90`).
    pub arch: String,
    /// Streaming multiprocessors (distinguishes cut-down parts of the same name).
    pub sms: u32,
    /// CUDA driver version (`12.8`).
    pub driver: String,
    /// NVRTC version (`12.9`).
    pub nvrtc: String,
    /// warpforge version: the code generator changes with it.
    pub warpforge: String,
}

impl DeviceKey {
    /// The cache file's name without extension: `nvidia-h200-sm_90-132sm`. Driver and
    /// NVRTC versions are not in the name: an upgrade rebuilds the same file rather than
    /// leaving stale files behind.
    pub fn file_stem(&self) -> String {
        let mut slug = String::new();
        for c in self.name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_matches('-');
        let slug = if slug.is_empty() { "gpu" } else { slug };
        format!("{slug}-{}-{}sm", self.arch, self.sms)
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {} SMs, driver {}, NVRTC {}, warpforge {})",
            self.name, self.arch, self.sms, self.driver, self.nvrtc, self.warpforge
        )
    }
}

/// One tuning problem's key within a device's cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub kernel: String,
    /// The kernel's code hash (see [`crate::kernel::TuneKernel`]).
    pub ir_hash: String,
    /// Element types of the kernel's buffers, in parameter order, deduplicated.
    pub dtypes: Vec<String>,
    pub bucket: Bucket,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_each_dim_up_to_a_power_of_two() {
        let b = Bucket::of(&[1, 16, 17, 4096, 4097, 0]).unwrap();
        assert_eq!(b.dims(), [1, 16, 32, 4096, 8192, 1]);
        assert_eq!(b.to_string(), "1x16x32x4096x8192x1");
        assert_eq!(Bucket::of(&[3, 5]), Bucket::of(&[4, 8]));
        assert_ne!(Bucket::of(&[4, 9]), Bucket::of(&[4, 8]));
        assert!(Bucket::of(&[1; MAX_RANK + 1]).is_none());
        assert_eq!(Bucket::from_powers(&[4, 8]), Bucket::of(&[3, 7]));
        assert!(Bucket::from_powers(&[6]).is_none());
    }

    #[test]
    fn distance_counts_doublings_and_needs_the_same_rank() {
        let a = Bucket::of(&[16, 4096, 4096]).unwrap();
        let b = Bucket::of(&[128, 4096, 1024]).unwrap();
        assert_eq!(a.distance(&b), Some(3 + 2));
        assert_eq!(a.distance(&a), Some(0));
        assert_eq!(a.distance(&Bucket::of(&[16, 4096]).unwrap()), None);
    }

    #[test]
    fn device_file_stem_is_a_safe_file_name() {
        let key = DeviceKey {
            name: "NVIDIA H100 80GB HBM3".into(),
            arch: "sm_90".into(),
            sms: 132,
            driver: "12.8".into(),
            nvrtc: "12.9".into(),
            warpforge: "0.1.0".into(),
        };
        assert_eq!(key.file_stem(), "nvidia-h100-80gb-hbm3-sm_90-132sm");
        let odd = DeviceKey {
            name: "../..".into(),
            ..key
        };
        assert_eq!(odd.file_stem(), "gpu-sm_90-132sm");
    }
}
