//! The preamble: includes and the small `wf_*` helpers, each emitted only when used.

use super::half2;
use crate::nvrtc::copy_async_name;
use crate::typed::Half2Op;
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
    /// `pack_f16x2` / `pack_bf16x2` (by the half type).
    Pack2x16(ScalarType),
    /// `unpack_f16x2` / `unpack_bf16x2`; needs `Vec`.
    Unpack2x16(ScalarType),
    /// `mma.sync.m16n8k16` with f32 accumulators, by input type (F16, BF16); needs `Vec`.
    Mma(ScalarType),
    /// `mma.sync.m16n8k16` with f16 inputs and f16 accumulators; needs `Vec`.
    MmaF16Acc,
    /// `mma.sync.m16n8k32` with FP8 inputs (F8E4M3, F8E5M2), f32 accumulators; needs `Vec`.
    MmaFp8(ScalarType),
    /// Packed 16-bit-pair arithmetic (`half` F16 or BF16).
    Half2(Half2Op, ScalarType),
    /// A `Vec2<f16|bf16>` shuffled as one 32-bit register; needs `Vec`.
    PairShfl(Shfl),
    /// `ldmatrix` of 1, 2 or 4 matrices, transposed or not; needs `Vec` for 2 and 4.
    LdMatrix(u8, bool),
    /// `cp.async` of 4, 8 or 16 bytes, global to shared.
    /// With a source size (`_zfill`) when the flag is set.
    CpAsync(u8, bool),
    /// `cp.async` of 16 bytes with a source size and an L2 evict-first cache policy.
    CpAsyncEvictFirst,
    CpAsyncCommit,
    CpAsyncWait,
    Lop3,
    Prmt,
    Ex2Approx,
}

