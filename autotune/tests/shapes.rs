//! Problem shapes from a model's config.json and from a shapes file.

use std::path::{Path, PathBuf};
use warpforge_autotune::shapes::{check_shape, load_shapes, DEFAULT_TOKENS};
use warpforge_autotune::{ModelConfig, ProblemShape, TuneError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn dims_of<'a>(shapes: &'a [ProblemShape], kernel: &str, m: usize) -> Vec<&'a [usize]> {
    shapes
        .iter()
        .filter(|s| s.kernel == kernel && s.dims[0] == m)
        .map(|s| s.dims.as_slice())
        .collect()
}

#[test]
fn tiny_llama_gives_every_projection_softmax_and_elementwise_shapes() {
    let model = ModelConfig::load(&fixture("tiny_llama_config.json")).unwrap();
    assert_eq!(model.num_key_value_heads, Some(2));
    let shapes = model.shapes(&DEFAULT_TOKENS);
    // head_dim 16: q 64 wide, k/v 32 wide; o_proj [m, 64, 64] equals q_proj and appears once.
    let gemm16 = dims_of(&shapes, "gemm", 16);
    assert_eq!(
        gemm16,
        [
            &[16, 64, 64][..],
            &[16, 32, 64],
            &[16, 172, 64],
            &[16, 64, 172],
            &[16, 256, 64]
        ]
    );
    assert_eq!(dims_of(&shapes, "softmax", 4096), [&[4096, 256][..]]);
    assert_eq!(dims_of(&shapes, "vector_add", 128 * 64), [&[128 * 64][..]]);
    assert_eq!(dims_of(&shapes, "sum_partials", 64), [&[64][..]]);
    assert_eq!(dims_of(&shapes, "gemm_tc_nt_bf16_bf16", 16), gemm16);
    // The FP8 GEMM's problems carry the scaling: 1 = block scales.
    let blocked: Vec<Vec<usize>> = gemm16.iter().map(|d| [*d, &[1]].concat()).collect();
    assert_eq!(dims_of(&shapes, "fp8_gemm_e4m3_bf16", 16), blocked);
    assert_eq!(
        dims_of(&shapes, "gemm_tc_nn_bf16_bf16", 16),
        [&[16, 64, 172][..], &[16, 172, 64]]
    );
    // 1×G quantizers carry their group size.
    assert_eq!(
        dims_of(&shapes, "fp8_quantize_rows_bf16_e4m3", 16),
        [&[16, 64, 128][..], &[16, 172, 128]]
    );
    assert_eq!(dims_of(&shapes, "fp8_amax_bf16", 16 * 64), [&[16 * 64][..]]);
    assert_eq!(
        dims_of(&shapes, "fp8_quantize_blocks_bf16_e5m2", 64),
        [&[64, 172][..]]
    );
    // q 64·64, k and v 64·32 each, o 64·64, gate/up/down 64·172 each.
    let layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172;
    assert_eq!(dims_of(&shapes, "coat_adamw_step", layer), [&[layer][..]]);
    // The element-wise layers: SwiGLU (and its backward) over the MLP's width, the residual
    // add over the hidden state.
    assert_eq!(dims_of(&shapes, "swiglu_bf16", 16), [&[16, 172][..]]);
    assert_eq!(dims_of(&shapes, "add_bf16", 16 * 64), [&[16 * 64][..]]);
    // 4 token counts × (5 gemm + 5 gemm_tc_nt + 5 fp8_gemm_e4m3_bf16 + 2 gemm_tc_nn + softmax +
    // vector_add + sum_partials + 2 widths × 11 bf16 FP8 activation kernels + RMSNorm and
    // LayerNorm + the split-KV attention merge; flash attention has no head dim 16 — plus
    // 2 × 5 int4 GEMMs (per-OC and per-IC groups) and 6 layers around them: SwiGLU forward
    // and backward, add, RoPE, the embedding gather and the K/V page write), then 2 FP8
    // weight tilings (bf16, both formats) and 3 COAT kernels. Training adds 5 per token
    // count (cross-entropy, RMSNorm dx and dγ, the column sum, embedding backward) and one
    // layer's tensors for each of the 4 optimizer kernels. The runtime adds 2 per token
    // count: the pair merge of Hydragen decode and the bias add over the q projection. The
    // training backward adds 5 per token count (2 weight-gradient GEMMs, RoPE backward,
    // LayerNorm dx and dγ/dβ; the attention backward has no head dim 16) and one gradient
    // for each of the 2 clipping kernels.
    assert_eq!(
        shapes.len(),
        4 * (20 + 2 * 11 + 3 + 10 + 6 + 5 + 2 + 5) + 2 + 3 + 4 + 2
    );
    assert!(dims_of(&shapes, "flash_attn_fwd_bf16", 4).is_empty());
    assert!(shapes.iter().all(|s| check_shape(s).is_ok()));
    let names: Vec<&str> = shapes.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"lm_head") && names.contains(&"down_proj"));
}

#[test]
fn bad_model_configs_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let p = dir.path().join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    };
    let err = ModelConfig::load(&write(r#"{"hidden_size": 64}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("intermediate_size"), "{err}");
    let err = ModelConfig::load(&write(
        r#"{"hidden_size": 65, "intermediate_size": 8, "num_attention_heads": 4, "vocab_size": 9}"#,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a multiple"), "{err}");
    let err = ModelConfig::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn shapes_file_is_read_and_checked() {
    let shapes = load_shapes(&fixture("shapes.json")).unwrap();
    assert_eq!(shapes.len(), 4);
    assert_eq!(shapes[0].name, "small gemm");
    assert_eq!(shapes[1].dims, [4, 300]);
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (
            r#"[{"kernel": "attention", "dims": [1]}]"#,
            "not a tunable kernel",
        ),
        (
            r#"[{"kernel": "gemm", "dims": [1, 2]}]"#,
            "takes 3 dimension",
        ),
        (r#"[{"kernel": "softmax", "dims": [0, 2]}]"#, "between 1"),
        (r#"{"kernel": "softmax"}"#, "JSON list"),
    ];
    for (text, expect) in bad {
        let p = dir.path().join("s.json");
        std::fs::write(&p, text).unwrap();
        let err = load_shapes(&p).unwrap_err();
        assert!(matches!(err, TuneError::Input { .. }));
        assert!(err.to_string().contains(expect), "{err}");
    }
}
