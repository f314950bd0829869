//! C names for one function's parameters, variables and arrays: the resolver's names,
//! escaped where they would clash with C++ keywords, CUDA built-ins, the functions the
//! generated code calls, or each other.

use crate::typed::{Function, Kernel, ParamKind};
use std::collections::HashSet;

/// Identifiers a Rust name must not take in C: C++ keywords that Rust allows as names,
/// CUDA built-in variables, and the library functions the generated code calls.
const RESERVED: &[&str] = &[
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "case",
    "catch",
    "char",
    "char16_t",
    "char32_t",
    "char8_t",
    "class",
    "compl",
    "concept",
    "const_cast",
    "constexpr",
    "decltype",
    "default",
    "delete",
    "double",
    "dynamic_cast",
    "explicit",
    "export",
    "extern",
    "float",
    "friend",
    "goto",
    "inline",
    "int",
    "long",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "requires",
    "short",
    "signed",
    "sizeof",
    "static_assert",
    "static_cast",
    "switch",
    "template",
    "this",
    "thread_local",
    "throw",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "void",
    "volatile",
    "wchar_t",
    "xor",
    "xor_eq",
    "threadIdx",
    "blockIdx",
    "blockDim",
    "gridDim",
    "warpSize",
    "atomicAdd",
    "atomicMin",
    "atomicMax",
    "atomicCAS",
    "memcpy",
    "min",
    "max",
    "expf",
    "exp2f",
    "logf",
    "sqrtf",
    "rsqrtf",
    "tanhf",
    "fabsf",
    "floorf",
    "fmaf",
    "fminf",
    "fmaxf",
    "fmodf",
    "NULL",
];

/// C math functions (each also with an `f` suffix) that CUDA's headers declare: a device
/// function may not take these names.
const MATH_FUNCTIONS: &[&str] = &[
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "exp", "exp2",
    "exp10", "expm1", "log", "log2", "log10", "log1p", "pow", "sqrt", "rsqrt", "cbrt", "fabs",
    "floor", "ceil", "round", "trunc", "rint", "fmod", "fmin", "fmax", "fma", "erf", "erfc",
    "hypot", "ldexp", "frexp", "modf", "abs", "copysign", "signbit", "isnan", "isinf",
];

/// Whether `name` can't be used as a C identifier in generated code (a C++ keyword, a CUDA
/// built-in, a function the generated code or CUDA's math headers define, or our `wf_`
/// prefix).
pub(crate) fn is_reserved(name: &str) -> bool {
    let math = |n: &str| MATH_FUNCTIONS.contains(&n);
    RESERVED.contains(&name)
        || math(name)
        || name.strip_suffix('f').is_some_and(math)
        || name.starts_with("wf_")
        || name.starts_with("__")
}

/// The C names of one function.
#[derive(Debug)]
pub(crate) struct Names {
    vars: Vec<String>,
    arrays: Vec<String>,
    /// Per parameter: its name (the variable's name for a value parameter) and, for a slice,
    /// the name of its length parameter.
    params: Vec<(String, Option<String>)>,
    taken: HashSet<String>,
}

impl Names {
    pub fn new(kernel: &Kernel, func: &Function) -> Names {
        let mut names = Names {
            vars: Vec::new(),
            arrays: Vec::new(),
            params: Vec::new(),
            taken: HashSet::new(),
        };
        names
            .taken
            .extend(kernel.device_fns.iter().map(|f| f.name.clone()));
        names.taken.insert(kernel.symbol.clone());
        names.vars = func.vars.iter().map(|v| names.claim(&v.name)).collect();
        let slices: Vec<String> = func
            .params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Slice { .. }))
            .map(|p| names.claim(&p.name))
            .collect();
        let mut slices = slices.into_iter();
        for p in &func.params {
            let entry = match p.kind {
                ParamKind::Value { var, .. } => (names.var(var.0).to_string(), None),
                ParamKind::Slice { .. } => {
                    let name = slices.next().unwrap_or_default();
                    let len = names.fresh(&format!("{name}_len"));
                    (name, Some(len))
                }
            };
            names.params.push(entry);
        }
        names.arrays = func.arrays.iter().map(|a| names.claim(&a.name)).collect();
        names
    }

    /// Takes `name` (escaped when reserved, suffixed with `_` until unique).
    fn claim(&mut self, name: &str) -> String {
        let mut candidate = name.to_string();
        if candidate.is_empty() {
            candidate.push_str("v_");
        }
        if is_reserved(&candidate) {
            candidate.push('_');
        }
        while self.taken.contains(&candidate) {
            candidate.push('_');
        }
        self.taken.insert(candidate.clone());
        candidate
    }

    /// A new name for a temporary: `base`, else `base_2`, `base_3`, ...
    pub fn fresh(&mut self, base: &str) -> String {
        let mut candidate = base.to_string();
        let mut n = 1;
        while self.taken.contains(&candidate) || RESERVED.contains(&candidate.as_str()) {
            n += 1;
            candidate = format!("{base}_{n}");
        }
        self.taken.insert(candidate.clone());
        candidate
    }

    pub fn var(&self, id: u32) -> &str {
        self.vars
            .get(id as usize)
            .map_or("WF_UNKNOWN_VAR", String::as_str)
    }

    pub fn array(&self, id: u32) -> &str {
        self.arrays
            .get(id as usize)
            .map_or("WF_UNKNOWN_ARRAY", String::as_str)
    }

    pub fn param(&self, index: u32) -> &str {
        self.params
            .get(index as usize)
            .map_or("WF_UNKNOWN_PARAM", |p| p.0.as_str())
    }

    /// The length parameter of a slice parameter.
    pub fn param_len(&self, index: u32) -> &str {
        self.params
            .get(index as usize)
            .and_then(|p| p.1.as_deref())
            .unwrap_or("WF_UNKNOWN_PARAM_LEN")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_duplicate_names_are_escaped() {
        let mut names = Names {
            vars: Vec::new(),
            arrays: Vec::new(),
            params: Vec::new(),
            taken: HashSet::new(),
        };
        assert_eq!(names.claim("x"), "x");
        assert_eq!(names.claim("int"), "int_");
        assert_eq!(names.claim("int_"), "int__");
        assert_eq!(names.claim("wf_tmp"), "wf_tmp_");
        assert_eq!(names.claim("x"), "x_");
        assert_eq!(names.fresh("x"), "x_2");
        assert_eq!(names.fresh("i_end"), "i_end");
    }
}
