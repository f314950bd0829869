//! Expressions.

use super::stmt::{compound_op, BlockUse};
use super::{boxed, span_tokens, string, vec_of, Lowerer};
use crate::types::{heap_message, is_heap_type, is_type_name, parse_type, Scalar};
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::Expr;

/// Free functions of the prelude that lower to `ExprKind::Call` (everything else called by a
/// plain name is a `#[device]` function).
pub const INTRINSICS: &[&str] = &[
    "thread_idx_x",
    "thread_idx_y",
    "thread_idx_z",
    "block_idx_x",
    "block_idx_y",
    "block_idx_z",
    "block_dim_x",
    "block_dim_y",
    "block_dim_z",
    "grid_dim_x",
    "grid_dim_y",
    "grid_dim_z",
    "lane_id",
    "warp_size",
    "sync_threads",
    "warp_shfl_xor",
    "warp_shfl_down",
    "warp_shfl_up",
    "warp_shfl_idx",
    "warp_any",
    "warp_all",
    "warp_ballot",
    "shared_array",
    // Lowered to `shared_array` by `let` (module `tile2d`); listed so it is never taken for
    // a device fn.
    "shared_array2d",
    "local_array",
    "atomic_add",
    "atomic_min",
    "atomic_max",
    "atomic_cas",
    "rsqrt",
    "mma_m16n8k16_f16_f32",
    "mma_m16n8k16_bf16_f32",
    "mma_m16n8k16_f16_f16",
    "mma_m16n8k32_e4m3_f32",
    "mma_m16n8k32_e5m2_f32",
    "add_f16x2",
    "sub_f16x2",
    "mul_f16x2",
    "fma_f16x2",
    "max_f16x2",
    "min_f16x2",
    "add_bf16x2",
    "sub_bf16x2",
    "mul_bf16x2",
    "fma_bf16x2",
    "max_bf16x2",
    "min_bf16x2",
    "pack_f16x2",
    "pack_bf16x2",
    "unpack_f16x2",
    "unpack_bf16x2",
    "ldmatrix_x1",
    "ldmatrix_x2",
    "ldmatrix_x4",
    "ldmatrix_x1_trans",
    "ldmatrix_x2_trans",
    "ldmatrix_x4_trans",
    "cp_async_4",
    "cp_async_8",
    "cp_async_16",
    "cp_async_4_zfill",
    "cp_async_8_zfill",
    "cp_async_16_zfill",
    "cp_async_16_zfill_evict_first",
    "cp_async_commit",
    "cp_async_wait",
    "lop3",
    "prmt",
    "ex2_approx",
];

const SUPPORTED_EXPRS: &str = "literals, variables, arithmetic/bit/comparison/logical \
     operators, `as` casts, indexing, `.x/.y/.z/.w`, calls of intrinsics and `#[device]` fns, \
     method calls, `if`/`else` and blocks";

