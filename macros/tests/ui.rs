//! Compile-fail tests: unsupported syntax is a compile error at its own span that says what
//! to write instead. Regenerate the expected output with `TRYBUILD=overwrite`.

#[test]
fn unsupported_syntax_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
