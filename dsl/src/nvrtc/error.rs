//! Errors of the NVRTC path, and the numbered-source view of a failed compile.

use super::Arch;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The command that installs NVRTC and the CUDA headers into the project's `.venv`.
pub const INSTALL_HINT: &str = "python3 -m venv .venv && .venv/bin/pip install \
nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12";

/// Lines of context shown around each source line a compile log mentions.
const CONTEXT_LINES: usize = 5;

#[derive(Clone, Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error(
        "NVRTC (libnvrtc.so.13, .12 or later) with the CUDA headers (cuda_fp16.h) of the same \
         installation was not found. Tried:\n{}\n\
         Fix: run `{INSTALL_HINT}` in the workspace root (or `scripts/test`, which does it), \
         set CUDA_HOME to a CUDA toolkit, or point WARPFORGE_NVRTC_LIB / \
         WARPFORGE_CUDA_INCLUDE at them.",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound { tried: Vec<String> },

    #[error("could not load NVRTC from {path}: {reason}")]
    Load { path: String, reason: String },

    #[error(
        "kernel `{kernel}` uses `{intrinsic}`, which needs {needs} or newer; it cannot be \
         compiled for {arch}. Compile for {needs}+ (or use a kernel without it on this GPU)"
    )]
    ArchTooOld {
        kernel: String,
        intrinsic: &'static str,
        needs: Arch,
        arch: Arch,
    },

    #[error(
        "kernel `{kernel}` uses `{intrinsic}`, which needs PTX ISA {}.{} (NVRTC {}.{} or newer); \
         the NVRTC loaded from {lib} is {}.{}. Point CUDA_HOME or WARPFORGE_NVRTC_LIB at a newer \
         CUDA toolkit, or run scripts/setup-nvrtc for the pinned wheels",
        .ptx_isa.0, .ptx_isa.1, .needs.0, .needs.1, .found.0, .found.1
    )]
    NvrtcTooOld {
        kernel: String,
        intrinsic: &'static str,
        ptx_isa: (u32, u32),
        needs: (i32, i32),
        found: (i32, i32),
        lib: String,
    },

    #[error("`{text}` is not a GPU architecture; write it as sm_90, 90 or 9.0")]
    InvalidArch { text: String },

    #[error(
        "this NVRTC cannot compile for {arch}; it supports {}",
        .supported.iter().map(Arch::to_string).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedArch { arch: Arch, supported: Vec<Arch> },

    #[error(
        "NVRTC failed to compile the generated CUDA C:\n{log}\n{}\
         --- generated source ---\n{numbered_source}",
        render_rust_lines(.rust_lines)
    )]
    Compile {
        log: String,
        numbered_source: String,
        /// For each generated line the log names whose origin is known: the line and the
        /// Rust `file:line` it was generated from (see `codegen::LineMap::annotate`).
        rust_lines: Vec<(u32, String)>,
    },

    #[error("{call} failed: {message} (nvrtcResult {code})")]
    Api {
        call: &'static str,
        code: i32,
        message: String,
    },

    #[error("cannot pass {what} to NVRTC: it contains a NUL byte")]
    NulByte { what: String },
}

impl NvrtcError {
    /// For a [`NvrtcError::Compile`], looks up the Rust location of each generated line its
    /// log names (`locate(line)`); any other error is returned unchanged.
    pub fn with_rust_lines(self, locate: impl Fn(u32) -> Option<String>) -> NvrtcError {
        let NvrtcError::Compile {
            log,
            numbered_source,
            ..
        } = self
        else {
            return self;
        };
        let rust_lines = mentioned_lines(&log, super::PROGRAM_NAME)
            .into_iter()
            .filter_map(|n| {
                let n = u32::try_from(n).ok()?;
                Some((n, locate(n)?))
            })
            .collect();
        NvrtcError::Compile {
            log,
            numbered_source,
            rust_lines,
        }
    }
}

