//! Checks of a matrix operand's layout before a launch, shared by the GEMM launchers.
//!
//! The GEMMs copy rows of A and B with 16-byte `cp.async`: a leading dimension that breaks
//! the 16-byte row alignment is a clean `MisalignedCopy` on the interpreter but a lost
//! context on a GPU, and a buffer shorter than its rows is an illegal address there. So
//! the launchers check here, before either backend sees the launch, and both backends give
//! the same [`DeviceError::ArgMismatch`].

use warpforge_dsl::backend::DeviceError;

/// One row-major operand as a launch passes it.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub kernel: &'a str,
    /// The leading-dimension parameter's name (`lda`), for the message.
    pub param: &'a str,
    pub rows: usize,
    pub cols: usize,
    /// Elements between the starts of two rows.
    pub ld: usize,
    pub elem_bytes: usize,
    /// The buffer's length in elements.
    pub len: usize,
}

impl Operand<'_> {
    /// `ld` covers a row, keeps every row start a multiple of `align` bytes (`None`: no
    /// alignment needed), and the buffer holds all rows.
    pub fn check(&self, align: Option<usize>) -> Result<(), DeviceError> {
        let mismatch = |expected: String, got: String| DeviceError::ArgMismatch {
            kernel: self.kernel.to_string(),
            param: self.param.to_string(),
            expected,
            got,
        };
        if self.ld < self.cols {
            return Err(mismatch(
                format!("a leading dimension of at least {} (one row)", self.cols),
                self.ld.to_string(),
            ));
        }
        if let Some(align) = align {
            let multiple = align / self.elem_bytes.max(1);
            if !(self.ld * self.elem_bytes).is_multiple_of(align) {
                return Err(mismatch(
                    format!(
                        "a multiple of {multiple} ({align}-byte rows for the 16-byte copies; \
                         pad each row)"
                    ),
                    self.ld.to_string(),
                ));
            }
        }
        let needed = if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.ld + self.cols
        };
        if self.len < needed {
            return Err(mismatch(
                format!(
                    "a buffer of at least {needed} elements for {} rows of {} (leading \
                     dimension {})",
                    self.rows, self.cols, self.ld
                ),
                format!("{} elements", self.len),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ld: usize, len: usize) -> Operand<'static> {
        Operand {
            kernel: "gemm_tc_nt_f16_f32",
            param: "lda",
            rows: 4,
            cols: 20,
            ld,
            elem_bytes: 2,
            len,
        }
    }

    #[test]
    fn leading_dimensions_and_lengths() {
        a(24, 4 * 24).check(Some(16)).unwrap();
        a(24, 3 * 24 + 20).check(Some(16)).unwrap();
        let msg = a(20, 80).check(Some(16)).unwrap_err().to_string();
        assert!(msg.contains("parameter `lda`"), "{msg}");
        assert!(msg.contains("a multiple of 8 (16-byte rows"), "{msg}");
        assert!(msg.contains("got 20"), "{msg}");
        a(20, 80).check(None).unwrap();
        let msg = a(16, 80).check(Some(16)).unwrap_err().to_string();
        assert!(msg.contains("at least 20 (one row)"), "{msg}");
        let msg = a(24, 90).check(Some(16)).unwrap_err().to_string();
        assert!(msg.contains("at least 92 elements"), "{msg}");
    }

    /// The tensor-core GEMM's launcher refuses an `lda` of 20 halves (40-byte rows) before
    /// any backend runs: on the interpreter here, and on a GPU by the same check when one
    /// is present (the check sits in `gemm_tc::launch`, ahead of `Device::launch`).
    #[test]
    fn gemm_launcher_rejects_a_misaligned_lda_on_every_backend() {
        use crate::gemm_tc::{self, Layout};
        use warpforge_dsl::prelude::{f16, Device};
        let (m, n, k) = (16usize, 16usize, 20usize);
        let mut devices = vec![Device::cpu()];
        match Device::cuda(0) {
            Ok(gpu) => devices.push(gpu),
            Err(e) => eprintln!("cuda backend not exercised here (no GPU: {e})"),
        }
        for device in &devices {
            let config = gemm_tc::gemm_tc_nt_f16_f32::default_config();
            let a = device.upload(&vec![f16::ONE; m * k]).unwrap();
            let b = device.upload(&vec![f16::ONE; n * 24]).unwrap();
            let mut c = device.zeros::<f32>(m * n).unwrap();
            let dims = (m as u32, n as u32, k as u32);
            let err = gemm_tc::launch(
                device,
                &config,
                Layout::Nt,
                &a,
                &b,
                &mut c,
                dims,
                (k as u32, 24, n as u32),
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(
                    err,
                    warpforge_dsl::Error::Device(DeviceError::ArgMismatch { .. })
                ),
                "{}: {msg}",
                device.name()
            );
            assert!(
                msg.contains("parameter `lda`: expected a multiple of 8"),
                "{msg}"
            );
        }
    }
}
