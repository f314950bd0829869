//! DSL scalar and vector types: recognizing them in syn types and emitting IR and host types.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;

/// Mirror of `warpforge_dsl::types::ScalarType` (this crate cannot depend on the dsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    I32,
    U32,
    I64,
    U64,
    F32,
    F16,
    BF16,
    F8E4M3,
    F8E5M2,
}

pub const SUPPORTED_TYPES: &str =
    "bool, i32, u32, i64, u64, f32, f16, bf16, F8E4M3, F8E5M2, Vec2<T>, Vec4<T>";

impl Scalar {
    pub fn from_name(name: &str) -> Option<Scalar> {
        Some(match name {
            "bool" => Scalar::Bool,
            "i32" => Scalar::I32,
            "u32" => Scalar::U32,
            "i64" => Scalar::I64,
            "u64" => Scalar::U64,
            "f32" => Scalar::F32,
            "f16" => Scalar::F16,
            "bf16" => Scalar::BF16,
            "F8E4M3" | "f8e4m3" => Scalar::F8E4M3,
            "F8E5M2" | "f8e5m2" => Scalar::F8E5M2,
            _ => return None,
        })
    }

    fn variant(self) -> &'static str {
        match self {
            Scalar::Bool => "Bool",
            Scalar::I32 => "I32",
            Scalar::U32 => "U32",
            Scalar::I64 => "I64",
            Scalar::U64 => "U64",
            Scalar::F32 => "F32",
            Scalar::F16 => "F16",
            Scalar::BF16 => "BF16",
            Scalar::F8E4M3 => "F8E4M3",
            Scalar::F8E5M2 => "F8E5M2",
        }
    }

    /// The short lowercase name in instance names of `types(..)` expansions: `f16`, `e4m3`.
    pub fn suffix(self) -> &'static str {
        match self {
            Scalar::Bool => "bool",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::I64 => "i64",
            Scalar::U64 => "u64",
            Scalar::F32 => "f32",
            Scalar::F16 => "f16",
            Scalar::BF16 => "bf16",
            Scalar::F8E4M3 => "e4m3",
            Scalar::F8E5M2 => "e5m2",
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, Scalar::I32 | Scalar::U32 | Scalar::I64 | Scalar::U64)
    }

    /// Inclusive value range of an integer (or bool) const generic of this type.
    pub fn const_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Scalar::Bool => (0, 1),
            Scalar::I32 => (i32::MIN.into(), i32::MAX.into()),
            Scalar::U32 => (0, u32::MAX.into()),
            Scalar::I64 | Scalar::U64 => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }

    /// `__ty::ScalarType::F32` (inside generated builders, `__ty` is `warpforge_dsl::types`).
    pub fn ir(self) -> TokenStream {
        let v = format_ident!("{}", self.variant());
        quote!(__ty::ScalarType::#v)
    }

    /// The host Rust type, as a path that resolves anywhere.
    pub fn host(self) -> TokenStream {
        let dsl = crate::path::dsl();
        match self {
            Scalar::Bool => quote!(bool),
            Scalar::I32 => quote!(i32),
            Scalar::U32 => quote!(u32),
            Scalar::I64 => quote!(i64),
            Scalar::U64 => quote!(u64),
            Scalar::F32 => quote!(f32),
            Scalar::F16 => quote!(#dsl::prelude::f16),
            Scalar::BF16 => quote!(#dsl::prelude::bf16),
            Scalar::F8E4M3 => quote!(#dsl::prelude::F8E4M3),
            Scalar::F8E5M2 => quote!(#dsl::prelude::F8E5M2),
        }
    }
}

/// A DSL value type: a scalar (`lanes == 1`) or a `Vec2`/`Vec4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DslType {
    pub elem: Scalar,
    pub lanes: u8,
}

impl DslType {
    pub fn scalar(elem: Scalar) -> DslType {
        DslType { elem, lanes: 1 }
    }

    /// `__ty::Type::...` tokens.
    pub fn ir(self) -> TokenStream {
        let elem = self.elem.ir();
        if self.lanes == 1 {
            quote!(__ty::Type::Scalar(#elem))
        } else {
            let lanes = self.lanes;
            quote!(__ty::Type::Vector(#elem, #lanes))
        }
    }
}

/// Is `name` a type whose associated functions and constants are DSL intrinsics
/// (`f16::from_f32`, `Vec4::new`, `f32::INFINITY`)?
pub fn is_type_name(name: &str) -> bool {
    Scalar::from_name(name).is_some() || name == "Vec2" || name == "Vec4"
}

/// Why a type name that rustc knows is not a DSL type.
fn rejection(name: &str) -> Option<String> {
    Some(match name {
        "usize" | "isize" => format!(
            "`{name}` is not supported in kernels: kernels index with `u32` (or `i32`); \
             write `i` instead of `i as usize`"
        ),
        "f64" => "`f64` is not supported in kernels; use `f32`".to_string(),
        "u8" | "i8" | "u16" | "i16" | "u128" | "i128" => format!(
            "`{name}` is not supported in kernels; the integer types are i32, u32, i64, u64"
        ),
        "char" | "str" => format!(
            "`{name}` is not supported in kernels: kernels have no text; \
             write numbers into a buffer and format them on the host"
        ),
        _ if is_heap_type(name) => heap_message(name),
        _ => return None,
    })
}

/// Standard-library types that allocate: kernels have no heap.
const HEAP_TYPES: &[&str] = &[
    "Vec",
    "Box",
    "String",
    "Rc",
    "Arc",
    "VecDeque",
    "HashMap",
    "HashSet",
    "BTreeMap",
    "BTreeSet",
    "BinaryHeap",
    "LinkedList",
];

pub fn is_heap_type(name: &str) -> bool {
    HEAP_TYPES.contains(&name)
}

/// Why a heap type (`Vec`, `Box`, `String`, ...) cannot be used, and what to use instead.
pub fn heap_message(name: &str) -> String {
    format!(
        "`{name}` is a heap type, and kernels cannot allocate: use `local_array::<T>(N)` \
         (per thread) or `shared_array::<T>(N)` (per block) with a constant length, or pass a \
         buffer parameter `&[T]` / `&mut [T]`"
    )
}

/// Trait objects have no GPU equivalent: there is no dynamic dispatch in a kernel.
pub const DYN_MESSAGE: &str = "trait objects (`dyn Trait`) are not supported in kernels: \
     there is no dynamic dispatch on the GPU; call a `#[device] fn` directly, or choose the \
     behaviour with a const generic (`if MODE == 1 { .. }`)";

/// `impl Trait` types: kernels and device fns are monomorphic.
pub const IMPL_TRAIT_MESSAGE: &str = "`impl Trait` is not supported in kernels; kernels take \
     buffers and scalars: write the concrete type (`f32`, `&[f32]`), or one `#[device] fn` per \
     type";

/// Parses a value type as written in a kernel: a scalar name or `Vec2<T>`/`Vec4<T>`.
pub fn parse_type(ty: &syn::Type) -> syn::Result<DslType> {
    match ty {
        syn::Type::Paren(p) => parse_type(&p.elem),
        syn::Type::Group(g) => parse_type(&g.elem),
        syn::Type::Path(p) if p.qself.is_none() => parse_path_type(p),
        syn::Type::Tuple(t) if t.elems.is_empty() => Err(syn::Error::new_spanned(
            ty,
            "`()` is not a value type; omit the return type instead",
        )),
        syn::Type::TraitObject(_) => Err(syn::Error::new_spanned(ty, DYN_MESSAGE)),
        syn::Type::ImplTrait(_) => Err(syn::Error::new_spanned(ty, IMPL_TRAIT_MESSAGE)),
        _ => Err(unsupported(ty, &quote!(#ty).to_string())),
    }
}

fn parse_path_type(p: &syn::TypePath) -> syn::Result<DslType> {
    let last = p.path.segments.last().expect("a path has a segment");
    let name = last.ident.to_string();
    let lanes = match name.as_str() {
        "Vec2" => 2,
        "Vec4" => 4,
        _ => {
            if !last.arguments.is_none() {
                return Err(unsupported(p, &name));
            }
            return match Scalar::from_name(&name) {
                Some(s) => Ok(DslType::scalar(s)),
                None => Err(unsupported(p, &name)),
            };
        }
    };
    let elem = single_type_arg(&last.arguments).ok_or_else(|| {
        syn::Error::new_spanned(p, format!("`{name}` takes one element type: `{name}<f32>`"))
    })?;
    let elem = parse_type(elem)?;
    if elem.lanes != 1 {
        return Err(syn::Error::new(
            elem_span(p),
            "vectors of vectors are not supported",
        ));
    }
    Ok(DslType {
        elem: elem.elem,
        lanes,
    })
}

fn elem_span(p: &syn::TypePath) -> proc_macro2::Span {
    p.path
        .segments
        .last()
        .map_or_else(|| p.span(), |s| s.arguments.span())
}

fn single_type_arg(args: &syn::PathArguments) -> Option<&syn::Type> {
    let syn::PathArguments::AngleBracketed(a) = args else {
        return None;
    };
    match (a.args.len(), a.args.first()) {
        (1, Some(syn::GenericArgument::Type(t))) => Some(t),
        _ => None,
    }
}

fn unsupported<T: quote::ToTokens>(node: T, name: &str) -> syn::Error {
    let msg = rejection(name).unwrap_or_else(|| {
        format!("type `{name}` is not supported in kernels; the DSL types are {SUPPORTED_TYPES}")
    });
    syn::Error::new_spanned(node, msg)
}