impl Helper {
    /// The C name of a helper that kernels call by name (tensor-core helpers).
    pub fn name(self) -> String {
        let tag = |s: ScalarType| match s {
            ScalarType::BF16 => "bf16",
            _ => "f16",
        };
        match self {
            Helper::Pack2x16(s) => format!("wf_pack_{}x2", tag(s)),
            Helper::Unpack2x16(s) => format!("wf_unpack_{}x2", tag(s)),
            Helper::Mma(s) => format!("wf_mma_m16n8k16_{}_f32", tag(s)),
            Helper::MmaF16Acc => "wf_mma_m16n8k16_f16_f16".to_string(),
            Helper::MmaFp8(s) => format!(
                "wf_mma_m16n8k32_{}_f32",
                if s == ScalarType::F8E5M2 {
                    "e5m2"
                } else {
                    "e4m3"
                }
            ),
            Helper::Half2(op, s) => half2::half2_name(op, s),
            Helper::PairShfl(kind) => format!("{}_x2", kind.vector_helper()),
            Helper::CpAsync(bytes, zfill) => format!("wf_{}", copy_async_name(bytes, zfill)),
            Helper::CpAsyncEvictFirst => "wf_cp_async_16_zfill_evict_first".to_string(),
            Helper::CpAsyncCommit => "wf_cp_async_commit".to_string(),
            Helper::Lop3 => "wf_lop3".to_string(),
            Helper::Prmt => "wf_prmt".to_string(),
            Helper::Ex2Approx => "wf_ex2_approx".to_string(),
            Helper::CpAsyncWait => "wf_cp_async_wait".to_string(),
            Helper::LdMatrix(n, trans) => {
                format!("wf_ldmatrix_x{n}{}", if trans { "_trans" } else { "" })
            }
            Helper::VecShfl(kind) => kind.vector_helper().to_string(),
            Helper::LaneId => "wf_lane_id".to_string(),
            _ => "wf_unnamed_helper".to_string(),
        }
    }
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
        if let Helper::VecShfl(_)
        | Helper::Unpack2x16(_)
        | Helper::Mma(_)
        | Helper::MmaF16Acc
        | Helper::MmaFp8(_)
        | Helper::PairShfl(_)
        | Helper::LdMatrix(2 | 4, _) = h
        {
            self.helpers.insert(Helper::Vec);
        }
        if let Helper::Pack2x16(s) | Helper::Unpack2x16(s) | Helper::Mma(s) = h {
            self.scalars.insert(s);
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
        Helper::Pack2x16(s) => pack_text(s),
        Helper::Unpack2x16(s) => unpack_text(s),
        Helper::Mma(s) => mma_text(s),
        Helper::MmaF16Acc => half2::mma_f16_acc_text(),
        Helper::MmaFp8(s) => half2::mma_fp8_text(s),
        Helper::Half2(op, s) => half2::half2_text(op, s),
        Helper::PairShfl(kind) => half2::pair_shfl_text(kind),
        Helper::LdMatrix(n, trans) => ldmatrix_text(n, trans),
        Helper::CpAsync(bytes, zfill) => cp_async_text(bytes, zfill),
        Helper::CpAsyncEvictFirst => cp_async_evict_first_text(),
        Helper::Lop3 => format!(
            r#"// Bit i of the result is bit 4*a_i + 2*b_i + c_i of LUT.
template <int LUT>
{FORCEINLINE} unsigned int wf_lop3(unsigned int a, unsigned int b, unsigned int c) {{
{}}}
"#,
            host_or_asm(
                "    return wf_host::ptx::lop3_b32(a, b, c, LUT);\n",
                "    unsigned int d;\n    asm(\"lop3.b32 %0, %1, %2, %3, %4;\" : \"=r\"(d) : \"r\"(a), \"r\"(b), \"r\"(c), \"n\"(LUT));\n    return d;\n"
            )
        ),
        // `__byte_perm` ignores the selectors' sign bit; `prmt` honours it.
        Helper::Prmt => format!(
            r#"// Byte permute, default mode, with sign replication (selector bit 3 of each nibble).
{FORCEINLINE} unsigned int wf_prmt(unsigned int a, unsigned int b, unsigned int s) {{
{}}}
"#,
            host_or_asm(
                "    return wf_host::ptx::prmt_b32(a, b, s);\n",
                "    unsigned int d;\n    asm(\"prmt.b32 %0, %1, %2, %3;\" : \"=r\"(d) : \"r\"(a), \"r\"(b), \"r\"(s));\n    return d;\n"
            )
        ),
        Helper::Ex2Approx => format!(
            r#"{FORCEINLINE} float wf_ex2_approx(float x) {{
{}}}
"#,
            host_or_asm(
                "    return wf_host::ptx::ex2_approx_f32(x);\n",
                "    float y;\n    asm(\"ex2.approx.f32 %0, %1;\" : \"=f\"(y) : \"f\"(x));\n    return y;\n"
            )
        ),
        Helper::CpAsyncCommit => format!(
            "{FORCEINLINE} void wf_cp_async_commit() {{\n{}}}\n",
            host_or_asm(
                "    wf_host::ptx::cp_async_commit_group();\n",
                "    asm volatile(\"cp.async.commit_group;\" ::: \"memory\");\n"
            )
        ),
        Helper::CpAsyncWait => format!(
            "// Waits until at most N of this thread's committed cp.async groups are pending.\n\
             template <int N>\n{FORCEINLINE} void wf_cp_async_wait() {{\n{}}}\n",
            host_or_asm(
                "    wf_host::ptx::cp_async_wait_group(N);\n",
                "    asm volatile(\"cp.async.wait_group %0;\" :: \"n\"(N) : \"memory\");\n"
            )
        ),
    }
}

/// A helper body that is inline PTX on the GPU and, when the host harness compiles the
/// file (`WARPFORGE_HOST`, see `dsl/host/`), a call of the harness's reading of the same
/// instruction. NVRTC never sees the host branch.
pub(super) fn host_or_asm(host: &str, asm: &str) -> String {
    format!("#ifdef WARPFORGE_HOST\n{host}#else\n{asm}#endif\n")
}