impl Lowerer {
    /// `__ir::Expr::new(kind, span)`.
    pub fn expr(&mut self, e: &Expr) -> TokenStream {
        match e {
            Expr::Paren(p) => return self.expr(&p.expr),
            Expr::Group(g) => return self.expr(&g.expr),
            _ => {}
        }
        let kind = self.expr_kind(e);
        let span = span_tokens(e.span());
        quote!(__ir::Expr::new(#kind, #span))
    }

    /// A type as written in the body (`let x: T`, `as T`, turbofish).
    pub fn ty(&mut self, ty: &syn::Type) -> TokenStream {
        match parse_type(ty) {
            Ok(t) => t.ir(),
            Err(e) => self.fail(e),
        }
    }

    fn expr_kind(&mut self, e: &Expr) -> TokenStream {
        match e {
            Expr::Lit(l) => self.lit(&l.lit),
            Expr::Path(p) => self.path_expr(p),
            Expr::Binary(b) => self.binary(b),
            Expr::Unary(u) => self.unary(u),
            Expr::Cast(c) => {
                let inner = boxed(self.expr(&c.expr));
                let ty = self.ty(&c.ty);
                quote!(__ir::ExprKind::Cast(#inner, #ty))
            }
            Expr::Index(i) => {
                if let Some(tokens) = self.tile2d_index(i) {
                    return tokens;
                }
                if let Some(tokens) = self.tile2d_single_index(i) {
                    return tokens;
                }
                let base = boxed(self.expr(&i.expr));
                let index = boxed(self.expr(&i.index));
                quote!(__ir::ExprKind::Index(#base, #index))
            }
            Expr::Field(f) => self.field(f),
            Expr::MethodCall(m) => self.method_call(m),
            Expr::Call(c) => self.call(c),
            Expr::If(i) => self.if_expr(i),
            Expr::Block(b) if b.label.is_none() => {
                let block = self.block(&b.block, BlockUse::Value);
                quote!(__ir::ExprKind::Block(#block))
            }
            other => self.unsupported(other),
        }
    }

    fn unsupported(&mut self, e: &Expr) -> TokenStream {
        let msg = match e {
            Expr::Closure(_) => "closures are not supported in kernels; write a `#[device] fn`",
            Expr::Reference(_) => {
                "references are only allowed to pass an array to a call (`f(&mut tile)`); \
                 kernels have no pointers to locals"
            }
            Expr::Match(_) => "`match` is not supported in kernels; use `if` / `else if`",
            Expr::Let(_) => "`if let` / `while let` are not supported in kernels; use a plain `if`",
            Expr::Tuple(_) => "tuples are not supported in kernels; use separate variables or Vec2/Vec4",
            Expr::Struct(_) => "struct literals are not supported in kernels; build vectors with `Vec2::new` / `Vec4::new`",
            Expr::Macro(m) => return self.macro_error(&m.mac),
            Expr::Try(_) => "`?` is not supported in kernels (kernels have no `Result`)",
            Expr::Async(_) | Expr::Await(_) => "`async` is not supported in kernels",
            Expr::Unsafe(_) => "`unsafe` blocks are not supported in kernels (nothing in the DSL needs them)",
            Expr::Array(_) | Expr::Repeat(_) => {
                "array literals are not supported in kernels; use `local_array::<T>(N)` and fill it"
            }
            Expr::Range(_) => "ranges are only supported as the iterator of a `for` loop",
            Expr::Assign(_) => "an assignment is a statement in kernels, not a value",
            Expr::Binary(_) => "a compound assignment is a statement in kernels, not a value",
            Expr::Block(_) => "block labels are not supported in kernels",
            Expr::Return(_) | Expr::Break(_) | Expr::Continue(_) => {
                "`return`, `break` and `continue` must be statements in kernels (end them with `;`)"
            }
            Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) => {
                "loops are statements in kernels; they cannot be used as values"
            }
            _ => "",
        };
        if msg.is_empty() {
            self.fail_at(
                e,
                format!(
                    "this expression is not supported in kernels; supported: {SUPPORTED_EXPRS}"
                ),
            )
        } else {
            self.fail_at(e, msg)
        }
    }

    fn lit(&mut self, lit: &syn::Lit) -> TokenStream {
        match lit {
            syn::Lit::Int(i) => {
                let suffix = match self.suffix(i.suffix(), lit) {
                    Ok(s) => s,
                    Err(t) => return t,
                };
                match i.base10_parse::<i128>() {
                    Ok(v) => {
                        let v = proc_macro2::Literal::i128_suffixed(v);
                        quote!(__ir::ExprKind::Int(#v, #suffix))
                    }
                    Err(e) => self.fail(e),
                }
            }
            syn::Lit::Float(f) => {
                let suffix = match self.suffix(f.suffix(), lit) {
                    Ok(s) => s,
                    Err(t) => return t,
                };
                match f.base10_parse::<f64>() {
                    Ok(v) => {
                        let v = proc_macro2::Literal::f64_suffixed(v);
                        quote!(__ir::ExprKind::Float(#v, #suffix))
                    }
                    Err(e) => self.fail(e),
                }
            }
            syn::Lit::Bool(b) => {
                let v = b.value;
                quote!(__ir::ExprKind::Bool(#v))
            }
            other => self.fail_at(
                other,
                "string, byte and char literals are not supported in kernels; \
                 literals are integers, floats and bools",
            ),
        }
    }

    /// The IR tokens of a literal suffix (`Option<ScalarType>`), or the error tokens.
    fn suffix(&mut self, suffix: &str, lit: &syn::Lit) -> Result<TokenStream, TokenStream> {
        if suffix.is_empty() {
            return Ok(quote!(::std::option::Option::None));
        }
        let ty = syn::Ident::new(suffix, lit.span());
        match parse_type(&syn::parse_quote!(#ty)) {
            Ok(t) => {
                let s = t.elem.ir();
                Ok(quote!(::std::option::Option::Some(#s)))
            }
            Err(e) => Err(self.fail(syn::Error::new(lit.span(), e.to_string()))),
        }
    }

    /// `x` (a variable, parameter or const generic) or `f32::INFINITY` (a type's constant).
    fn path_expr(&mut self, p: &syn::ExprPath) -> TokenStream {
        let segs = &p.path.segments;
        let plain = p.qself.is_none()
            && p.path.leading_colon.is_none()
            && segs.iter().all(|s| s.arguments.is_none());
        let name = match segs.len() {
            1 if plain => segs[0].ident.to_string(),
            2 if plain && is_type_name(&segs[0].ident.to_string()) => {
                format!("{}::{}", segs[0].ident, segs[1].ident)
            }
            _ => {
                return self.fail_at(
                    p,
                    "only variables, parameters, const generics and type constants such as \
                     `f32::INFINITY` can be named in kernels",
                );
            }
        };
        let name = string(&name);
        quote!(__ir::ExprKind::Path(#name))
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> TokenStream {
        use syn::BinOp as B;
        if compound_op(&b.op).is_some() {
            return self.unsupported(&Expr::Binary(b.clone()));
        }
        let op = match b.op {
            B::Add(_) => "Add",
            B::Sub(_) => "Sub",
            B::Mul(_) => "Mul",
            B::Div(_) => "Div",
            B::Rem(_) => "Rem",
            B::BitAnd(_) => "BitAnd",
            B::BitOr(_) => "BitOr",
            B::BitXor(_) => "BitXor",
            B::Shl(_) => "Shl",
            B::Shr(_) => "Shr",
            B::Eq(_) => "Eq",
            B::Ne(_) => "Ne",
            B::Lt(_) => "Lt",
            B::Le(_) => "Le",
            B::Gt(_) => "Gt",
            B::Ge(_) => "Ge",
            B::And(_) => "And",
            B::Or(_) => "Or",
            _ => return self.fail_at(b.op, "this operator is not supported in kernels"),
        };
        let op = syn::Ident::new(op, b.op.span());
        let (l, r) = (boxed(self.expr(&b.left)), boxed(self.expr(&b.right)));
        quote!(__ir::ExprKind::Binary(__ir::BinOp::#op, #l, #r))
    }

    fn unary(&mut self, u: &syn::ExprUnary) -> TokenStream {
        let op = match u.op {
            syn::UnOp::Neg(_) => quote!(__ir::UnOp::Neg),
            syn::UnOp::Not(_) => quote!(__ir::UnOp::Not),
            _ => {
                return self.fail_at(
                    u,
                    "`*` (dereference) is not supported in kernels; kernels have no pointers",
                )
            }
        };
        let inner = boxed(self.expr(&u.expr));
        quote!(__ir::ExprKind::Unary(#op, #inner))
    }

    fn field(&mut self, f: &syn::ExprField) -> TokenStream {
        match &f.member {
            syn::Member::Named(id) if ["x", "y", "z", "w"].contains(&id.to_string().as_str()) => {
                let base = boxed(self.expr(&f.base));
                let name = string(&id.to_string());
                quote!(__ir::ExprKind::Field(#base, #name))
            }
            member => self.fail_at(
                member,
                "only the lanes `.x .y .z .w` of a Vec2/Vec4 can be accessed in kernels",
            ),
        }
    }

    /// `if c { a } else { b }` used as a value.
    fn if_expr(&mut self, i: &syn::ExprIf) -> TokenStream {
        let Some((_, els)) = &i.else_branch else {
            return self.fail_at(i, "an `if` used as a value needs an `else`");
        };
        let cond = boxed(self.cond(&i.cond));
        let then = self.block(&i.then_branch, BlockUse::Value);
        let els = match &**els {
            Expr::Block(b) => self.block(&b.block, BlockUse::Value),
            other => {
                let tail = boxed(self.expr(other));
                quote!(__ir::Block { stmts: ::std::vec::Vec::new(), tail: ::std::option::Option::Some(#tail) })
            }
        };
        quote!(__ir::ExprKind::If { cond: #cond, then: #then, els: #els })
    }

    fn method_call(&mut self, m: &syn::ExprMethodCall) -> TokenStream {
        let receiver = boxed(self.expr(&m.receiver));
        let method = string(&m.method.to_string());
        let generics = match &m.turbofish {
            Some(t) => self.type_args(t.args.iter()),
            None => Vec::new(),
        };
        let generics = vec_of(&generics);
        let args: Vec<_> = m.args.iter().map(|a| self.expr(a)).collect();
        let args = vec_of(&args);
        quote!(__ir::ExprKind::MethodCall { receiver: #receiver, method: #method, generics: #generics, args: #args })
    }

    /// Type arguments of an intrinsic or method (`::<f32>`).
    fn type_args<'a>(
        &mut self,
        args: impl Iterator<Item = &'a syn::GenericArgument>,
    ) -> Vec<TokenStream> {
        args.map(|a| match a {
            syn::GenericArgument::Type(t) => self.ty(t),
            other => self.fail_at(other, "only type arguments are supported here: `::<f32>`"),
        })
        .collect()
    }

    /// A call argument: `&x` / `&mut x` passes an array by reference and lowers to `x`.
    fn call_arg(&mut self, arg: &Expr) -> TokenStream {
        match arg {
            Expr::Reference(r) if matches!(&*r.expr, Expr::Path(_)) => self.expr(&r.expr),
            other => self.expr(other),
        }
    }

    fn call(&mut self, c: &syn::ExprCall) -> TokenStream {
        let Expr::Path(func) = &*c.func else {
            return self.fail_at(
                &c.func,
                "only calls of named functions are supported in kernels",
            );
        };
        if func.qself.is_some() {
            return self.fail_at(
                func,
                "qualified paths (`<T as Trait>::f`) are not supported in kernels",
            );
        }
        let segs = &func.path.segments;
        let first = segs[0].ident.to_string();
        if is_heap_type(&first) {
            return self.fail_at(&segs[0], heap_message(&first));
        }
        if segs.len() == 1 && first == self.own_name {
            return self.recursion(func);
        }
        if segs.len() == 1 && first == super::tile2d::CONSTRUCTOR {
            return self.fail_at(
                func,
                "declare a 2-D shared tile in a `let`: `let mut tile = shared_array2d::<T>(ROWS, COLS);`",
            );
        }
        let args: Vec<_> = c.args.iter().map(|a| self.call_arg(a)).collect();
        let args = vec_of(&args);
        let intrinsic = func.path.leading_colon.is_none()
            && ((segs.len() == 1 && INTRINSICS.contains(&first.as_str()))
                || (segs.len() >= 2 && is_type_name(&first)));
        if intrinsic {
            let name: Vec<String> = segs.iter().map(|s| s.ident.to_string()).collect();
            let func_name = string(&name.join("::"));
            let generics = self.segment_type_args(&func.path);
            let generics = vec_of(&generics);
            quote!(__ir::ExprKind::Call { func: #func_name, generics: #generics, args: #args })
        } else {
            self.device_call(&func.path, args)
        }
    }

    /// A fn that calls itself: device fns are inlined and GPU threads have small fixed
    /// stacks, so recursion is refused; a kernel is a launch entry and cannot be called.
    fn recursion(&mut self, func: &syn::ExprPath) -> TokenStream {
        let (name, kind) = (self.own_name.clone(), self.own_kind);
        let msg = if kind == "kernel" {
            format!(
                "kernel `{name}` calls itself: kernels cannot be called from kernels; move the \
                 shared code into a `#[device] fn`"
            )
        } else {
            format!(
                "{kind} `{name}` calls itself: recursion is not supported on the GPU (device \
                 fns are inlined, and threads have small fixed stacks); rewrite it as a loop"
            )
        };
        self.fail_at(func, msg)
    }

    /// The type arguments written on any segment: `shared_array::<f32>`, `Vec4::<f32>::new`.
    fn segment_type_args(&mut self, path: &syn::Path) -> Vec<TokenStream> {
        let mut out = Vec::new();
        for seg in &path.segments {
            match &seg.arguments {
                syn::PathArguments::None => {}
                syn::PathArguments::AngleBracketed(a) => out.extend(self.type_args(a.args.iter())),
                other => {
                    out.push(self.fail_at(other, "only `::<T>` arguments are supported here"));
                }
            }
        }
        out
    }

    /// `foo::<C>(args)` → `CallDevice { def: foo::def, consts: [C], args }`.
    fn device_call(&mut self, path: &syn::Path, args: TokenStream) -> TokenStream {
        let count = path.segments.len();
        let mut def_path = path.clone();
        let mut consts = Vec::new();
        for (i, seg) in def_path.segments.iter_mut().enumerate() {
            let arguments = std::mem::replace(&mut seg.arguments, syn::PathArguments::None);
            match arguments {
                syn::PathArguments::None => {}
                syn::PathArguments::AngleBracketed(a) if i + 1 == count => {
                    consts = a.args.iter().map(|g| self.const_arg(g)).collect();
                }
                other => {
                    self.fail_at(
                        other,
                        "a `#[device]` fn takes const arguments on its own name: `f::<N>(..)`",
                    );
                }
            }
        }
        let span = path.span();
        let def = quote::quote_spanned!(span=> #def_path::def);
        let consts = vec_of(&consts);
        quote!(__ir::ExprKind::CallDevice { def: #def, consts: #consts, args: #args })
    }

    /// A const generic argument of a device call: `N`, `4`, `{ N * 2 }`.
    fn const_arg(&mut self, g: &syn::GenericArgument) -> TokenStream {
        match g {
            syn::GenericArgument::Const(e) => self.expr(e),
            // `f::<N>` parses as a type argument: a lone name is a const generic here.
            syn::GenericArgument::Type(syn::Type::Path(p))
                if p.qself.is_none() && p.path.get_ident().is_some() =>
            {
                let id = p.path.get_ident().expect("checked by the guard");
                if Scalar::from_name(&id.to_string()).is_some() {
                    return self.fail_at(
                        id,
                        "`#[device]` fns take only const generic arguments, not types",
                    );
                }
                let name = string(&id.to_string());
                let span = span_tokens(id.span());
                quote!(__ir::Expr::new(__ir::ExprKind::Path(#name), #span))
            }
            other => self.fail_at(
                other,
                "`#[device]` fns take only const generic arguments: `f::<N>`, `f::<{ N * 2 }>`",
            ),
        }
    }
}
