//! Scalar and vector types of the IR, and how they map to Rust and CUDA C names.

use std::fmt;

/// A scalar type a kernel can compute with or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScalarType {
    Bool,
    I32,
    U32,
    I64,
    U64,
    F32,
    F16,
    BF16,
    /// OCP FP8 E4M3 (finite, NaN = S.1111.111).
    F8E4M3,
    /// OCP FP8 E5M2 (IEEE-like, with infinities).
    F8E5M2,
}

impl ScalarType {
    pub const ALL: [ScalarType; 10] = [
        ScalarType::Bool,
        ScalarType::I32,
        ScalarType::U32,
        ScalarType::I64,
        ScalarType::U64,
        ScalarType::F32,
        ScalarType::F16,
        ScalarType::BF16,
        ScalarType::F8E4M3,
        ScalarType::F8E5M2,
    ];

    /// Size in bytes when stored in memory.
    pub fn size_bytes(self) -> usize {
        match self {
            ScalarType::Bool | ScalarType::F8E4M3 | ScalarType::F8E5M2 => 1,
            ScalarType::F16 | ScalarType::BF16 => 2,
            ScalarType::I32 | ScalarType::U32 | ScalarType::F32 => 4,
            ScalarType::I64 | ScalarType::U64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            ScalarType::F32
                | ScalarType::F16
                | ScalarType::BF16
                | ScalarType::F8E4M3
                | ScalarType::F8E5M2
        )
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            ScalarType::I32 | ScalarType::U32 | ScalarType::I64 | ScalarType::U64
        )
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, ScalarType::I32 | ScalarType::I64)
    }

    /// Bit width of an integer type (and of the storage of the others).
    pub fn bits(self) -> u32 {
        match self {
            ScalarType::Bool => 1,
            other => other.size_bytes() as u32 * 8,
        }
    }

    /// The Rust spelling used in kernels (`f16`, `bf16`, `F8E4M3`, ...).
    pub fn rust_name(self) -> &'static str {
        match self {
            ScalarType::Bool => "bool",
            ScalarType::I32 => "i32",
            ScalarType::U32 => "u32",
            ScalarType::I64 => "i64",
            ScalarType::U64 => "u64",
            ScalarType::F32 => "f32",
            ScalarType::F16 => "f16",
            ScalarType::BF16 => "bf16",
            ScalarType::F8E4M3 => "F8E4M3",
            ScalarType::F8E5M2 => "F8E5M2",
        }
    }

    /// Parses a Rust spelling; accepts `f8e4m3`/`f8e5m2` and `usize` (an alias of u64 is
    /// deliberately *not* provided: kernels index with u32, see the DSL docs).
    pub fn from_rust_name(name: &str) -> Option<ScalarType> {
        Some(match name {
            "bool" => ScalarType::Bool,
            "i32" => ScalarType::I32,
            "u32" => ScalarType::U32,
            "i64" => ScalarType::I64,
            "u64" => ScalarType::U64,
            "f32" => ScalarType::F32,
            "f16" => ScalarType::F16,
            "bf16" => ScalarType::BF16,
            "F8E4M3" | "f8e4m3" => ScalarType::F8E4M3,
            "F8E5M2" | "f8e5m2" => ScalarType::F8E5M2,
            _ => return None,
        })
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rust_name())
    }
}

/// A value type: a scalar, or a 2- or 4-wide vector of scalars (for vectorized memory access;
/// the vector is aligned to its full size, so a `Vec4<f32>` load is one 128-bit access).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Scalar(ScalarType),
    Vector(ScalarType, u8),
}

impl Type {
    pub const BOOL: Type = Type::Scalar(ScalarType::Bool);
    pub const I32: Type = Type::Scalar(ScalarType::I32);
    pub const U32: Type = Type::Scalar(ScalarType::U32);
    pub const I64: Type = Type::Scalar(ScalarType::I64);
    pub const U64: Type = Type::Scalar(ScalarType::U64);
    pub const F32: Type = Type::Scalar(ScalarType::F32);

    pub fn scalar(self) -> Option<ScalarType> {
        match self {
            Type::Scalar(s) => Some(s),
            Type::Vector(..) => None,
        }
    }

    /// The element type (the type itself for a scalar).
    pub fn elem(self) -> ScalarType {
        match self {
            Type::Scalar(s) | Type::Vector(s, _) => s,
        }
    }

    pub fn lanes(self) -> u8 {
        match self {
            Type::Scalar(_) => 1,
            Type::Vector(_, n) => n,
        }
    }

    pub fn size_bytes(self) -> usize {
        self.elem().size_bytes() * self.lanes() as usize
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(s) => write!(f, "{s}"),
            Type::Vector(s, n) => write!(f, "Vec{n}<{s}>"),
        }
    }
}

impl From<ScalarType> for Type {
    fn from(s: ScalarType) -> Type {
        Type::Scalar(s)
    }
}
