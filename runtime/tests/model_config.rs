//! `config.json` parsing: the classic and transformers-5 RoPE forms, the RoPE inverse
//! frequencies, Mistral and Qwen2 specifics, and an error naming the field and value for
//! everything unsupported or malformed. (Parity with transformers: `model_parity.rs`.)

use serde_json::{json, Value};
use warpforge_runtime::model::{ConfigError, ModelConfig, ModelType, RopeScaling};

/// A Llama-3.1-8B-style config.json (classic RoPE form).
fn llama31() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": false,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "torch_dtype": "bfloat16",
        "attention_bias": false,
        "hidden_act": "silu"
    })
}

fn parse(v: &Value) -> Result<ModelConfig, ConfigError> {
    ModelConfig::from_json(v)
}

fn error(v: &Value) -> String {
    parse(v).unwrap_err().to_string()
}

#[test]
fn classic_and_rope_parameters_forms_agree() {
    let classic = parse(&llama31()).unwrap();
    assert_eq!(classic.model_type, ModelType::Llama);
    assert_eq!(classic.head_dim, 128);
    assert_eq!(classic.group_size(), 4);
    assert_eq!((classic.q_dim(), classic.kv_dim()), (4096, 1024));
    assert_eq!(classic.bos_token_ids, vec![128000]);
    assert_eq!(classic.eos_token_ids, vec![128001, 128008, 128009]);
    assert_eq!(classic.dtype.as_deref(), Some("bfloat16"));
    assert!(!classic.qkv_bias && !classic.o_bias && !classic.tie_word_embeddings);
    assert_eq!(classic.layer_windows, vec![None; 32]);
    assert_eq!(classic.rope.theta, 500000.0);
    assert_eq!(
        classic.rope.scaling,
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192
        }
    );

    let mut v5 = llama31();
    let obj = v5.as_object_mut().unwrap();
    let mut params = obj.remove("rope_scaling").unwrap();
    params["rope_theta"] = obj.remove("rope_theta").unwrap();
    obj.insert("rope_parameters".into(), params);
    let dtype = obj.remove("torch_dtype").unwrap();
    obj.insert("dtype".into(), dtype);
    assert_eq!(parse(&v5).unwrap(), classic);

    // `type` instead of `rope_type`, and defaults: theta 10000, no scaling, kv heads = heads.
    let mut old = llama31();
    old["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
    assert_eq!(
        parse(&old).unwrap().rope.scaling,
        RopeScaling::Linear { factor: 2.0 }
    );
    let mut bare = llama31();
    for key in [
        "rope_theta",
        "rope_scaling",
        "num_key_value_heads",
        "eos_token_id",
    ] {
        bare.as_object_mut().unwrap().remove(key);
    }
    let bare = parse(&bare).unwrap();
    assert_eq!(
        (bare.rope.theta, bare.rope.scaling),
        (10000.0, RopeScaling::Default)
    );
    assert_eq!(bare.num_key_value_heads, 32);
    assert!(bare.eos_token_ids.is_empty());
}

#[test]
fn rope_inverse_frequencies_follow_the_formulas() {
    let mut c = llama31();
    c["rope_scaling"] = Value::Null;
    c["rope_theta"] = json!(10000.0);
    c["head_dim"] = json!(4);
    let default = parse(&c).unwrap().rope_inv_freq();
    assert_eq!(default, vec![1.0, 0.01]);
    c["rope_scaling"] = json!({"rope_type": "linear", "factor": 4.0});
    assert_eq!(parse(&c).unwrap().rope_inv_freq(), vec![0.25, 0.0025]);

    // Llama 3: head_dim 128, theta 500000, the Llama-3.1 constants. Long wavelengths
    // (> 8192) are divided by 8, short ones (< 2048) kept, the band between blended.
    let llama = parse(&llama31()).unwrap();
    let scaled = llama.rope_inv_freq();
    let mut plain = llama.clone();
    plain.rope.scaling = RopeScaling::Default;
    let base = plain.rope_inv_freq();
    let mut bands = [0; 3];
    for (&s, &b) in scaled.iter().zip(&base) {
        let wavelen = 2.0 * std::f64::consts::PI / b;
        if wavelen < 2048.0 {
            assert_eq!(s, b);
            bands[0] += 1;
        } else if wavelen > 8192.0 {
            assert_eq!(s, b / 8.0);
            bands[1] += 1;
        } else {
            let smooth = (8192.0 / wavelen - 1.0) / 3.0;
            assert!((s - ((1.0 - smooth) * b / 8.0 + smooth * b)).abs() <= 1e-15 * b);
            assert!(s < b && s > b / 8.0);
            bands[2] += 1;
        }
    }
    assert!(bands.iter().all(|&n| n > 0), "bands {bands:?}");
}

#[test]
fn llama3_original_max_position_precedence() {
    let mut c = llama31();
    c["original_max_position_embeddings"] = json!(4096);
    let RopeScaling::Llama3 {
        original_max_position_embeddings: top,
        ..
    } = parse(&c).unwrap().rope.scaling
    else {
        panic!()
    };
    assert_eq!(top, 4096);
    let mut c = llama31();
    c["rope_scaling"]
        .as_object_mut()
        .unwrap()
        .remove("original_max_position_embeddings");
    let RopeScaling::Llama3 {
        original_max_position_embeddings: fallback,
        ..
    } = parse(&c).unwrap().rope.scaling
    else {
        panic!()
    };
    assert_eq!(fallback, 131072);
}

