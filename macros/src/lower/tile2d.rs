//! 2-D shared tiles: `let tile = shared_array2d::<T>(ROWS, COLS);` declares a shared array
//! of `ROWS * COLS` elements, and `tile[r][c]` is its element `r * COLS + c` (row-major).
//!
//! The rewrite happens here, on the syntax, so the IR holds only the flat array and the flat
//! index: the interpreter, the sanitizer (races, bounds, with the flat index in reports) and
//! the CUDA C all see the same `tile[r * COLS + c]` a kernel author would have written.

use super::{boxed, Lowerer};
use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{parse_quote_spanned, Expr};

/// The constructor of a 2-D tile.
pub const CONSTRUCTOR: &str = "shared_array2d";

impl Lowerer {
    /// `shared_array2d::<T>(ROWS, COLS)` bound to `name`: the flat `shared_array::<T>(..)`
    /// it lowers to, with `name` remembered as a tile of `COLS` columns. `None` when `init`
    /// is not a 2-D tile constructor (then `name`, if it was a tile, is shadowed).
    pub(super) fn tile2d_let(&mut self, name: &str, init: Option<&Expr>) -> Option<TokenStream> {
        self.tiles2d.remove(name);
        let Some(Expr::Call(call)) = init else {
            return None;
        };
        let Expr::Path(func) = &*call.func else {
            return None;
        };
        let segs = &func.path.segments;
        if segs.len() != 1 || segs[0].ident != CONSTRUCTOR {
            return None;
        }
        let [rows, cols] = [call.args.first(), call.args.get(1)];
        let (Some(rows), Some(cols), 2) = (rows, cols, call.args.len()) else {
            return Some(self.fail_at(
                call,
                "`shared_array2d::<T>(ROWS, COLS)` takes two constant lengths",
            ));
        };
        let args = &segs[0].arguments;
        // The new tokens take the call's span, so the IR's source lines stay the author's.
        let flat: Expr = parse_quote_spanned!(call.span()=> shared_array #args ((#rows) * (#cols)));
        self.tiles2d.insert(name.to_string(), cols.clone());
        Some(self.expr(&flat))
    }

    /// `tile[r][c]` on a 2-D tile: `tile[r * COLS + c]`. `None` when `e` is not indexing a
    /// tile twice.
    pub(super) fn tile2d_index(&mut self, e: &syn::ExprIndex) -> Option<TokenStream> {
        let Expr::Index(row) = &*e.expr else {
            return None;
        };
        let cols = self.tile_columns(&row.expr)?.clone();
        let (tile, r, c) = (&row.expr, &row.index, &e.index);
        let flat: Expr = parse_quote_spanned!(e.span()=> #tile[(#r) * (#cols) + (#c)]);
        let Expr::Index(flat) = flat else {
            unreachable!("parse_quote of an index expression")
        };
        let base = boxed(self.expr(&flat.expr));
        let index = boxed(self.expr(&flat.index));
        Some(quote::quote!(__ir::ExprKind::Index(#base, #index)))
    }

    /// A tile indexed once (`tile[r]`): a row is not a value in a kernel.
    pub(super) fn tile2d_single_index(&mut self, e: &syn::ExprIndex) -> Option<TokenStream> {
        self.tile_columns(&e.expr)?;
        Some(self.fail_at(
            e,
            "a 2-D shared tile is indexed by row and column: `tile[r][c]`",
        ))
    }

    fn tile_columns(&self, e: &Expr) -> Option<&Expr> {
        let Expr::Path(p) = e else {
            return None;
        };
        let ident = p.path.get_ident()?;
        self.tiles2d.get(&ident.to_string())
    }
}
