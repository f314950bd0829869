//! Element-type traits for kernels written once over several float formats
//! (`#[kernel(types(T = [f32, f16, bf16]))]`).
//!
//! The macros expand such a kernel into one concrete copy per type, so the bounds here are
//! documentation for the generic source; what matters is that every bound type answers the
//! same calls, which the resolver lowers uniformly: `x.to_f32()`, `T::from_f32(x)` (the
//! identity on `f32`) and `T::max_finite()` (a literal).

use super::{bf16, f16, KernelValue, F8E4M3, F8E5M2};

/// A floating-point storage format: converts to and from `f32` and knows its range.
pub trait FloatFormat: KernelValue {
    /// `x` rounded to this format (the identity for `f32`).
    fn from_f32(x: f32) -> Self;
    /// The value as an `f32` (exact for every format here).
    fn to_f32(self) -> f32;
    /// The largest finite value of the format, as an `f32`: 448 (E4M3), 57344 (E5M2),
    /// 65504 (f16), about 3.39e38 (bf16), `f32::MAX`. Lowered to a literal in kernels.
    fn max_finite() -> f32;
}

/// The compute-capable float types: `f32`, `f16`, `bf16`.
pub trait Float: FloatFormat {}

/// The 8-bit float formats: `F8E4M3` (more precision) and `F8E5M2` (more range).
pub trait Fp8: FloatFormat {}

impl FloatFormat for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn max_finite() -> f32 {
        f32::MAX
    }
}

/// The formats with inherent `from_f32`/`to_f32` (half, float8): the trait forwards to them.
/// The maxima are spelled out: `float8`'s `MAX` constants stop one code short of the OCP
/// formats' largest finite values (0x7E = 448 for E4M3, 0x7B = 57344 for E5M2).
macro_rules! float_format {
    ($($t:ty = $max:expr),*) => {
        $(impl FloatFormat for $t {
            fn from_f32(x: f32) -> Self {
                <$t>::from_f32(x)
            }
            fn to_f32(self) -> f32 {
                f32::from(self)
            }
            fn max_finite() -> f32 {
                $max
            }
        })*
    };
}

float_format!(
    f16 = 65504.0,
    bf16 = f32::from_bits(0x7f7f_0000),
    F8E4M3 = 448.0,
    F8E5M2 = 57344.0
);

impl Float for f32 {}
impl Float for f16 {}
impl Float for bf16 {}
impl Fp8 for F8E4M3 {}
impl Fp8 for F8E5M2 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_finite_matches_each_format() {
        assert_eq!(F8E4M3::max_finite(), F8E4M3::from_bits(0x7e).to_f32());
        assert_eq!(F8E4M3::max_finite(), 448.0);
        assert_eq!(F8E5M2::max_finite(), F8E5M2::from_bits(0x7b).to_f32());
        assert_eq!(F8E5M2::max_finite(), 57344.0);
        assert_eq!(f16::max_finite(), f16::MAX.to_f32());
        assert_eq!(bf16::max_finite(), bf16::MAX.to_f32());
        assert_eq!(<f32 as FloatFormat>::max_finite(), f32::MAX);
    }

    /// The generic spelling works for `f32` too, so one generic body covers every format.
    fn round_trip<T: FloatFormat>(x: f32) -> f32 {
        T::from_f32(x).to_f32()
    }

    #[test]
    fn conversions_are_uniform_over_the_formats() {
        assert_eq!(round_trip::<f32>(1.1), 1.1);
        // 1 + 2^-10: the f16 value just above 1.
        let next = 1.0 + 2f32.powi(-10);
        assert_eq!(round_trip::<f16>(next), next);
        assert_eq!(round_trip::<bf16>(3.0), 3.0);
        assert_eq!(
            round_trip::<F8E4M3>(1000.0),
            F8E4M3::from_f32(1000.0).to_f32()
        );
        assert_eq!(round_trip::<F8E5M2>(0.75), 0.75);
    }
}
