//! Generated CUDA C line → Rust source line, for errors NVRTC reports in generated code.
//!
//! A side table rather than `#line` directives: with `#line`, NVRTC would report Rust
//! positions directly, but the numbered generated source of the error (and `-lineinfo` in
//! profilers) would then no longer match the text the user sees in `warpforge emit`.

use crate::nvrtc::NvrtcError;

/// For each generated line (1-based), the Rust line of the statement or function that
/// produced it, in the kernel's file. Device functions are assumed to be in the kernel's
/// file: the typed IR records only their line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineMap {
    file: String,
    /// Index `i` is generated line `i + 1`; `None` for header, preamble and blank lines.
    lines: Vec<Option<u32>>,
}

impl LineMap {
    pub fn new(file: &str, lines: Vec<Option<u32>>) -> LineMap {
        LineMap {
            file: file.to_string(),
            lines,
        }
    }

    /// The Rust line that generated line `generated` (1-based) came from.
    pub fn rust_line(&self, generated: u32) -> Option<u32> {
        let index = usize::try_from(generated).ok()?.checked_sub(1)?;
        self.lines.get(index).copied().flatten()
    }

    /// `file:line` of generated line `generated`, when it came from a statement.
    pub fn rust_location(&self, generated: u32) -> Option<String> {
        // Line 0 is what test IR built without spans carries: no location to show.
        let line = self.rust_line(generated).filter(|&l| l > 0)?;
        Some(format!("{}:{line}", self.file))
    }

    /// Number of generated lines the map covers.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The error with the Rust location of each generated line its log names (a
    /// [`NvrtcError::Compile`]); other errors unchanged.
    pub fn annotate(&self, error: NvrtcError) -> NvrtcError {
        error.with_rust_lines(|line| self.rust_location(line))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_kernels::vector_add;
    use super::super::{cuda_source, cuda_source_with_map};
    use super::*;
    use crate::nvrtc::{self, Arch, CompileOptions};
    use crate::typed::{Kernel, Stmt};

    /// `vector_add` with statement `i` of the body at Rust line `100 + i` (nested ones at
    /// `200 + ...`) and the function at line 90.
    fn spanned() -> Kernel {
        fn number(stmts: &mut [Stmt], base: u32) {
            for (i, s) in stmts.iter_mut().enumerate() {
                s.span.line = base + i as u32;
                if let crate::typed::StmtKind::If { then, els, .. } = &mut s.kind {
                    number(then, base + 100);
                    number(els, base + 150);
                }
            }
        }
        let mut k = vector_add();
        k.file = "kernels/src/vector_add.rs".into();
        k.body.line = 90;
        number(&mut k.body.body, 100);
        k
    }

    #[test]
    fn source_is_unchanged_and_every_line_is_mapped() {
        let k = spanned();
        let (source, map) = cuda_source_with_map(&k);
        assert_eq!(source, cuda_source(&k));
        assert_eq!(map.len(), source.lines().count());
        let lines: Vec<&str> = source.lines().collect();
        let entry = lines.iter().position(|l| l.contains("__global__")).unwrap() + 1;
        assert_eq!(map.rust_line(entry as u32), Some(90), "signature → fn line");
        assert_eq!(map.rust_line(1), None, "the header comes from no statement");
        for (i, text) in lines.iter().enumerate().skip(entry) {
            let at = map.rust_line(i as u32 + 1);
            assert!(at.is_some(), "line {} `{text}` is unmapped", i + 1);
        }
        assert_eq!(map.rust_location(0), None);
        assert_eq!(map.rust_location(10_000), None);
    }

    /// A codegen bug simulated by replacing the line of one statement with invalid C: the
    /// error names NVRTC's message, the generated line and the Rust line.
    #[test]
    fn compile_error_in_generated_code_names_the_rust_line() {
        let k = spanned();
        let (source, map) = cuda_source_with_map(&k);
        let mut lines: Vec<String> = source.lines().map(String::from).collect();
        let broken = (1..=lines.len() as u32)
            .find(|&n| map.rust_line(n) == Some(101))
            .expect("statement 1 printed a line") as usize;
        lines[broken - 1] = "    this_is_not_c = ;".into();
        let bad = lines.join("\n") + "\n";
        let err = match nvrtc::compile(&bad, Arch::SM90, &CompileOptions::default()) {
            Err(NvrtcError::NotFound { .. }) => {
                eprintln!("skipping the NVRTC part: NVRTC not found; checking the mapping only");
                let log = format!("kernel.cu({broken}): error: expected an expression\n");
                NvrtcError::Compile {
                    log,
                    numbered_source: format!(">{broken} | {}\n", lines[broken - 1]),
                    rust_lines: Vec::new(),
                }
            }
            Err(e) => e,
            Ok(_) => panic!("the broken source compiled"),
        };
        let msg = map.annotate(err).to_string();
        eprintln!("{msg}");
        assert!(msg.contains("expected an expression"), "{msg}");
        assert!(msg.contains("kernels/src/vector_add.rs:101"), "{msg}");
        assert!(msg.contains("this_is_not_c = ;"), "{msg}");
        assert!(msg.contains(&format!("kernel.cu({broken})")), "{msg}");
    }
}
