//! Preamble text of the helpers added with the packed 16-bit-pair arithmetic, the f16- and
//! FP8-input MMAs and the one-register shuffle of a 16-bit pair. All are inline PTX.

use super::preamble::{host_mma_call, host_or_asm, Helper, Shfl};
use crate::typed::Half2Op;
use crate::types::ScalarType;

const FORCEINLINE: &str = "static __device__ __forceinline__";

fn tag(half: ScalarType) -> &'static str {
    if half == ScalarType::BF16 {
        "bf16x2"
    } else {
        "f16x2"
    }
}

/// `wf_add_f16x2`, `wf_fma_bf16x2`, ...
pub(super) fn half2_name(op: Half2Op, half: ScalarType) -> String {
    let op = match op {
        Half2Op::Add => "add",
        Half2Op::Sub => "sub",
        Half2Op::Mul => "mul",
        Half2Op::Fma => "fma",
        Half2Op::Max => "max",
        Half2Op::Min => "min",
    };
    format!("wf_{op}_{}", tag(half))
}

/// The PTX instruction and its operands (`%1`..: a, b, c; `%4`: a constant register) for
/// `op`. PTX ISA 9.7.4: `add/sub/mul/fma.rn.f16x2`, `min/max.{f16x2,bf16x2}` (sm_80) and
/// `fma.rn.bf16x2` (sm_80); `add/sub/mul.bf16x2` need sm_90, so bf16 uses the fma with a
/// constant: a + b = fma(a, 1, b); a - b = fma(b, -1, a); a * b = fma(a, b, -0). These are
/// exact rewrites, signed zeros included: the product with ±1 is exact, and adding -0 (not
/// +0) leaves every product unchanged, a -0 product too.
fn half2_asm(op: Half2Op, half: ScalarType) -> (String, Option<&'static str>) {
    let t = tag(half);
    let bf16 = half == ScalarType::BF16;
    match (op, bf16) {
        (Half2Op::Add, true) => ("fma.rn.bf16x2 %0, %1, %3, %2;".into(), Some("0x3f803f80u")),
        (Half2Op::Sub, true) => ("fma.rn.bf16x2 %0, %2, %3, %1;".into(), Some("0xbf80bf80u")),
        (Half2Op::Mul, true) => ("fma.rn.bf16x2 %0, %1, %2, %3;".into(), Some("0x80008000u")),
        (Half2Op::Add, false) => ("add.rn.f16x2 %0, %1, %2;".into(), None),
        (Half2Op::Sub, false) => ("sub.rn.f16x2 %0, %1, %2;".into(), None),
        (Half2Op::Mul, false) => ("mul.rn.f16x2 %0, %1, %2;".into(), None),
        (Half2Op::Fma, _) => (format!("fma.rn.{t} %0, %1, %2, %3;"), None),
        (Half2Op::Max, _) => (format!("max.{t} %0, %1, %2;"), None),
        (Half2Op::Min, _) => (format!("min.{t} %0, %1, %2;"), None),
    }
}