#[test]
fn mistral_and_qwen2_specifics() {
    let mut mistral = llama31();
    mistral["model_type"] = json!("mistral");
    mistral["sliding_window"] = json!(4096);
    mistral["num_hidden_layers"] = json!(2);
    let m = parse(&mistral).unwrap();
    assert_eq!(m.model_type, ModelType::Mistral);
    assert_eq!(m.layer_windows, vec![Some(4096), Some(4096)]);
    assert_eq!(m.sliding_window_limit(), Some(4096));
    mistral["sliding_window"] = Value::Null;
    assert_eq!(parse(&mistral).unwrap().layer_windows, vec![None, None]);

    let mut qwen = llama31();
    qwen["model_type"] = json!("qwen2");
    qwen["num_hidden_layers"] = json!(4);
    qwen["tie_word_embeddings"] = json!(true);
    qwen["sliding_window"] = json!(32768);
    qwen["use_sliding_window"] = json!(false);
    qwen["max_window_layers"] = json!(2);
    let q = parse(&qwen).unwrap();
    assert!(q.qkv_bias && !q.o_bias && q.tie_word_embeddings);
    assert_eq!(q.layer_windows, vec![None; 4]);
    assert_eq!(q.sliding_window_limit(), None);
    qwen["use_sliding_window"] = json!(true);
    assert_eq!(
        parse(&qwen).unwrap().layer_windows,
        vec![None, None, Some(32768), Some(32768)]
    );
    qwen["layer_types"] = json!([
        "sliding_attention",
        "full_attention",
        "full_attention",
        "sliding_attention"
    ]);
    assert_eq!(
        parse(&qwen).unwrap().layer_windows,
        vec![Some(32768), None, None, Some(32768)]
    );
    qwen["layer_types"] = json!(["full_attention"]);
    assert!(error(&qwen).contains("layer_types"));

    // Llama with attention_bias: q/k/v and o.
    let mut biased = llama31();
    biased["attention_bias"] = json!(true);
    let b = parse(&biased).unwrap();
    assert!(b.qkv_bias && b.o_bias);
}

#[test]
fn config_errors_name_the_field_and_value() {
    let with = |key: &str, value: Value| {
        let mut c = llama31();
        c[key] = value;
        error(&c)
    };
    let without = |key: &str| {
        let mut c = llama31();
        c.as_object_mut().unwrap().remove(key);
        error(&c)
    };
    let cases = [
        (
            with("model_type", json!("gemma")),
            vec!["model_type", "\"gemma\""],
        ),
        (without("model_type"), vec!["missing field `model_type`"]),
        (without("hidden_size"), vec!["missing field `hidden_size`"]),
        (
            with("hidden_size", json!("4096")),
            vec!["`hidden_size`", "\"4096\"", "integer"],
        ),
        (
            with("num_hidden_layers", json!(0)),
            vec!["`num_hidden_layers`", "positive"],
        ),
        (
            with("num_key_value_heads", json!(5)),
            vec!["`num_key_value_heads`", "5", "divisor"],
        ),
        (
            with("head_dim", json!(15)),
            vec!["`head_dim`", "15", "even"],
        ),
        (
            with("hidden_act", json!("gelu")),
            vec!["`hidden_act`", "gelu"],
        ),
        (with("mlp_bias", json!(true)), vec!["`mlp_bias`"]),
        (with("eos_token_id", json!("x")), vec!["`eos_token_id`"]),
        (
            with("partial_rotary_factor", json!(0.5)),
            vec!["`partial_rotary_factor`", "0.5"],
        ),
        (
            with("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
            vec!["rope_scaling.rope_type", "\"yarn\"", "not supported"],
        ),
        (
            with("rope_scaling", json!({"type": "dynamic", "factor": 2.0})),
            vec!["rope_scaling.rope_type", "\"dynamic\""],
        ),
        (
            with("rope_scaling", json!({"rope_type": "linear"})),
            vec!["rope_scaling.factor", "missing", "linear"],
        ),
        (
            with(
                "rope_scaling",
                json!({"rope_type": "llama3", "factor": 8.0,
                "low_freq_factor": 4.0, "high_freq_factor": 1.0}),
            ),
            vec![
                "rope_scaling.high_freq_factor",
                "greater than low_freq_factor",
            ],
        ),
        (
            with(
                "rope_parameters",
                json!({"rope_type": "longrope", "rope_theta": 1e4}),
            ),
            vec!["rope_parameters.rope_type", "\"longrope\""],
        ),
        (
            with("rope_scaling", json!(3)),
            vec!["`rope_scaling`", "object"],
        ),
    ];
    for (message, parts) in cases {
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }
    assert!(matches!(
        ModelConfig::from_json(&json!([1, 2])),
        Err(ConfigError::NotAnObject)
    ));
    let missing = tempfile::tempdir().unwrap();
    let msg = ModelConfig::load(missing.path()).unwrap_err().to_string();
    assert!(msg.contains("config.json"), "{msg}");
    std::fs::write(missing.path().join("config.json"), "{oops").unwrap();
    let msg = ModelConfig::load(missing.path()).unwrap_err().to_string();
    assert!(msg.contains("not valid JSON"), "{msg}");
}
