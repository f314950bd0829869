//! The output files of `warpforge generate`: the completions (JSONL, one record per request
//! in input order) and the `--dump-logits` file. Both are written to a temporary file beside
//! the destination and renamed over it at the end, so a crash never leaves a half-written
//! file under the destination's name; `-` writes to stdout.

use super::input::LineError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

/// Turns generated token ids back into text (the model's tokenizer, behind a callback).
pub type Detokenize = dyn Fn(&[u32]) -> Result<String, String>;

/// Why a request stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// It produced one of its stop token ids.
    Stop,
    /// It reached `max_tokens` (or the model's context).
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// One output record.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputRecord {
    /// `{"id", "text"?, "token_ids", "finish_reason"}`: `token_ids` holds the generated
    /// tokens only; `text` is written when the writer has a detokenizer.
    Completion {
        id: Value,
        token_ids: Vec<u32>,
        finish: Finish,
    },
    /// `{"id", "error"}` for a request that was not generated (`id` null when the line had
    /// no valid id).
    Error { id: Option<Value>, error: String },
}

impl OutputRecord {
    /// The error record of a bad input line.
    pub fn from_line_error(e: &LineError) -> Self {
        OutputRecord::Error {
            id: e.id.clone(),
            error: e.to_string(),
        }
    }
}

/// Failures while writing an output file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot detokenize the completion of request {id}: {message}")]
    Detokenize { id: Value, message: String },
    #[error("output record {index} is out of range (the input has {total} requests)")]
    IndexOutOfRange { index: usize, total: usize },
    #[error("output record {index} was given twice")]
    Duplicate { index: usize },
    #[error(
        "{} requests never got a result (first: input request {first}); the output \
             was not written",
        missing
    )]
    Missing { first: usize, missing: usize },
    #[error("{path}: {len} logits is not a whole number of rows of {vocab}")]
    Ragged {
        path: PathBuf,
        len: usize,
        vocab: usize,
    },
}

/// A file written beside its destination and renamed over it by [`AtomicSink::commit`];
/// dropped uncommitted, the temporary file is removed. `-` is stdout (nothing to rename).
struct AtomicSink {
    path: PathBuf,
    out: Sink,
}

enum Sink {
    Stdout(BufWriter<Stdout>),
    File {
        out: BufWriter<File>,
        temp: PathBuf,
        committed: bool,
    },
}

impl AtomicSink {
    fn create(path: &Path) -> Result<Self, OutputError> {
        let out = if path == Path::new("-") {
            Sink::Stdout(BufWriter::new(std::io::stdout()))
        } else {
            let temp = temp_path(path);
            let file = File::create(&temp).map_err(io_error(&temp))?;
            Sink::File {
                out: BufWriter::new(file),
                temp,
                committed: false,
            }
        };
        Ok(AtomicSink {
            path: path.to_path_buf(),
            out,
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.out {
            Sink::Stdout(w) => w,
            Sink::File { out, .. } => out,
        }
    }

    /// Flushes, syncs and renames the temporary file onto the destination.
    fn commit(mut self) -> Result<(), OutputError> {
        let path = self.path.clone();
        let io = io_error(&path);
        match &mut self.out {
            Sink::Stdout(w) => w.flush().map_err(&io),
            Sink::File {
                out,
                temp,
                committed,
            } => {
                out.flush().map_err(&io)?;
                out.get_ref().sync_all().map_err(&io)?;
                std::fs::rename(&*temp, &path).map_err(&io)?;
                *committed = true;
                Ok(())
            }
        }
    }
}

impl Drop for AtomicSink {
    fn drop(&mut self) {
        if let Sink::File {
            temp,
            committed: false,
            ..
        } = &self.out
        {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io {
        path: path.clone(),
        source,
    }
}

/// `dir/.name.PID.tmp` beside `path` (same directory, so the final rename is atomic).
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = format!(
        ".{}.{}.tmp",
        name.unwrap_or_else(|| "output".into()),
        std::process::id()
    );
    path.with_file_name(temp)
}

#[derive(Serialize)]
struct CompletionLine<'r> {
    id: &'r Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    token_ids: &'r [u32],
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ErrorLine<'r> {
    id: &'r Option<Value>,
    error: &'r str,
}

/// Writes the completions file: records may be given in any order ([`OutputWriter::put`]
/// with the request's input index) and are written in input order as soon as every earlier
/// one is in; [`OutputWriter::finish`] fails (and leaves no output) if any request has no
/// record, so no request is silently lost.
pub struct OutputWriter<'a> {
    sink: AtomicSink,
    detokenize: Option<&'a Detokenize>,
    pending: BTreeMap<usize, OutputRecord>,
    next: usize,
    total: usize,
}

impl<'a> OutputWriter<'a> {
    /// An output for `total` requests at `path` (`-` = stdout). With `detokenize`, each
    /// completion gets a `text` field.
    pub fn create(
        path: &Path,
        total: usize,
        detokenize: Option<&'a Detokenize>,
    ) -> Result<Self, OutputError> {
        Ok(OutputWriter {
            sink: AtomicSink::create(path)?,
            detokenize,
            pending: BTreeMap::new(),
            next: 0,
            total,
        })
    }

