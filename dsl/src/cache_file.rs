//! Checksummed cache files written atomically: the storage layer of the NVRTC module cache,
//! reusable by any other on-disk cache (the tuning cache).
//!
//! A file is
//! ```text
//! magic [8] | format u32 | payload length u64 | payload sha256 [32] | payload
//! ```
//! (integers little-endian). [`write_atomic`] writes a temporary file in the same directory
//! (a name unique to the process and the call), flushes it and renames it over the target,
//! so concurrent writers of one path — threads or processes — each replace the whole file
//! and a reader sees a complete file or none. [`read_checked`] verifies magic, format,
//! length and checksum, so a truncated or damaged file is reported, never returned.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// What a kind of cache file starts with: its magic bytes and format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKind {
    pub magic: [u8; 8],
    pub format: u32,
}

/// The result of reading a cache file.
#[derive(Debug)]
pub enum Read {
    /// No file: a plain miss.
    Missing,
    /// The verified payload.
    Valid(Vec<u8>),
    /// The file exists but is not a whole, intact file of this kind (the reason says why);
    /// callers ignore it, warn once and rewrite it.
    Corrupt(String),
    /// The file exists but cannot be read (permissions, I/O error).
    Unreadable(std::io::Error),
}

/// The framed bytes of `payload`: header (magic, format, length, checksum) and payload.
pub fn encode(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend(kind.magic);
    out.extend(kind.format.to_le_bytes());
    out.extend((payload.len() as u64).to_le_bytes());
    out.extend(Sha256::digest(payload));
    out.extend(payload);
    out
}

/// The payload of framed `bytes`, or why they are not an intact file of `kind`.
pub fn decode(kind: FileKind, bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[..8] != kind.magic {
        return Err("bad magic (not a file of this cache)".into());
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != kind.format {
        return Err(format!("format {format}, expected {}", kind.format));
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len} (truncated or extended)",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != &header[20..52] {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Reads and verifies the file at `path`.
pub fn read_checked(path: &Path, kind: FileKind) -> Read {
    match std::fs::read(path) {
        Ok(bytes) => match decode(kind, &bytes) {
            Ok(payload) => Read::Valid(payload.to_vec()),
            Err(reason) => Read::Corrupt(reason),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Read::Missing,
        Err(e) => Read::Unreadable(e),
    }
}

/// Frames `payload` ([`encode`]) and writes it to `path` atomically ([`write_atomic`]).
pub fn write_checked(path: &Path, kind: FileKind, payload: &[u8]) -> std::io::Result<()> {
    write_atomic(path, &encode(kind, payload))
}

/// Writes `bytes` to `path` so that no reader ever sees a partial file: a temporary file in
/// the same directory (same file system, so the rename is atomic), then a rename over
/// `path`. Creates the directory when missing. The temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Unique per process and per call: concurrent writers never share a temporary file.
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.flush()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
