//! `Sass` queries on a fixed listing, error paths through a stand-in tool, and the real
//! NVRTC + cuobjdump on a kernel that must use local memory.

use super::*;
use crate::nvrtc::{compile, CompileOptions};

const LISTING: &str = "
\tcode for sm_90
\t\tFunction : k
        /*0000*/                   HMMA.16816.F32 R4, R8, R12, R4 ;   /* 0x0 */
        /*0010*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ; /* 0x0 */
        /*0020*/               @P0 LDSM.16.M88.4 R8, [R2] ;          /* 0x0 */
        /*0030*/                   LDS.U.128 R8, [R2] ;              /* 0x0 */
        /*0040*/                   STL.64 [R1], R4 ;                 /* 0x0 */
\t\tFunction : f
        /*0000*/                   LDL R5, [R1] ;                    /* 0x0 */
        /*0010*/                   RET.REL.NODEC R6 0x0 ;            /* 0x0 */
";

fn sample() -> Sass {
    let listing = parse::parse_listing(LISTING);
    Sass {
        arch: Arch::SM90,
        text: LISTING.to_string(),
        functions: listing.functions,
    }
}

#[test]
fn counts_by_opcode_prefix_across_functions() {
    let sass = sample();
    assert_eq!(sass.count("HMMA"), 2);
    assert_eq!(sass.count("HMMA.16816.F32.BF16"), 1);
    assert_eq!(sass.count("LDS"), 2, "LDS is a prefix of LDSM");
    assert_eq!(sass.count("LDS."), 1);
    assert_eq!(sass.count("LDGSTS"), 0);
    assert_eq!(sass.local_memory_ops(), 2);
    assert_eq!(sass.function("f").unwrap().instructions.len(), 2);
    assert!(sass.function("g").is_none());
    assert_eq!(
        sass.summary(),
        "sm_90: 7 instructions; HMMA 2, QMMA 0, LDGSTS 0, LDSM 1, LDL 1, STL 1"
    );
}

/// A shell script standing in for cuobjdump: prints `stdout`, exits with `code`.
#[cfg(unix)]
fn stand_in(dir: &Path, stdout: &str, code: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let listing = dir.join("listing.txt");
    std::fs::write(&listing, stdout).unwrap();
    let tool = dir.join("cuobjdump");
    let script = format!(
        "#!/bin/sh\ntest -f \"$2\" || exit 9\ncat '{}'\necho 'a note' >&2\nexit {code}\n",
        listing.display()
    );
    std::fs::write(&tool, script).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool
}

#[cfg(unix)]
#[test]
fn the_listing_must_be_for_the_requested_arch() {
    let dir = tempfile::tempdir().unwrap();
    let tool = stand_in(dir.path(), LISTING, 0);
    let sass = disassemble_with(&tool, b"\x7fELF", Arch::SM90).unwrap();
    assert_eq!(sass.count("HMMA"), 2);
    let err = disassemble_with(&tool, b"\x7fELF", Arch::SM80).unwrap_err();
    assert!(matches!(err, SassError::ArchMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the cubin holds SASS for sm_90, not for the requested sm_80"
    );
    let empty = stand_in(dir.path(), "", 0);
    let err = disassemble_with(&empty, b"", Arch::SM80).unwrap_err();
    assert!(err.to_string().contains("no architecture"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_failing_tool_reports_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let tool = stand_in(dir.path(), "", 1);
    let err = disassemble_with(&tool, b"junk", Arch::SM80).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SassError::Failed { .. }), "{err:?}");
    assert!(msg.contains("a note") && msg.contains("-sass"), "{msg}");
    let err = disassemble_with(&dir.path().join("absent"), b"", Arch::SM80).unwrap_err();
    assert!(err.to_string().starts_with("could not run "), "{err}");
}

/// A thread-private array indexed at run time: it lives in local memory.
const LOCAL_ARRAY: &str = r#"
extern "C" __global__ void pick(float* out, int i) {
    float a[256];
    for (int k = 0; k < 256; k++) a[(k + i) & 255] = out[k] * k;
    out[0] = a[(i * 7) & 255];
}
"#;

#[test]
fn real_cuobjdump_sees_local_memory_on_sm80_and_sm90() {
    let tool = match cuobjdump() {
        Ok(tool) => tool,
        Err(e) if std::env::var("WARPFORGE_REQUIRE_NVRTC").as_deref() == Ok("1") => {
            panic!("WARPFORGE_REQUIRE_NVRTC=1 but cuobjdump is missing: {e}")
        }
        Err(e) => return eprintln!("SKIPPED: cuobjdump is not available here:\n{e}"),
    };
    if let Err(e) = crate::nvrtc::version() {
        return eprintln!("SKIPPED: NVRTC is not available here:\n{e}");
    }
    for arch in [Arch::SM80, Arch::SM90] {
        let cubin = compile(LOCAL_ARRAY, arch, &CompileOptions::default())
            .unwrap()
            .cubin;
        let sass = disassemble_with(&tool, &cubin, arch).unwrap();
        assert!(sass.function("pick").is_some(), "{}", sass.text);
        assert!(sass.count("STL") > 0, "{arch}: no STL in\n{}", sass.text);
        assert!(sass.local_memory_ops() > sass.count("STL"), "{}", sass.text);
        assert!(sass.count("EXIT") > 0, "{}", sass.text);
    }
}
