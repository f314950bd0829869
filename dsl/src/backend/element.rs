//! Host types that can live in kernel buffers and be passed as kernel values.

use crate::types::{ScalarType, Type};
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};

/// A host element type with a fixed IR type and little-endian bit layout.
pub trait Element: Copy + Send + Sync + 'static {
    const SCALAR: ScalarType;
    const TYPE: Type = Type::Scalar(Self::SCALAR);
    /// The value's bits, zero-extended (see `typed::ExprKind::Lit`).
    fn to_bits(self) -> u64;
    fn from_bits(bits: u64) -> Self;
}

macro_rules! element {
    ($t:ty, $s:ident, $to:expr, $from:expr) => {
        impl Element for $t {
            const SCALAR: ScalarType = ScalarType::$s;
            fn to_bits(self) -> u64 {
                #[allow(clippy::redundant_closure_call)]
                ($to)(self)
            }
            fn from_bits(bits: u64) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($from)(bits)
            }
        }
    };
}

element!(bool, Bool, |v: bool| v as u64, |b: u64| b != 0);
element!(i32, I32, |v: i32| v as u32 as u64, |b: u64| b as u32 as i32);
element!(u32, U32, |v: u32| v as u64, |b: u64| b as u32);
element!(i64, I64, |v: i64| v as u64, |b: u64| b as i64);
element!(u64, U64, |v: u64| v, |b: u64| b);
element!(f32, F32, |v: f32| v.to_bits() as u64, |b: u64| {
    f32::from_bits(b as u32)
});
element!(f16, F16, |v: f16| v.to_bits() as u64, |b: u64| {
    f16::from_bits(b as u16)
});
element!(bf16, BF16, |v: bf16| v.to_bits() as u64, |b: u64| {
    bf16::from_bits(b as u16)
});
// `F8E4M3::to_bits` takes `&self`, so `v.to_bits()` would pick this trait's by-value
// `to_bits` and recurse forever: call the inherent one by path.
element!(
    F8E4M3,
    F8E4M3,
    |v: F8E4M3| F8E4M3::to_bits(&v) as u64,
    |b: u64| { F8E4M3::from_bits(b as u8) }
);
element!(
    F8E5M2,
    F8E5M2,
    |v: F8E5M2| F8E5M2::to_bits(&v) as u64,
    |b: u64| { F8E5M2::from_bits(b as u8) }
);

/// Little-endian bytes of a slice of elements.
pub fn to_bytes<T: Element>(data: &[T]) -> Vec<u8> {
    let size = T::SCALAR.size_bytes();
    let mut out = Vec::with_capacity(data.len() * size);
    for v in data {
        out.extend_from_slice(&v.to_bits().to_le_bytes()[..size]);
    }
    out
}

/// Elements from little-endian bytes.
pub fn from_bytes<T: Element>(bytes: &[u8]) -> Vec<T> {
    let size = T::SCALAR.size_bytes();
    bytes
        .chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            T::from_bits(u64::from_le_bytes(b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let v = vec![1.5f32, -2.0, f32::INFINITY];
        assert_eq!(from_bytes::<f32>(&to_bytes(&v)), v);
        let h = vec![f16::from_f32(0.5), f16::from_f32(-3.0)];
        assert_eq!(from_bytes::<f16>(&to_bytes(&h)), h);
        assert_eq!(to_bytes(&[-1i32]), vec![0xff; 4]);
    }
}