/// The host harness's call for an `mma.sync` instruction with operands `d`, `a`, `b`, `c`
/// (wf_vecs): `wf_host::ptx::mma_m16n8k16_row_col_f32_f16_f16_f32(d.v, a.v, b.v, c.v);` — the
/// name is the instruction's own qualifiers, so the host reads what the GPU is told.
pub(super) fn host_mma_call(instruction: &str) -> String {
    let qualifiers = instruction
        .trim_start_matches("mma.sync.aligned.")
        .replace('.', "_");
    format!("    wf_host::ptx::mma_{qualifiers}(d.v, a.v, b.v, c.v);\n")
}

/// `cp.async` global → shared (PTX ISA, "Data Movement and Conversion Instructions:
/// cp.async"): `.ca` (cache in L1) for 4 and 8
/// bytes, `.cg` (L2 only, 16 bytes only) for 16.
fn cp_async_text(bytes: u8, zfill: bool) -> String {
    let cache = if bytes == 16 { "cg" } else { "ca" };
    let name = Helper::CpAsync(bytes, zfill).name();
    if zfill {
        // PTX's src-size: only `n` bytes are read, the rest of the destination is zeroed.
        let body = host_or_asm(
            &format!("    wf_host::ptx::cp_async(dst, src, {bytes}, n);\n"),
            &format!(
                r#"    unsigned int d = (unsigned int)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.{cache}.shared.global [%0], [%1], {bytes}, %2;"
                 :: "r"(d), "l"(__cvta_generic_to_global(src)), "r"(n) : "memory");
"#
            ),
        );
        return format!(
            "{FORCEINLINE} void {name}(void* dst, const void* src, unsigned int n) {{\n{body}}}\n"
        );
    }
    let body = host_or_asm(
        &format!("    wf_host::ptx::cp_async(dst, src, {bytes}, {bytes});\n"),
        &format!(
            r#"    unsigned int d = (unsigned int)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.{cache}.shared.global [%0], [%1], {bytes};"
                 :: "r"(d), "l"(__cvta_generic_to_global(src)) : "memory");
"#
        ),
    );
    format!("{FORCEINLINE} void {name}(void* dst, const void* src) {{\n{body}}}\n")
}

/// `cp.async.cg` of 16 bytes with a source size (as `_zfill`) under an L2 cache policy of
/// `evict_first` (PTX ISA "createpolicy" and cp.async's `.L2::cache_hint`, sm_80, PTX 7.4):
/// data read once (streamed weights) leaves L2 first. The host harness copies as `_zfill`.
fn cp_async_evict_first_text() -> String {
    let name = Helper::CpAsyncEvictFirst.name();
    let body = host_or_asm(
        "    wf_host::ptx::cp_async(dst, src, 16, n);\n",
        r#"    unsigned int d = (unsigned int)__cvta_generic_to_shared(dst);
    asm volatile("{\n"
                 "  .reg .b64 policy;\n"
                 "  createpolicy.fractional.L2::evict_first.b64 policy, 1.0;\n"
                 "  cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, policy;\n"
                 "}\n"
                 :: "r"(d), "l"(__cvta_generic_to_global(src)), "r"(n) : "memory");
"#,
    );
    format!("{FORCEINLINE} void {name}(void* dst, const void* src, unsigned int n) {{\n{body}}}\n")
}