    /// The record of input request `index` (0-based over the file's requests, as
    /// `ParsedRequest::index`).
    pub fn put(&mut self, index: usize, record: OutputRecord) -> Result<(), OutputError> {
        if index >= self.total {
            let total = self.total;
            return Err(OutputError::IndexOutOfRange { index, total });
        }
        if index < self.next || self.pending.insert(index, record).is_some() {
            return Err(OutputError::Duplicate { index });
        }
        while let Some(record) = self.pending.remove(&self.next) {
            self.write_line(&record)?;
            self.next += 1;
        }
        Ok(())
    }

    fn write_line(&mut self, record: &OutputRecord) -> Result<(), OutputError> {
        let mut line = match record {
            OutputRecord::Completion {
                id,
                token_ids,
                finish,
            } => {
                let text = match self.detokenize {
                    Some(detok) => {
                        Some(detok(token_ids).map_err(|message| OutputError::Detokenize {
                            id: id.clone(),
                            message,
                        })?)
                    }
                    None => None,
                };
                let line = CompletionLine {
                    id,
                    text,
                    token_ids,
                    finish_reason: finish.as_str(),
                };
                serde_json::to_vec(&line)
            }
            OutputRecord::Error { id, error } => serde_json::to_vec(&ErrorLine { id, error }),
        }
        .map_err(|e| io_error(&self.sink.path)(e.into()))?;
        line.push(b'\n');
        let result = self.sink.writer().write_all(&line);
        result.map_err(io_error(&self.sink.path))
    }

    /// Checks that every request has its record, then moves the file into place.
    pub fn finish(self) -> Result<(), OutputError> {
        if self.next < self.total {
            return Err(OutputError::Missing {
                first: self.next,
                missing: self.total - self.next - self.pending.len(),
            });
        }
        self.sink.commit()
    }
}

/// Streams the `--dump-logits` file: one line `{"id", "logits": [[f32; vocab]; rows]}` per
/// request, written row by row (the file is never held in memory). Each float is printed as
/// the shortest decimal that reads back to the same f32 (Rust's `Debug` formatting, with an
/// exponent for very large or small values), so the dump round-trips bit-exactly through a
/// reader that parses f32 directly or through f64 (Python's `json`, serde_json); see the
/// round-trip test. JSON has no NaN or infinity: those are written as `null`.
pub struct LogitsWriter {
    sink: AtomicSink,
}

impl LogitsWriter {
    /// A dump at `path` (`-` = stdout).
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        Ok(LogitsWriter {
            sink: AtomicSink::create(path)?,
        })
    }

    /// Writes one request's prompt logits: `logits` holds `rows × vocab` floats, row-major.
    pub fn write(&mut self, id: &Value, logits: &[f32], vocab: usize) -> Result<(), OutputError> {
        if vocab == 0 || !logits.len().is_multiple_of(vocab) {
            let path = self.sink.path.clone();
            let len = logits.len();
            return Err(OutputError::Ragged { path, len, vocab });
        }
        let result = write_logits_line(self.sink.writer(), id, logits, vocab);
        result.map_err(io_error(&self.sink.path))
    }

    /// Moves the file into place.
    pub fn finish(self) -> Result<(), OutputError> {
        self.sink.commit()
    }
}

fn write_logits_line(
    w: &mut dyn Write,
    id: &Value,
    logits: &[f32],
    vocab: usize,
) -> std::io::Result<()> {
    write!(w, "{{\"id\":{id},\"logits\":[")?;
    for (r, row) in logits.chunks(vocab).enumerate() {
        w.write_all(if r == 0 { b"[" } else { b",[" })?;
        for (c, x) in row.iter().enumerate() {
            let sep = if c == 0 { "" } else { "," };
            if x.is_finite() {
                write!(w, "{sep}{x:?}")?;
            } else {
                write!(w, "{sep}null")?;
            }
        }
        w.write_all(b"]")?;
    }
    w.write_all(b"]}\n")
}

/// One line of a logits dump, read back (`null` reads as NaN).
#[derive(Debug, Deserialize)]
pub struct DumpedLogits {
    pub id: Value,
    #[serde(deserialize_with = "rows_with_nulls")]
    pub logits: Vec<Vec<f32>>,
}

fn rows_with_nulls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
    let rows: Vec<Vec<Option<f32>>> = Deserialize::deserialize(d)?;
    let nan = |x: Option<f32>| x.unwrap_or(f32::NAN);
    Ok(rows
        .into_iter()
        .map(|row| row.into_iter().map(nan).collect())
        .collect())
}

/// Reads a logits dump (for parity checks and tests).
pub fn read_logits(path: &Path) -> Result<Vec<DumpedLogits>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}
