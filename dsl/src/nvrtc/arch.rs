//! GPU architectures (`sm_XY`): parsing, display, and choosing a compile target.

use super::NvrtcError;
use std::fmt;
use std::str::FromStr;

/// A real NVIDIA architecture, `sm_XY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    pub const SM89: Arch = Arch { major: 8, minor: 9 };
    pub const SM90: Arch = Arch { major: 9, minor: 0 };

    pub const fn new(major: u32, minor: u32) -> Arch {
        Arch { major, minor }
    }

    /// Parses `sm_90`, `compute_90`, `90`, `100` or `9.0` (case-insensitive).
    pub fn parse(text: &str) -> Result<Arch, NvrtcError> {
        let invalid = || NvrtcError::InvalidArch {
            text: text.to_string(),
        };
        let t = text.trim().to_ascii_lowercase();
        let digits = t
            .strip_prefix("sm_")
            .or_else(|| t.strip_prefix("compute_"))
            .unwrap_or(&t);
        if let Some((major, minor)) = digits.split_once('.') {
            let major = parse_small(major).ok_or_else(invalid)?;
            let minor = parse_small(minor).filter(|m| *m < 10).ok_or_else(invalid)?;
            return Ok(Arch { major, minor });
        }
        // `XY` / `XYZ`: the last digit is the minor version, as NVRTC numbers them.
        if digits.len() < 2 || digits.len() > 3 {
            return Err(invalid());
        }
        let code = parse_small(digits).ok_or_else(invalid)?;
        Ok(Arch::from_code(code))
    }

    /// From NVRTC's numbering (`90` → sm_90, `100` → sm_100).
    pub fn from_code(code: u32) -> Arch {
        Arch {
            major: code / 10,
            minor: code % 10,
        }
    }

    /// NVRTC's numbering: `major * 10 + minor`.
    pub fn code(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// The architecture to compile for when running on `device`: the device's own arch when
    /// NVRTC supports it, else the newest supported arch of an older generation (whose PTX
    /// the driver can JIT for the device). `None` when every supported arch is newer.
    pub fn compile_target(device: Arch, supported: &[Arch]) -> Option<Arch> {
        if supported.contains(&device) {
            return Some(device);
        }
        supported.iter().copied().filter(|a| *a < device).max()
    }
}

fn parse_small(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)
    }
}

impl FromStr for Arch {
    type Err = NvrtcError;

    fn from_str(s: &str) -> Result<Arch, NvrtcError> {
        Arch::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        for text in ["sm_90", "SM_90", "90", "9.0", "compute_90", " sm_90 "] {
            assert_eq!(Arch::parse(text).unwrap(), Arch::SM90, "{text}");
        }
        assert_eq!(Arch::parse("sm_89").unwrap(), Arch::SM89);
        assert_eq!(Arch::parse("100").unwrap(), Arch::new(10, 0));
        assert_eq!(Arch::parse("12.1").unwrap(), Arch::new(12, 1));
        assert_eq!(Arch::SM80.to_string(), "sm_80");
        assert_eq!(Arch::new(12, 0).to_string(), "sm_120");
    }

    #[test]
    fn rejects_unknown_formats_clearly() {
        for text in ["", "sm_", "9", "sm_9x", "ampere", "9.10", "1000", "-90"] {
            let err = Arch::parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, NvrtcError::InvalidArch { .. }), "{text}");
            assert!(msg.contains(&format!("`{text}`")), "{msg}");
            assert!(
                msg.contains("sm_90"),
                "message shows the expected form: {msg}"
            );
        }
    }

    #[test]
    fn compile_target_falls_back_to_older_generation() {
        let supported = [Arch::SM80, Arch::SM89, Arch::SM90, Arch::new(12, 0)];
        assert_eq!(
            Arch::compile_target(Arch::SM89, &supported),
            Some(Arch::SM89)
        );
        assert_eq!(
            Arch::compile_target(Arch::new(13, 0), &supported),
            Some(Arch::new(12, 0))
        );
        assert_eq!(
            Arch::compile_target(Arch::new(8, 6), &supported),
            Some(Arch::SM80)
        );
        assert_eq!(Arch::compile_target(Arch::new(7, 5), &supported), None);
    }
}
