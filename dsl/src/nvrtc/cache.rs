//! The module cache: compiled cubins in memory and on disk.
//!
//! Key: sha256 of the warpforge-dsl version, NVRTC version, arch, NVRTC options and the
//! source. One file per key, `<key>.wfc`:
//! ```text
//! magic "WFCUBIN\n" | format u32 | payload length u64 | payload sha256 [32] | payload
//! payload: meta length u32 | meta (JSON: resources, functions, log, NVRTC version)
//!          | PTX length u64 | PTX | cubin length u64 | cubin      (all integers little-endian)
//! ```
//! The framing (magic, format, length, checksum) and the atomic write are
//! [`crate::cache_file`]'s: a reader sees a whole entry or none, also with several processes
//! writing one key at once. A corrupt entry is ignored (one warning) and overwritten; a
//! directory that cannot be created or written turns the disk cache off for this process
//! (one warning), leaving the memory cache.
//!
//! Size: the directory is capped (default 2 GiB; `WARPFORGE_CACHE_MAX_MB` sets the cap in
//! MiB, 0 for none). A hit refreshes its entry's modification time, and after this
//! process's first write and every 64 MiB written after it, the least recently used
//! entries are removed until the directory is back under 80% of the cap.

use super::api::Nvrtc;
use super::{command_line, compile, Arch, CompileOptions, Compiled, FunctionResources};
use super::{NvrtcError, ResourceUsage};
use crate::cache_file::{self, FileKind, Read};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

const KIND: FileKind = FileKind {
    magic: *b"WFCUBIN\n",
    format: 1,
};
const EXTENSION: &str = "wfc";

type Key = [u8; 32];

/// A cache of compiled modules: in memory, in front of an optional directory.
#[derive(Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<Key, Compiled>>,
    /// Cleared (with one warning) when the directory cannot be created or written.
    disk_usable: AtomicBool,
    /// Warnings given so far (for tests: each problem warns once).
    warnings: AtomicU32,
    /// The size cap of the directory in bytes (0: none).
    max_bytes: u64,
    /// Bytes written since the last trim, and whether one ran in this process.
    written: AtomicU64,
    trimmed_once: AtomicBool,
}

/// The default size cap of the disk cache.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Bytes written between two trims of the directory.
const TRIM_EVERY: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Meta {
    resources: ResourceUsage,
    functions: Vec<FunctionResources>,
    log: String,
    nvrtc_version: (i32, i32),
}

