//! The preamble: includes and the small `wf_*` helpers, each emitted only when used.

use crate::types::{ScalarType, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Integer operations that must wrap, which C leaves undefined for signed types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum WrapOp {
    Add,
    Sub,
    Mul,
    Neg,
    Shl,
    Abs,
}

/// Warp shuffle flavours (used to name the per-lane vector shuffles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shfl {
    Xor,
    Down,
    Up,
    Idx,
}

impl Shfl {
    /// The CUDA intrinsic.
    pub fn intrinsic(self) -> &'static str {
        match self {
            Shfl::Xor => "__shfl_xor_sync",
            Shfl::Down => "__shfl_down_sync",
            Shfl::Up => "__shfl_up_sync",
            Shfl::Idx => "__shfl_sync",
        }
    }

    /// The `wf_*` helper that shuffles a `wf_vec` lane by lane.
    pub fn vector_helper(self) -> &'static str {
        match self {
            Shfl::Xor => "wf_shfl_xor",
            Shfl::Down => "wf_shfl_down",
            Shfl::Up => "wf_shfl_up",
            Shfl::Idx => "wf_shfl_idx",
        }
    }
}

/// A fixed helper. The declaration order is the order of emission (dependencies first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Helper {
    Vec,
    Bitcast,
    LaneId,
    /// `I32` or `I64`.
    Wrap(WrapOp, ScalarType),
    /// `F8E4M3` or `F8E5M2`, both directions.
    Fp8(ScalarType),
    /// Needs `Vec`.
    VecShfl(Shfl),
}

/// What the body printed so far needs from the preamble.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    helpers: BTreeSet<Helper>,
    /// Generated helpers (lane-wise vector operations) by name; emitted after the fixed ones.
    generated: BTreeMap<String, String>,
    scalars: BTreeSet<ScalarType>,
}

impl Needs {
    pub fn ty(&mut self, ty: Type) {
        self.scalars.insert(ty.elem());
        if matches!(ty, Type::Vector(..)) {
            self.helpers.insert(Helper::Vec);
        }
    }

    pub fn helper(&mut self, h: Helper) {
        if let Helper::VecShfl(_) = h {
            self.helpers.insert(Helper::Vec);
        }
        if let Helper::Fp8(s) = h {
            self.scalars.insert(s);
        }
        self.helpers.insert(h);
    }

    pub fn has_generated(&self, name: &str) -> bool {
        self.generated.contains_key(name)
    }

    pub fn add_generated(&mut self, name: String, text: String) {
        self.generated.insert(name, text);
    }

    /// The includes and helpers, each followed by a blank line; empty when nothing is needed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let fp8 = self.scalars.contains(&ScalarType::F8E4M3)
            || self.scalars.contains(&ScalarType::F8E5M2);
        // The FP8 conversions go through `__half`.
        if fp8 || self.scalars.contains(&ScalarType::F16) {
            out.push_str("#include <cuda_fp16.h>\n");
        }
        if self.scalars.contains(&ScalarType::BF16) {
            out.push_str("#include <cuda_bf16.h>\n");
        }
        if fp8 {
            out.push_str("#include <cuda_fp8.h>\n");
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let mut wrapping = false;
        for h in &self.helpers {
            if matches!(h, Helper::Wrap(..)) && !wrapping {
                out.push_str(
                    "// Two's complement wrapping arithmetic: signed overflow is undefined in C.\n",
                );
            }
            wrapping = matches!(h, Helper::Wrap(..));
            out.push_str(&helper_text(*h));
            out.push('\n');
        }
        for text in self.generated.values() {
            out.push_str(text);
            out.push('\n');
        }
        out
    }
}

const FORCEINLINE: &str = "static __device__ __forceinline__";

fn helper_text(h: Helper) -> String {
    match h {
        Helper::Vec => "// N lanes aligned to their full size: a wf_vec<float, 4> access is one \
                        128-bit load or store.\ntemplate <typename T, int N>\nstruct alignas(sizeof(T) \
                        * N) wf_vec {\n    T v[N];\n};\n"
            .to_string(),
        Helper::Bitcast => format!(
            "template <typename To, typename From>\n{FORCEINLINE} To wf_bitcast(From x) {{\n    \
             To r;\n    memcpy(&r, &x, sizeof(To));\n    return r;\n}}\n"
        ),
        Helper::LaneId => format!(
            "// Warps are formed from the linearized thread index.\n{FORCEINLINE} unsigned int \
             wf_lane_id() {{\n    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * \
             threadIdx.z)) & 31u;\n}}\n"
        ),
        Helper::Wrap(op, s) => wrap_text(op, s),
        Helper::Fp8(s) => fp8_text(s),
        Helper::VecShfl(kind) => format!(
            "template <typename T, int N>\n{FORCEINLINE} wf_vec<T, N> {}(wf_vec<T, N> x, int \
             lane) {{\n    for (int i = 0; i < N; ++i) {{\n        x.v[i] = {}(0xffffffffu, \
             x.v[i], lane);\n    }}\n    return x;\n}}\n",
            kind.vector_helper(),
            kind.intrinsic()
        ),
    }
}

/// Two's complement arithmetic through the unsigned type of the same width.
fn wrap_text(op: WrapOp, s: ScalarType) -> String {
    let (t, u, width) = match s {
        ScalarType::I64 => ("long long", "unsigned long long", 64),
        _ => ("int", "unsigned int", 32),
    };
    let (sig, body) = match op {
        WrapOp::Add => ("wf_add(T a, T b)", "(T)((U)a + (U)b)".to_string()),
        WrapOp::Sub => ("wf_sub(T a, T b)", "(T)((U)a - (U)b)".to_string()),
        WrapOp::Mul => ("wf_mul(T a, T b)", "(T)((U)a * (U)b)".to_string()),
        WrapOp::Neg => ("wf_neg(T a)", "(T)(0u - (U)a)".to_string()),
        WrapOp::Abs => ("wf_abs(T a)", "a < 0 ? (T)(0u - (U)a) : a".to_string()),
        WrapOp::Shl => (
            "wf_shl(T a, unsigned int s)",
            format!("(T)((U)a << (s & {}u))", width - 1),
        ),
    };
    let comment = match op {
        WrapOp::Shl => "// Shift by the amount modulo the width, wrapping.\n",
        WrapOp::Abs => "// abs(MIN) is MIN, as with wrapping_abs.\n",
        _ => "",
    };
    let sig = sig.replace('T', t);
    let body = body
        .replace("(U)", &format!("({u})"))
        .replace("(T)", &format!("({t})"));
    format!("{comment}{FORCEINLINE} {t} {sig} {{\n    return {body};\n}}\n")
}

fn fp8_text(s: ScalarType) -> String {
    let (tag, kind) = match s {
        ScalarType::F8E5M2 => ("e5m2", "__NV_E5M2"),
        _ => ("e4m3", "__NV_E4M3"),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "// FP8 {tag} is a raw byte; widening to f16 is exact.\n{FORCEINLINE} float \
         wf_{tag}_to_float(__nv_fp8_storage_t x) {{\n    return \
         __half2float(__half(__nv_cvt_fp8_to_halfraw(x, {kind})));\n}}\n\n"
    );
    let _ = write!(
        out,
        "// Round to nearest even; out-of-range values saturate to the largest finite value.\n\
         {FORCEINLINE} __nv_fp8_storage_t wf_float_to_{tag}(float x) {{\n    return \
         __nv_cvt_float_to_fp8(x, __NV_SATFINITE, {kind});\n}}\n"
    );
    out
}
