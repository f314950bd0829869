//! Reading `cuobjdump -sass` output: the `code for sm_XY` header, `Function : name` headers,
//! and instruction lines `/*0040*/  @!P0 LDG.E.CONSTANT R15, [R2.64] ;  /* 0x... */`.
//! The second line of each instruction (`/* 0x... */`, the rest of its encoding) is skipped.

use super::super::Arch;

/// One SASS instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// Byte offset in the function (`/*0040*/`).
    pub offset: u32,
    /// The guard predicate without the `@` (`P0`, `!PT`), if any.
    pub predicate: Option<String>,
    /// The opcode with its modifiers: `HMMA.16816.F32`, `LDGSTS.E.BYPASS.128`.
    pub opcode: String,
    /// Everything after the opcode, without the final `;`.
    pub operands: String,
}

impl Instruction {
    /// The opcode without modifiers: `HMMA` for `HMMA.16816.F32`.
    pub fn base_opcode(&self) -> &str {
        self.opcode.split('.').next().unwrap_or(&self.opcode)
    }
}

/// The instructions of one function (a kernel, or a non-inlined device function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SassFunction {
    pub name: String,
    pub instructions: Vec<Instruction>,
}

/// What one `cuobjdump -sass` listing holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Listing {
    /// From each `code for sm_XY` line, in order.
    pub archs: Vec<Arch>,
    pub functions: Vec<SassFunction>,
}

/// Parses a listing; lines it does not recognise (headers, flags, separators) are skipped.
pub(super) fn parse_listing(text: &str) -> Listing {
    let mut listing = Listing::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(arch) = line.strip_prefix("code for ") {
            if let Ok(arch) = Arch::parse(arch) {
                listing.archs.push(arch);
            }
        } else if let Some(name) = line.strip_prefix("Function :") {
            listing.functions.push(SassFunction {
                name: name.trim().to_string(),
                instructions: Vec::new(),
            });
        } else if let Some(inst) = parse_instruction(line) {
            if let Some(f) = listing.functions.last_mut() {
                f.instructions.push(inst);
            }
        }
    }
    listing
}

/// `/*0040*/  @!P0 OPCODE operands ;  /* encoding */` → an instruction; `None` for any
/// other line, including the encoding-only second line `/* 0x000fe400078e00ff */`.
fn parse_instruction(line: &str) -> Option<Instruction> {
    let (offset, rest) = line.strip_prefix("/*")?.split_once("*/")?;
    let offset = u32::from_str_radix(offset, 16).ok()?;
    // Cut the trailing encoding comment, then the `;` that ends the instruction.
    let body = rest.split("/*").next().unwrap_or(rest).trim();
    let body = body.strip_suffix(';').unwrap_or(body).trim_end();
    let (predicate, body) = match body.strip_prefix('@') {
        Some(guarded) => {
            let (pred, rest) = guarded.split_once(char::is_whitespace)?;
            (Some(pred.to_string()), rest.trim_start())
        }
        None => (None, body),
    };
    let (opcode, operands) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    if opcode.is_empty() {
        return None;
    }
    Some(Instruction {
        offset,
        predicate,
        opcode: opcode.to_string(),
        operands: operands.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like cuobjdump 13.2's listing of an sm_80 cubin.
    const LISTING: &str = "
\tcode for sm_80
\t\tFunction : mma_f16_frags__UNUSED1
\t.headerflags\t@\"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM80\"
        /*0000*/                   IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28] ;  /* 0x00000a00ff017624 */
                                                                             /* 0x000fe400078e00ff */
        /*0010*/              @!P0 BRA 0x110 ;                              /* 0x0000003000008947 */
                                                                             /* 0x001fea0003800000 */
        /*0020*/                   HMMA.16816.F32 R4, R8, R12, R4 ;         /* 0x0000000c0804723c */
        /*0030*/               @P1 LDGSTS.E.BYPASS.LTC128B.128 [R3], [R4.64] ; /* 0x00000000 */
        /*0040*/              @!PT LDS RZ, [RZ] ;                           /* 0x00000000 */
        /*0050*/                   LDSM.16.M88.4 R8, [R2] ;                 /* 0x00000000 */
        /*0060*/                   STL [R1], R5 ;                           /* 0x00000000 */
        /*0070*/                   LDL R5, [R1] ;                           /* 0x00000000 */
        /*0080*/                   BRA 0x80;                                /* 0xfffffff000007947 */
        /*0090*/                   NOP;                                     /* 0x0000000000007918 */
\t\t..........

\t\tFunction : helper
        /*0000*/                   RET.REL.NODEC R6 0x0 ;                   /* 0xffffa74006007950 */
";

    #[test]
    fn reads_archs_functions_and_instructions() {
        let listing = parse_listing(LISTING);
        assert_eq!(listing.archs, vec![Arch::SM80]);
        let names: Vec<_> = listing.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["mma_f16_frags__UNUSED1", "helper"]);
        let insts = &listing.functions[0].instructions;
        assert_eq!(insts.len(), 10, "{insts:#?}");
        assert_eq!(insts[0].opcode, "IMAD.MOV.U32");
        assert_eq!(insts[0].operands, "R1, RZ, RZ, c[0x0][0x28]");
        assert_eq!(insts[1].predicate.as_deref(), Some("!P0"));
        assert_eq!(insts[1].opcode, "BRA");
        assert_eq!(insts[2].base_opcode(), "HMMA");
        assert_eq!(insts[3].predicate.as_deref(), Some("P1"));
        assert_eq!(insts[3].offset, 0x30);
        assert_eq!(insts[4].predicate.as_deref(), Some("!PT"));
        assert_eq!(insts[4].opcode, "LDS");
        assert_eq!(insts[8].opcode, "BRA", "no space before the `;`");
        assert_eq!(insts[8].operands, "0x80");
        assert_eq!(insts[9].opcode, "NOP");
        assert_eq!(insts[9].operands, "");
        assert_eq!(listing.functions[1].instructions[0].opcode, "RET.REL.NODEC");
    }

    #[test]
    fn skips_encoding_lines_and_noise() {
        for line in [
            "/* 0x000fe400078e00ff */",
            "..........",
            ".headerflags @\"EF_CUDA_SM80\"",
            "/*zz*/ NOP ;",
            "/*0010*/ ;",
            "",
        ] {
            assert_eq!(parse_instruction(line), None, "{line}");
        }
        assert!(parse_listing("Fatbin elf code:\n====\n")
            .functions
            .is_empty());
    }
}
