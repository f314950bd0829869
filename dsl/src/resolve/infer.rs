//! Type inference for untyped literals and unannotated `let`s, by unification.
//!
//! Rust infers `let mut i = 0; while i < n {..}` (n: u32) as `i: u32`. The resolver walks a
//! function twice: the first walk collects equalities between types, some of them inference
//! variables (one per untyped literal and per `let` without a type); the variables are then
//! solved (unconstrained ones default as rustc does: integers to i32, floats to f32); the
//! second walk builds the typed IR with every type known.

use crate::types::{ScalarType, Type};

/// A type during inference: known, or an inference variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Known(Type),
    Var(u32),
}

impl Ty {
    pub fn scalar(s: ScalarType) -> Ty {
        Ty::Known(Type::Scalar(s))
    }
}

/// What an inference variable may become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// From an integer literal: any integer type (or a float? no: Rust's `1` is never a float).
    Int,
    /// From a float literal: any float type.
    Float,
    /// From `let x;`-like declarations: anything.
    Any,
}

impl VarKind {
    fn admits(self, t: Type) -> bool {
        match (self, t) {
            (VarKind::Any, _) => true,
            (VarKind::Int, Type::Scalar(s)) => s.is_int(),
            (VarKind::Float, Type::Scalar(s)) => s.is_float(),
            _ => false,
        }
    }

    fn default_type(self) -> Type {
        match self {
            VarKind::Int | VarKind::Any => Type::I32,
            VarKind::Float => Type::F32,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            VarKind::Int => "an integer literal",
            VarKind::Float => "a float literal",
            VarKind::Any => "a value",
        }
    }
}

/// Union-find over inference variables.
#[derive(Clone, Debug, Default)]
pub struct Unifier {
    parent: Vec<u32>,
    kind: Vec<VarKind>,
    bound: Vec<Option<Type>>,
}

impl Unifier {
    pub fn fresh(&mut self, kind: VarKind) -> Ty {
        let id = self.parent.len() as u32;
        self.parent.push(id);
        self.kind.push(kind);
        self.bound.push(None);
        Ty::Var(id)
    }

    fn root(&mut self, v: u32) -> u32 {
        let p = self.parent[v as usize];
        if p == v {
            return v;
        }
        let r = self.root(p);
        self.parent[v as usize] = r;
        r
    }

    /// The type as far as known now.
    pub fn probe(&mut self, t: Ty) -> Ty {
        match t {
            Ty::Known(_) => t,
            Ty::Var(v) => {
                let r = self.root(v);
                match self.bound[r as usize] {
                    Some(k) => Ty::Known(k),
                    None => Ty::Var(r),
                }
            }
        }
    }

    /// The kind of an unbound variable (None when the type is known).
    pub fn kind_of(&mut self, t: Ty) -> Option<VarKind> {
        match self.probe(t) {
            Ty::Known(_) => None,
            Ty::Var(r) => Some(self.kind[r as usize]),
        }
    }

    /// Makes `a` and `b` the same type, or says why they can't be.
    pub fn unify(&mut self, a: Ty, b: Ty) -> Result<(), String> {
        match (self.probe(a), self.probe(b)) {
            (Ty::Known(x), Ty::Known(y)) if x == y => Ok(()),
            (Ty::Known(x), Ty::Known(y)) => Err(format!("mismatched types: `{x}` and `{y}`")),
            (Ty::Var(v), Ty::Known(t)) | (Ty::Known(t), Ty::Var(v)) => {
                let kind = self.kind[v as usize];
                if !kind.admits(t) {
                    return Err(format!("{} cannot have type `{t}`", kind.describe()));
                }
                self.bound[v as usize] = Some(t);
                Ok(())
            }
            (Ty::Var(x), Ty::Var(y)) if x == y => Ok(()),
            (Ty::Var(x), Ty::Var(y)) => {
                let (kx, ky) = (self.kind[x as usize], self.kind[y as usize]);
                let kind = match (kx, ky) {
                    (VarKind::Any, k) | (k, VarKind::Any) => k,
                    (a, b) if a == b => a,
                    _ => return Err("mismatched types: an integer and a float".into()),
                };
                self.parent[x as usize] = y;
                self.kind[y as usize] = kind;
                Ok(())
            }
        }
    }

    /// The final type: bound, or the default of its kind.
    pub fn solve(&mut self, t: Ty) -> Type {
        match self.probe(t) {
            Ty::Known(k) => k,
            Ty::Var(r) => self.kind[r as usize].default_type(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_takes_the_other_side() {
        let mut u = Unifier::default();
        let lit = u.fresh(VarKind::Int);
        let x = u.fresh(VarKind::Any);
        u.unify(x, lit).unwrap();
        u.unify(x, Ty::scalar(ScalarType::U32)).unwrap();
        assert_eq!(u.solve(lit), Type::U32);
        assert!(u.unify(lit, Ty::scalar(ScalarType::F32)).is_err());
    }

    #[test]
    fn defaults_follow_rust() {
        let mut u = Unifier::default();
        let i = u.fresh(VarKind::Int);
        let f = u.fresh(VarKind::Float);
        assert_eq!(u.solve(i), Type::I32);
        assert_eq!(u.solve(f), Type::F32);
        assert!(u.unify(i, f).is_err());
        let h = u.fresh(VarKind::Float);
        u.unify(h, Ty::scalar(ScalarType::F16)).unwrap();
        assert_eq!(u.solve(h), Type::Scalar(ScalarType::F16));
    }
}