impl CompileCache {
    /// A cache on disk in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache::new(Some(dir.into()))
    }

    /// A cache in memory only.
    pub fn in_memory() -> CompileCache {
        CompileCache::new(None)
    }

    fn new(dir: Option<PathBuf>) -> CompileCache {
        CompileCache {
            dir,
            memory: Mutex::new(HashMap::new()),
            disk_usable: AtomicBool::new(true),
            warnings: AtomicU32::new(0),
            max_bytes: max_bytes_from_env(),
            written: AtomicU64::new(0),
            trimmed_once: AtomicBool::new(false),
        }
    }

    /// This cache with a size cap of `max_bytes` (0: none) instead of the environment's.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> CompileCache {
        self.max_bytes = max_bytes;
        self
    }

    /// `WARPFORGE_CACHE_DIR`, else `<user cache dir>/warpforge/nvrtc`.
    pub fn default_dir() -> Option<PathBuf> {
        match std::env::var_os("WARPFORGE_CACHE_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => dirs::cache_dir().map(|d| d.join("warpforge").join("nvrtc")),
        }
    }

    /// The process-wide cache, in [`CompileCache::default_dir`].
    pub fn global() -> &'static CompileCache {
        static GLOBAL: OnceLock<CompileCache> = OnceLock::new();
        GLOBAL.get_or_init(|| CompileCache::new(CompileCache::default_dir()))
    }

    /// The directory, when this cache has a usable one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir
            .as_deref()
            .filter(|_| self.disk_usable.load(Ordering::Relaxed))
    }

    /// The cached module for this compile, or NVRTC's (then stored).
    pub fn compile(
        &self,
        source: &str,
        arch: Arch,
        options: &CompileOptions,
    ) -> Result<Compiled, NvrtcError> {
        let key = cache_key(source, arch, options, Nvrtc::get()?.version);
        if let Some(hit) = self.memory_get(&key) {
            return Ok(hit);
        }
        if let Some(hit) = self.disk_get(&key) {
            self.memory_put(key, &hit);
            return Ok(hit);
        }
        let compiled = compile(source, arch, options)?;
        self.disk_put(&key, &compiled);
        self.memory_put(key, &compiled);
        Ok(compiled)
    }

    fn memory_get(&self, key: &Key) -> Option<Compiled> {
        let map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|c| Compiled {
            cached: true,
            ..c.clone()
        })
    }

    fn memory_put(&self, key: Key, compiled: &Compiled) {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(key, compiled.clone());
    }

    fn entry_path(&self, key: &Key) -> Option<PathBuf> {
        Some(self.dir()?.join(format!("{}.{EXTENSION}", hex(key))))
    }

    fn warn(&self, message: String) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{message}");
    }

    #[cfg(test)]
    pub(crate) fn warnings(&self) -> u32 {
        self.warnings.load(Ordering::Relaxed)
    }

    fn disk_get(&self, key: &Key) -> Option<Compiled> {
        let path = self.entry_path(key)?;
        let reason = match cache_file::read_checked(&path, KIND) {
            Read::Missing => return None,
            Read::Valid(payload) => match decode_payload(&payload) {
                Ok(compiled) => {
                    touch(&path);
                    return Some(compiled);
                }
                Err(reason) => reason,
            },
            Read::Corrupt(reason) => reason,
            Read::Unreadable(e) => {
                let shown = path.display();
                self.warn(format!(
                    "cannot read NVRTC cache entry {shown}: {e}; recompiling"
                ));
                return None;
            }
        };
        self.warn(format!(
            "ignoring corrupt NVRTC cache entry {}: {reason}; recompiling and rewriting it",
            path.display()
        ));
        None
    }

    fn disk_put(&self, key: &Key, compiled: &Compiled) {
        let Some(path) = self.entry_path(key) else {
            return;
        };
        let payload = encode_payload(compiled);
        let written = payload.len() as u64;
        if let Err(e) = cache_file::write_checked(&path, KIND, &payload) {
            // Only the first failure warns; later writes are not attempted.
            if self.disk_usable.swap(false, Ordering::Relaxed) {
                self.warn(format!(
                    "NVRTC disk cache disabled, compiled modules stay in memory: cannot \
                     write {}: {e} (set WARPFORGE_CACHE_DIR to a writable directory)",
                    path.display()
                ));
            }
            return;
        }
        let since = self.written.fetch_add(written, Ordering::Relaxed) + written;
        let first = !self.trimmed_once.swap(true, Ordering::Relaxed);
        if first || since >= TRIM_EVERY {
            self.written.store(0, Ordering::Relaxed);
            if let Some(dir) = self.dir() {
                trim(dir, self.max_bytes);
            }
        }
    }
}

/// `WARPFORGE_CACHE_MAX_MB` in bytes, else [`DEFAULT_MAX_BYTES`] (a value that is not a
/// number warns once and keeps the default).
fn max_bytes_from_env() -> u64 {
    match std::env::var("WARPFORGE_CACHE_MAX_MB") {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(mb) => mb.saturating_mul(1 << 20),
            Err(_) => {
                tracing::warn!(
                    "WARPFORGE_CACHE_MAX_MB={text:?} is not a whole number of MiB; using the \
                     default cap of {} MiB",
                    DEFAULT_MAX_BYTES >> 20
                );
                DEFAULT_MAX_BYTES
            }
        },
        Err(_) => DEFAULT_MAX_BYTES,
    }
}

/// Marks an entry as just used (its modification time orders eviction). Best effort.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used entries of `dir` until their total is at most 80% of
/// `max_bytes`, when it exceeds `max_bytes` (0: no cap). Entries another process removes
/// meanwhile are skipped; other files are never touched. Returns the bytes removed.
pub fn trim(dir: &Path, max_bytes: u64) -> u64 {
    if max_bytes == 0 {
        return 0;
    }
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    if total <= max_bytes {
        return 0;
    }
    entries.sort();
    let goal = max_bytes - max_bytes / 5;
    let mut removed = 0;
    for (_, len, path) in entries {
        if total <= goal {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            removed += len;
        }
        total = total.saturating_sub(len);
    }
    tracing::info!(
        "NVRTC disk cache over its cap of {} MiB: removed {} MiB of least recently used entries",
        max_bytes >> 20,
        removed >> 20
    );
    removed
}