pub(super) fn half2_text(op: Half2Op, half: ScalarType) -> String {
    let name = half2_name(op, half);
    let (asm, constant) = half2_asm(op, half);
    let (params, operands): (&str, Vec<&str>) = match (op, constant) {
        (Half2Op::Fma, _) => (
            "unsigned int a, unsigned int b, unsigned int c",
            vec!["a", "b", "c"],
        ),
        (_, Some(k)) => ("unsigned int a, unsigned int b", vec!["a", "b", k]),
        _ => ("unsigned int a, unsigned int b", vec!["a", "b"]),
    };
    let inputs: Vec<String> = operands.iter().map(|o| format!(r#""r"({o})"#)).collect();
    let body = host_or_asm(
        &host_instruction_call(&asm, &operands),
        &format!(
            "    unsigned int d;\n    asm(\"{asm}\" : \"=r\"(d) : {});\n    return d;\n",
            inputs.join(", ")
        ),
    );
    format!(
        "// Two 16-bit lanes at once, rounded to nearest even.\n{FORCEINLINE} unsigned int \
         {name}({params}) {{\n{body}}}\n"
    )
}

/// `return wf_host::ptx::fma_rn_bf16x2(b, 0xbf80bf80u, a);` for `fma.rn.bf16x2 %0, %2, %3,
/// %1;`: the host function named by the mnemonic, called with the operands in the order the
/// instruction names them (`%1` is `operands[0]`), so a wrong order shows on the host too.
fn host_instruction_call(asm: &str, operands: &[&str]) -> String {
    let asm = asm.trim_end_matches(';');
    let (mnemonic, rest) = asm.split_once(' ').unwrap_or((asm, ""));
    let args: Vec<&str> = rest
        .split(',')
        .map(str::trim)
        .skip(1) // %0 is the result
        .map(|r| {
            let i: usize = r.trim_start_matches('%').parse().unwrap_or(0);
            operands
                .get(i.wrapping_sub(1))
                .copied()
                .unwrap_or("WF_BAD_OPERAND")
        })
        .collect();
    format!(
        "    return wf_host::ptx::{}({});\n",
        mnemonic.replace('.', "_"),
        args.join(", ")
    )
}

/// `mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16` (PTX ISA 9.7.14.5.8): C and D are
/// two `.f16x2` registers each.
pub(super) fn mma_f16_acc_text() -> String {
    const INSTRUCTION: &str = "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16";
    let name = Helper::MmaF16Acc.name();
    format!(
        r#"// D = A*B + C for one warp: A 16x16 f16 (row), B 16x8 f16 (col), C/D 16x8 f16 in pairs.
{FORCEINLINE} wf_vec<unsigned int, 2> {name}(wf_vec<unsigned int, 4> a, wf_vec<unsigned int, 2> b, wf_vec<unsigned int, 2> c) {{
    wf_vec<unsigned int, 2> d;
{}    return d;
}}
"#,
        host_or_asm(
            &host_mma_call(INSTRUCTION),
            &format!(
                r#"    asm volatile(
        "{INSTRUCTION} "
        "{{%0, %1}}, {{%2, %3, %4, %5}}, {{%6, %7}}, {{%8, %9}};"
        : "=r"(d.v[0]), "=r"(d.v[1])
        : "r"(a.v[0]), "r"(a.v[1]), "r"(a.v[2]), "r"(a.v[3]), "r"(b.v[0]), "r"(b.v[1]),
          "r"(c.v[0]), "r"(c.v[1]));
"#
            )
        )
    )
}

/// `mma.sync.aligned.m16n8k32.row.col.f32.{e4m3,e5m2}.{..}.f32` (sm_89; fragments: PTX ISA
/// 9.7.14.5.8, "Matrix Fragments for mma.m16n8k32").
pub(super) fn mma_fp8_text(input: ScalarType) -> String {
    let name = Helper::MmaFp8(input).name();
    let t = if input == ScalarType::F8E5M2 {
        "e5m2"
    } else {
        "e4m3"
    };
    let instruction = format!("mma.sync.aligned.m16n8k32.row.col.f32.{t}.{t}.f32");
    format!(
        r#"// D = A*B + C for one warp: A 16x32 {t} (row), B 32x8 {t} (col), four per register; C/D f32.
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

/// A pair of 16-bit values shuffled as the one 32-bit register they occupy.
pub(super) fn pair_shfl_text(kind: Shfl) -> String {
    let name = Helper::PairShfl(kind).name();
    let intrinsic = kind.intrinsic();
    format!(
        r#"// A 16-bit pair (f16x2 / bf16x2) moves as one 32-bit register.
template <typename T>
{FORCEINLINE} wf_vec<T, 2> {name}(wf_vec<T, 2> x, int lane) {{
    static_assert(sizeof(wf_vec<T, 2>) == 4, "a 16-bit pair");
    unsigned int r;
    memcpy(&r, &x, 4);
    r = {intrinsic}(0xffffffffu, r, lane);
    memcpy(&x, &r, 4);
    return x;
}}
"#
    )
}
