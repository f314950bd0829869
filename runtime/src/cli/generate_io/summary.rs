//! The summary `warpforge generate` prints at the end of a run.

use serde_json::{json, Value};
use std::fmt;

/// What a run did and how fast. Rates are tokens per second of wall time spent in prefill
/// (prompt) and decode (generation) steps; a step that mixes both counts toward whichever
/// the caller assigns it to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Requests generated.
    pub requests: usize,
    /// Requests skipped as invalid (`--skip-invalid`).
    pub invalid_requests: usize,
    /// Prompt tokens of all requests.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Wall seconds of prefill.
    pub prefill_seconds: f64,
    /// Wall seconds of decode.
    pub decode_seconds: f64,
    /// Tokens computed only as padding (0 with packed prefill).
    pub padding_tokens: usize,
    /// KV-cache bytes not computed or stored thanks to prefix sharing.
    pub kv_bytes_saved: u64,
    /// The most KV-cache bytes in use at once.
    pub peak_kv_bytes: u64,
    /// Requests preempted (and later recomputed).
    pub preemptions: usize,
}

impl Summary {
    /// Prompt tokens per second of prefill; `None` without prefill time.
    pub fn prefill_tokens_per_second(&self) -> Option<f64> {
        rate(self.prompt_tokens, self.prefill_seconds)
    }

    /// Generated tokens per second of decode; `None` without decode time.
    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        rate(self.generated_tokens, self.decode_seconds)
    }

    /// The summary as one JSON object (raw numbers; rates `null` when undefined).
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "invalid_requests": self.invalid_requests,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "prefill_tokens_per_second": self.prefill_tokens_per_second(),
            "decode_tokens_per_second": self.decode_tokens_per_second(),
            "padding_tokens": self.padding_tokens,
            "kv_bytes_saved": self.kv_bytes_saved,
            "peak_kv_bytes": self.peak_kv_bytes,
            "preemptions": self.preemptions,
        })
    }
}

fn rate(tokens: usize, seconds: f64) -> Option<f64> {
    (seconds > 0.0 && seconds.is_finite()).then(|| tokens as f64 / seconds)
}

/// `1234.5` → "1.23 k tok/s"; `None` → "n/a".
fn tokens_per_second(rate: Option<f64>) -> String {
    match rate {
        None => "n/a".to_string(),
        Some(r) if r >= 1e6 => format!("{:.2} M tok/s", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.2} k tok/s", r / 1e3),
        Some(r) => format!("{r:.1} tok/s"),
    }
}

/// Bytes in binary units: `1536` → "1.5 KiB", `0` → "0 B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "  {label:<20} {value}")
        };
        let mut requests = self.requests.to_string();
        if self.invalid_requests > 0 {
            requests += &format!(" ({} invalid, skipped)", self.invalid_requests);
        }
        writeln!(f, "summary")?;
        row(f, "requests", requests)?;
        let tokens =
            |n: usize, secs: f64, r| format!("{n:>8} in {secs:>8.3} s  {}", tokens_per_second(r));
        let prefill = self.prefill_tokens_per_second();
        let decode = self.decode_tokens_per_second();
        row(
            f,
            "prompt tokens",
            tokens(self.prompt_tokens, self.prefill_seconds, prefill),
        )?;
        row(
            f,
            "generated tokens",
            tokens(self.generated_tokens, self.decode_seconds, decode),
        )?;
        row(
            f,
            "padding waste",
            format!("{:>8} tokens", self.padding_tokens),
        )?;
        row(
            f,
            "KV saved (sharing)",
            format!("{:>8}", human_bytes(self.kv_bytes_saved)),
        )?;
        row(
            f,
            "peak KV memory",
            format!("{:>8}", human_bytes(self.peak_kv_bytes)),
        )?;
        row(f, "preemptions", format!("{:>8}", self.preemptions))
    }
}