/// `ldmatrix` as inline PTX, from a generic pointer to the lane's row in shared memory
/// (PTX ISA 9.7.14.5.15). The "memory" clobber keeps it after the stores it reads.
fn ldmatrix_text(n: u8, trans: bool) -> String {
    let name = Helper::LdMatrix(n, trans).name();
    let t = if trans { ".trans" } else { "" };
    let (ret, outs, regs) = match n {
        1 => ("unsigned int", "\"=r\"(r)".to_string(), "%0".to_string()),
        _ => (
            if n == 2 {
                "wf_vec<unsigned int, 2>"
            } else {
                "wf_vec<unsigned int, 4>"
            },
            (0..n)
                .map(|i| format!("\"=r\"(r.v[{i}])"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..n)
                .map(|i| format!("%{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    };
    format!(
        r#"// ldmatrix.m8n8.x{n}{t}: this lane gives one row address; it gets one register per matrix.
{FORCEINLINE} {ret} {name}(const void* row) {{
    {ret} r;
{}    return r;
}}
"#,
        host_or_asm(
            &format!(
                "    wf_host::ptx::ldmatrix({n}, {trans}, row, reinterpret_cast<unsigned int*>(&r));\n"
            ),
            &format!(
                r#"    unsigned int addr = (unsigned int)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x{n}{t}.shared.b16 {{{regs}}}, [%{n}];"
                 : {outs} : "r"(addr) : "memory");
"#
            )
        )
    )
}

/// The C type and bit-access functions of a 16-bit float type.
fn half_c(s: ScalarType) -> (&'static str, &'static str, &'static str) {
    match s {
        ScalarType::BF16 => (
            "__nv_bfloat16",
            "__bfloat16_as_ushort",
            "__ushort_as_bfloat16",
        ),
        _ => ("__half", "__half_as_ushort", "__ushort_as_half"),
    }
}

fn pack_text(s: ScalarType) -> String {
    let (t, to_bits, _) = half_c(s);
    format!(
        "// Two 16-bit floats in one register, `lo` in bits 0..16 (a `.f16x2`/`.bf16x2`          fragment).
{FORCEINLINE} unsigned int {}({t} lo, {t} hi) {{
    return (unsigned          int){to_bits}(lo) | ((unsigned int){to_bits}(hi) << 16);
}}
",
        Helper::Pack2x16(s).name()
    )
}

fn unpack_text(s: ScalarType) -> String {
    let (t, _, from_bits) = half_c(s);
    format!(
        "{FORCEINLINE} wf_vec<{t}, 2> {}(unsigned int x) {{
    return wf_vec<{t},          2>{{{{{from_bits}((unsigned short)(x & 0xffffu)), {from_bits}((unsigned short)(x >>          16))}}}};
}}
",
        Helper::Unpack2x16(s).name()
    )
}

/// The MMA as inline PTX (CUDA C has no intrinsic for `mma.sync`; `wmma` hides the
/// fragment layout). Layout: PTX ISA 9.7.14.5.8.
fn mma_text(s: ScalarType) -> String {
    let tag = if s == ScalarType::BF16 { "bf16" } else { "f16" };
    let name = Helper::Mma(s).name();
    let instruction = format!("mma.sync.aligned.m16n8k16.row.col.f32.{tag}.{tag}.f32");
    format!(
        r#"// D = A*B + C for one warp: A 16x16 {tag} (row), B 16x8 {tag} (col), C/D 16x8 f32.
{FORCEINLINE} wf_vec<float, 4> {name}(wf_vec<unsigned int, 4> a, wf_vec<unsigned int, 2> b, wf_vec<float, 4> c) {{
    wf_vec<float, 4> d;
{}    return d;
}}
"#,
        host_or_asm(
            &host_mma_call(&instruction),
            &format!(
                r#"    asm volatile(
        "{instruction} "
        "{{%0, %1, %2, %3}}, {{%4, %5, %6, %7}}, {{%8, %9}}, {{%10, %11, %12, %13}};"
        : "=f"(d.v[0]), "=f"(d.v[1]), "=f"(d.v[2]), "=f"(d.v[3])
        : "r"(a.v[0]), "r"(a.v[1]), "r"(a.v[2]), "r"(a.v[3]), "r"(b.v[0]), "r"(b.v[1]),
          "f"(c.v[0]), "f"(c.v[1]), "f"(c.v[2]), "f"(c.v[3]));
"#
            )
        )
    )
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
        "// Round to nearest even; out-of-range values saturate to the largest finite value;\n\
         // every NaN is S.1111.111 with its sign (0x7f/0xff, as PyTorch writes).\n\
         {FORCEINLINE} __nv_fp8_storage_t wf_float_to_{tag}(float x) {{\n    \
         unsigned int bits = __float_as_uint(x);\n    \
         if ((bits & 0x7fffffffu) > 0x7f800000u) {{\n        \
         return (__nv_fp8_storage_t)(((bits >> 24) & 0x80u) | 0x7fu);\n    }}\n    \
         return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, {kind});\n}}\n"
    );
    out
}