fn cache_key(source: &str, arch: Arch, options: &CompileOptions, nvrtc: (i32, i32)) -> Key {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"warpforge-nvrtc-cache");
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(format!("{}.{}", nvrtc.0, nvrtc.1).as_bytes());
    field(arch.to_string().as_bytes());
    for option in command_line(arch, options) {
        field(option.as_bytes());
    }
    field(source.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// meta length u32 | meta JSON | PTX length u64 | PTX | cubin length u64 | cubin
fn encode_payload(c: &Compiled) -> Vec<u8> {
    let meta = Meta {
        resources: c.resources,
        functions: c.functions.clone(),
        log: c.log.clone(),
        nvrtc_version: c.nvrtc_version,
    };
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let mut payload = Vec::with_capacity(meta.len() + c.ptx.len() + c.cubin.len() + 20);
    payload.extend((meta.len() as u32).to_le_bytes());
    payload.extend(&meta);
    payload.extend((c.ptx.len() as u64).to_le_bytes());
    payload.extend(c.ptx.as_bytes());
    payload.extend((c.cubin.len() as u64).to_le_bytes());
    payload.extend(&c.cubin);
    payload
}

fn decode_payload(payload: &[u8]) -> Result<Compiled, String> {
    let mut r = Reader(payload);
    let meta_len = r.u32()? as usize;
    let meta: Meta = serde_json::from_slice(r.take(meta_len)?).map_err(|e| e.to_string())?;
    let ptx_len = r.u64()? as usize;
    let ptx = String::from_utf8(r.take(ptx_len)?.to_vec()).map_err(|e| e.to_string())?;
    let cubin_len = r.u64()? as usize;
    let cubin = r.take(cubin_len)?.to_vec();
    if !r.0.is_empty() {
        return Err(format!("{} stray bytes after the cubin", r.0.len()));
    }
    Ok(Compiled {
        cubin,
        ptx,
        resources: meta.resources,
        functions: meta.functions,
        log: meta.log,
        nvrtc_version: meta.nvrtc_version,
        cached: true,
    })
}

/// Reads a byte slice front to back; running out is "truncated".
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Compiled {
        Compiled {
            cubin: b"\x7fELF fake cubin".to_vec(),
            ptx: ".version 8.8\n.target sm_90\n".into(),
            resources: ResourceUsage {
                registers: 12,
                ..ResourceUsage::default()
            },
            functions: vec![],
            log: "ptxas info : Used 12 registers".into(),
            nvrtc_version: (12, 9),
            cached: false,
        }
    }

    fn encode(c: &Compiled) -> Vec<u8> {
        cache_file::encode(KIND, &encode_payload(c))
    }

    fn decode(bytes: &[u8]) -> Result<Compiled, String> {
        cache_file::decode(KIND, bytes).and_then(decode_payload)
    }

    #[test]
    fn entry_round_trips() {
        let back = decode(&encode(&sample())).unwrap();
        assert_eq!(
            back,
            Compiled {
                cached: true,
                ..sample()
            }
        );
    }

    #[test]
    fn damaged_entries_are_rejected() {
        let good = encode(&sample());
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), "checksum mismatch");
        assert!(decode(&good[..good.len() - 3])
            .unwrap_err()
            .contains("header says"));
        assert!(decode(&good[..10]).unwrap_err().starts_with("truncated"));
        assert!(decode(b"hello world, this is not a cache entry at all....!").is_err());
    }

    #[test]
    fn key_depends_on_every_input() {
        let o = CompileOptions::default();
        let base = cache_key("src", Arch::SM90, &o, (12, 9));
        assert_eq!(base, cache_key("src", Arch::SM90, &o, (12, 9)));
        assert_ne!(base, cache_key("src2", Arch::SM90, &o, (12, 9)));
        assert_ne!(base, cache_key("src", Arch::SM80, &o, (12, 9)));
        assert_ne!(base, cache_key("src", Arch::SM90, &o, (12, 8)));
        let fast = CompileOptions {
            fast_math: true,
            ..o.clone()
        };
        assert_ne!(base, cache_key("src", Arch::SM90, &fast, (12, 9)));
    }

    /// Truncated and damaged entries on disk: each read is a miss with one warning, and the
    /// next write replaces the entry (the disk cache stays on).
    #[test]
    fn corrupt_entry_on_disk_is_ignored_with_one_warning_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path());
        let key = [3; 32];
        cache.disk_put(&key, &sample());
        let path = cache.entry_path(&key).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(cache.disk_get(&key).is_some());
        let mut damaged = good.clone();
        damaged[good.len() / 2] ^= 0x40;
        for (n, bad) in [good[..good.len() / 3].to_vec(), damaged, Vec::new()]
            .iter()
            .enumerate()
        {
            std::fs::write(&path, bad).unwrap();
            assert!(cache.disk_get(&key).is_none(), "bad entry {n} was used");
            assert_eq!(cache.warnings(), n as u32 + 1, "one warning per bad read");
            cache.disk_put(&key, &sample());
            assert_eq!(std::fs::read(&path).unwrap(), good, "entry rewritten");
            assert!(cache.disk_get(&key).is_some());
        }
        assert!(
            cache.dir().is_some(),
            "corruption does not turn the disk off"
        );
    }

    /// Over the cap, the least recently used entries go first (a hit counts as a use), down
    /// to 80% of the cap; files that are not entries stay.
    #[test]
    fn the_directory_is_trimmed_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let entry_len = encode(&sample()).len() as u64;
        let cache = CompileCache::at(dir.path()).with_max_bytes(0);
        let day = std::time::Duration::from_secs(86_400);
        for k in 0..10u8 {
            cache.disk_put(&[k; 32], &sample());
            // Entry k last used k days after the first.
            let at = SystemTime::UNIX_EPOCH + day * (1000 + k as u32);
            let file = std::fs::File::options()
                .write(true)
                .open(cache.entry_path(&[k; 32]).unwrap())
                .unwrap();
            file.set_modified(at).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), vec![0u8; 4096]).unwrap();
        // Entry 0 is read now: the most recent.
        assert!(cache.disk_get(&[0; 32]).is_some());
        assert_eq!(
            trim(dir.path(), 20 * entry_len),
            0,
            "under the cap: nothing to do"
        );
        // A cap of 5 entries keeps 4 (80%): the one just read and the 3 newest.
        let removed = trim(dir.path(), 5 * entry_len);
        assert_eq!(removed, 6 * entry_len);
        let kept: Vec<u8> = (0..10u8)
            .filter(|&k| cache.entry_path(&[k; 32]).unwrap().exists())
            .collect();
        assert_eq!(kept, [0, 7, 8, 9]);
        assert!(dir.path().join("notes.txt").exists());
    }

    /// A cache with a cap trims on its first write.
    #[test]
    fn the_first_write_trims_an_oversized_directory() {
        let dir = tempfile::tempdir().unwrap();
        let entry_len = encode(&sample()).len() as u64;
        let uncapped = CompileCache::at(dir.path()).with_max_bytes(0);
        for k in 0..8u8 {
            uncapped.disk_put(&[k; 32], &sample());
        }
        let capped = CompileCache::at(dir.path()).with_max_bytes(4 * entry_len);
        capped.disk_put(&[100; 32], &sample());
        let left = std::fs::read_dir(dir.path()).unwrap().count() as u64;
        assert!(left * entry_len <= 4 * entry_len, "{left} entries left");
    }

    #[test]
    fn unwritable_dir_degrades_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        // A directory below a regular file can never be created.
        let cache = CompileCache::at(file.join("cache"));
        assert!(cache.dir().is_some());
        cache.disk_put(&[7; 32], &sample());
        assert!(
            cache.dir().is_none(),
            "disk cache turned off after the failure"
        );
        assert!(cache.disk_get(&[7; 32]).is_none());
    }

    /// A read-only cache directory: the disk cache turns off with exactly one warning, and
    /// the memory cache keeps working.
    #[test]
    fn read_only_dir_degrades_to_memory_with_one_warning() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ro = tmp.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root (as in CI containers) ignores directory permissions, so chmod alone does not
        // make the directory unwritable there; then use a directory below a regular file,
        // which no user can create.
        let dir = if std::fs::write(ro.join("probe"), b"").is_ok() {
            eprintln!("chmod 555 does not stop writes here (root): using a path under a file");
            let file = tmp.path().join("regular-file");
            std::fs::write(&file, b"").unwrap();
            file.join("cache")
        } else {
            ro.clone()
        };
        let cache = CompileCache::at(&dir);
        for key in [[1; 32], [2; 32], [3; 32]] {
            cache.disk_put(&key, &sample());
            cache.memory_put(key, &sample());
        }
        assert_eq!(cache.warnings(), 1, "one warning, not one per write");
        assert!(cache.dir().is_none());
        assert!(cache.memory_get(&[2; 32]).is_some_and(|c| c.cached));
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