/// `--- generated from ---` and one `kernel.cu(LINE) <- file:line` per mapped line; empty
/// when none is known.
fn render_rust_lines(lines: &[(u32, String)]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("--- Rust source of the lines NVRTC reports ---\n");
    for (generated, rust) in lines {
        let _ = writeln!(out, "  {}({generated}) <- {rust}", super::PROGRAM_NAME);
    }
    out
}

/// Line numbers (1-based) that `log` reports for the program named `program`:
/// NVRTC writes them as `program(LINE): error: ...`.
pub fn mentioned_lines(log: &str, program: &str) -> BTreeSet<usize> {
    let pattern = format!("{program}(");
    let mut lines = BTreeSet::new();
    for (at, _) in log.match_indices(&pattern) {
        let rest = &log[at + pattern.len()..];
        let Some(close) = rest.find(')') else {
            continue;
        };
        if let Ok(line) = rest[..close].parse::<usize>() {
            lines.insert(line);
        }
    }
    lines
}

/// The source with line numbers: only the lines within ±5 of a line in `marked` (those
/// marked with `>`), or all of it when `marked` is empty or names no line of the source.
pub fn numbered_source(source: &str, marked: &BTreeSet<usize>) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let width = lines.len().max(1).to_string().len();
    let valid: BTreeSet<usize> = marked
        .iter()
        .copied()
        .filter(|l| (1..=lines.len()).contains(l))
        .collect();
    let shown = |n: usize| {
        valid.is_empty()
            || valid
                .iter()
                .any(|m| n + CONTEXT_LINES >= *m && n <= m + CONTEXT_LINES)
    };
    let mut out = String::new();
    let mut skipped = false;
    for (i, text) in lines.iter().enumerate() {
        let n = i + 1;
        if !shown(n) {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push_str("  ...\n");
        }
        skipped = false;
        let mark = if valid.contains(&n) { '>' } else { ' ' };
        let _ = writeln!(out, "{mark}{n:>width$} | {text}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "kernel.cu(3): error: identifier \"x\" is undefined\n    b[0] = x;\n\n\
                       kernel.cu(20): warning: unused\n1 errors detected in the compilation of \"kernel.cu\".\n";

    #[test]
    fn finds_lines_the_log_mentions() {
        let lines: Vec<usize> = mentioned_lines(LOG, "kernel.cu").into_iter().collect();
        assert_eq!(lines, vec![3, 20]);
        assert!(mentioned_lines("nvrtc: error: invalid value", "kernel.cu").is_empty());
    }

    #[test]
    fn shows_context_around_marked_lines_only() {
        let source: String = (1..=40).map(|i| format!("line{i}\n")).collect();
        let marked = BTreeSet::from([3, 20]);
        let text = numbered_source(&source, &marked);
        assert!(text.contains("> 3 | line3"), "{text}");
        assert!(text.contains("  8 | line8"));
        assert!(
            !text.contains("line9\n"),
            "line 9 is beyond ±5 of 3: {text}"
        );
        assert!(text.contains("  ...\n 15 | line15"));
        assert!(text.contains(">20 | line20"));
        assert!(text.contains(" 25 | line25") && !text.contains("line26"));
    }

    #[test]
    fn shows_whole_source_when_no_line_is_known() {
        let source = "a\nb\nc\n";
        let text = numbered_source(source, &BTreeSet::new());
        assert_eq!(text, " 1 | a\n 2 | b\n 3 | c\n");
        let text = numbered_source(source, &BTreeSet::from([99]));
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn not_found_lists_what_was_tried_and_the_fix() {
        let err = NvrtcError::NotFound {
            tried: vec![
                "CUDA_HOME: not set".into(),
                "/usr/local/cuda: absent".into(),
            ],
        };
        let msg = err.to_string();
        assert!(
            msg.contains("  - CUDA_HOME: not set\n  - /usr/local/cuda: absent"),
            "{msg}"
        );
        assert!(msg.contains(INSTALL_HINT));
        assert!(msg.contains("scripts/test"));
    }
}
