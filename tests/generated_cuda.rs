//! Snapshots of the CUDA C generated for each library kernel's default config: a change in
//! the generator or a kernel shows up as a reviewable diff (`INSTA_UPDATE=always` to accept).

use warpforge::dsl::{codegen, resolve};
use warpforge::kernels::library;

#[test]
fn library_kernels_generate_the_expected_cuda_c() {
    for k in library() {
        let typed = resolve::specialize(k.def(), &k.default_config()).unwrap();
        let source = codegen::cuda_source(&typed);
        insta::assert_snapshot!(k.name(), source);
    }
}
