//! Which path the generated code names the DSL crate by.
//!
//! A user normally depends on the `warpforge` facade only, so the generated code must reach
//! the DSL as `::warpforge::dsl`; the workspace's own crates depend on `warpforge-dsl`
//! directly and have no `warpforge` to name. The path is chosen per macro call:
//!
//! 1. `#[kernel(crate = some::path, ..)]` / `#[device(crate = some::path)]`: the given path,
//!    which must name the DSL crate (`::warpforge_dsl`, or `::my_alias::dsl`).
//! 2. Otherwise the calling package's `Cargo.toml` (`$CARGO_MANIFEST_DIR`) decides: the
//!    package `warpforge` itself (its tests, examples and doctests) → `::warpforge::dsl`;
//!    a dependency on the package `warpforge`, renamed or not → `::<its name>::dsl`; else a
//!    dependency on `warpforge-dsl` → `::<its name>`.
//! 3. With no manifest to read (a build outside cargo): `::warpforge::dsl`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use std::cell::RefCell;

thread_local! {
    /// The path of the macro call being expanded (proc macros expand one call at a time).
    static DSL: RefCell<Option<TokenStream>> = const { RefCell::new(None) };
}

/// Sets the DSL path for the expansion that follows: the override or the manifest's choice.
pub fn set_for_call(explicit: Option<&syn::Path>) {
    let path = match explicit {
        Some(p) => p.to_token_stream(),
        None => from_manifest(),
    };
    DSL.with(|d| *d.borrow_mut() = Some(path));
}

/// The DSL crate's path, e.g. `::warpforge::dsl`.
pub fn dsl() -> TokenStream {
    DSL.with(|d| d.borrow().clone())
        .unwrap_or_else(facade_default)
}

fn facade_default() -> TokenStream {
    quote!(::warpforge::dsl)
}

fn from_manifest() -> TokenStream {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return facade_default();
    };
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("Cargo.toml"));
    let Ok(manifest) = text.unwrap_or_default().parse::<toml::Table>() else {
        return facade_default();
    };
    choose(&manifest)
}

/// Step 2 of the module docs on a parsed manifest.
fn choose(manifest: &toml::Table) -> TokenStream {
    let package = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str());
    if package == Some("warpforge") {
        return facade_default();
    }
    let deps = dependency_names(manifest);
    let find = |package: &str| deps.iter().find(|(_, p)| p == package).map(|(n, _)| n);
    if let Some(name) = find("warpforge") {
        let name = format_ident!("{}", name.replace('-', "_"));
        return quote!(::#name::dsl);
    }
    if let Some(name) = find("warpforge-dsl") {
        let name = format_ident!("{}", name.replace('-', "_"));
        return quote!(::#name);
    }
    facade_default()
}

/// `(name in code, package)` of every dependency: normal, dev and build, target-specific too.
fn dependency_names(manifest: &toml::Table) -> Vec<(String, String)> {
    let targets = manifest.get("target").and_then(|t| t.as_table());
    let scopes = std::iter::once(manifest).chain(
        targets
            .into_iter()
            .flat_map(|t| t.values().filter_map(|t| t.as_table())),
    );
    let mut names = Vec::new();
    for scope in scopes {
        for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = scope.get(key).and_then(|d| d.as_table()) else {
                continue;
            };
            for (name, spec) in deps {
                let package = spec.get("package").and_then(|p| p.as_str());
                names.push((name.clone(), package.unwrap_or(name).to_string()));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(manifest: &str) -> String {
        choose(&manifest.parse().unwrap())
            .to_string()
            .replace(' ', "")
    }

    #[test]
    fn the_facade_wins_renamed_or_not() {
        assert_eq!(
            chosen("[package]\nname='app'\n[dependencies]\nwarpforge='0.1'\nwarpforge-dsl='0.1'"),
            "::warpforge::dsl"
        );
        assert_eq!(
            chosen("[package]\nname='app'\n[dependencies]\nwf={version='0.1',package='warpforge'}"),
            "::wf::dsl"
        );
        assert_eq!(
            chosen("[package]\nname='app'\n[target.'cfg(unix)'.dev-dependencies.warpforge]\nversion='0.1'"),
            "::warpforge::dsl"
        );
    }

    #[test]
    fn the_dsl_crate_is_named_when_there_is_no_facade() {
        assert_eq!(
            chosen(
                "[package]\nname='warpforge-kernels'\n[dependencies]\nwarpforge-dsl.workspace=true"
            ),
            "::warpforge_dsl"
        );
    }

    #[test]
    fn the_facade_package_itself_and_unknown_callers_get_the_facade() {
        assert_eq!(
            chosen("[package]\nname='warpforge'\n[dependencies]\nwarpforge-dsl='0.1'"),
            "::warpforge::dsl"
        );
        assert_eq!(chosen("[package]\nname='app'"), "::warpforge::dsl");
    }
}
