//! The model loader and the host reference forward against Hugging Face transformers
//! (fixtures made by `scripts/make-parity-fixture.py`, under `tests/fixtures/model/`).
//!
//! Tolerance for logits: the fixtures ran transformers in f32 on bf16-valued weights, which
//! the loader widens exactly, so the only differences are the two implementations' f32
//! rounding (PyTorch's f32 GEMM/softmax accumulation vs our f64 accumulation). Measured: at
//! most 1.5e-6 (tiny-llama) and 9.5e-6 (tiny-qwen2, larger logits) on logits of magnitude
//! up to ~10. We allow 2e-5 absolute + 1e-5 relative: above that rounding noise, yet tight
//! enough that an RMSNorm eps of 1e-6 instead of 1e-5 fails (`tolerance_catches_a_wrong_eps`),
//! and 500× below the smallest top-1/top-2 margin of a greedy step in the fixtures (0.011),
//! so greedy tokens must match exactly.

use safetensors::tensor::{Dtype, TensorView as StView};
use safetensors::SafeTensors;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use warpforge_runtime::model::{
    HostModel, ModelConfig, ModelDir, ModelError, ModelWeights, RopeScaling, Tokenizer,
    WeightsError,
};

const ABS_TOL: f32 = 2e-5;
const REL_TOL: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Expected logits of prompt `i`: `[len, vocab]` f32.
fn expected_logits(name: &str, i: usize) -> (Vec<usize>, Vec<f32>) {
    let bytes =
        std::fs::read(fixtures().join(format!("{name}.expected-logits.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(&format!("prompt.{i}")).unwrap();
    assert_eq!(t.dtype(), Dtype::F32);
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), values)
}

/// Max |ours - theirs| and whether every element is within tolerance.
fn compare(ours: &[f32], theirs: &[f32]) -> (f32, bool) {
    assert_eq!(ours.len(), theirs.len());
    let mut max = 0f32;
    let mut ok = true;
    for (&a, &b) in ours.iter().zip(theirs) {
        let d = (a - b).abs();
        max = max.max(d);
        ok &= d <= ABS_TOL + REL_TOL * b.abs();
    }
    (max, ok)
}

/// The reference forward matches transformers' logits at every prompt position and its greedy
/// continuations token for token.
fn check_parity(name: &str) -> f32 {
    let model = HostModel::load(&fixtures().join(name)).unwrap();
    let expected = read_json(&fixtures().join(format!("{name}.expected.json")));
    let new_tokens = expected["new_tokens"].as_u64().unwrap() as usize;
    let mut worst = 0f32;
    for (i, prompt) in expected["prompts"].as_array().unwrap().iter().enumerate() {
        let tokens = ids(&prompt["ids"]);
        let logits = model.prompt_logits(&tokens).unwrap();
        let (shape, want) = expected_logits(name, i);
        assert_eq!(shape, vec![tokens.len(), model.config().vocab_size]);
        let (max, ok) = compare(&logits.values, &want);
        println!(
            "{name} prompt {i} ({} tokens): max |logit diff| {max:.3e}",
            tokens.len()
        );
        assert!(ok, "{name} prompt {i}: logits differ by up to {max}");
        worst = worst.max(max);
        let greedy = model.greedy(&tokens, new_tokens, &[]).unwrap();
        assert_eq!(greedy, ids(&prompt["greedy"]), "{name} prompt {i}: greedy");
    }
    worst
}

#[test]
fn llama_matches_transformers() {
    let worst = check_parity("tiny-llama");
    println!(
        "tiny-llama: worst max |logit diff| {worst:.3e} (tolerance {ABS_TOL} + {REL_TOL}·|x|)"
    );
}

#[test]
fn qwen2_with_biases_tied_embeddings_and_sliding_window_matches_transformers() {
    let dir = fixtures().join("tiny-qwen2");
    let config = ModelConfig::load(&dir).unwrap();
    assert!(config.qkv_bias && !config.o_bias && config.tie_word_embeddings);
    assert_eq!(config.layer_windows, vec![None, Some(8)]);
    let worst = check_parity("tiny-qwen2");
    println!("tiny-qwen2: worst max |logit diff| {worst:.3e}");
}

/// The tolerance is not so loose that a small semantic slip passes: the same weights with
/// RMSNorm eps 1e-6 (the fixture has 1e-5) must fail the comparison.
#[test]
fn tolerance_catches_a_wrong_eps() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = read_json(&fixtures().join("tiny-llama/config.json"));
    config["rms_norm_eps"] = json!(1e-6);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixtures().join("tiny-llama/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let model = HostModel::load(dir.path()).unwrap();
    let expected = read_json(&fixtures().join("tiny-llama.expected.json"));
    let tokens = ids(&expected["prompts"][3]["ids"]);
    let (max, ok) = compare(
        &model.prompt_logits(&tokens).unwrap().values,
        &expected_logits("tiny-llama", 3).1,
    );
    println!("eps 1e-6 instead of 1e-5: max |logit diff| {max:.3e}");
    assert!(!ok, "a wrong eps passed the tolerance (max diff {max})");
}

#[test]
fn rope_inv_freq_matches_transformers_buffer() {
    let config = ModelConfig::load(&fixtures().join("tiny-llama")).unwrap();
    assert!(matches!(config.rope.scaling, RopeScaling::Llama3 { .. }));
    let expected = read_json(&fixtures().join("tiny-llama.expected.json"));
    let theirs: Vec<f64> = expected["inv_freq"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let ours = config.rope_inv_freq();
    assert_eq!(ours.len(), theirs.len());
    for (i, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
        // transformers computes in f32: one f32 rounding of the exact value, give or take an ulp.
        let ulp = (b as f32).abs() * f32::EPSILON;
        assert!(
            ((a as f32) - b as f32).abs() <= 2.0 * ulp,
            "inv_freq[{i}]: ours {a}, transformers {b}"
        );
    }
}

#[test]
fn shared_prefix_prompts_agree_on_the_prefix_and_chunked_forward_equals_whole() {
    let model = HostModel::load(&fixtures().join("tiny-llama")).unwrap();
    let expected = read_json(&fixtures().join("tiny-llama.expected.json"));
    let prompts = expected["prompts"].as_array().unwrap();
    let (a, b) = (ids(&prompts[3]["ids"]), ids(&prompts[4]["ids"]));
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(
        shared >= 32,
        "fixture prompts 3 and 4 share {shared} tokens"
    );
    let (la, lb) = (
        model.prompt_logits(&a).unwrap(),
        model.prompt_logits(&b).unwrap(),
    );
    for i in 0..shared {
        assert_eq!(la.row(i), lb.row(i), "position {i} of the shared prefix");
    }
    assert_ne!(la.row(shared), lb.row(shared));
    // The prefix's KV cache, then the rest in uneven chunks: the same logits, bit for bit.
    let mut cache = model.new_cache();
    let mut rows = model.forward(&b[..shared], &mut cache).unwrap().values;
    for chunk in b[shared..].chunks(3) {
        rows.extend(model.forward(chunk, &mut cache).unwrap().values);
    }
    assert_eq!(cache.len(), b.len());
    assert_eq!(rows, lb.values);
    let batch = model.forward_batch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(batch, vec![la, lb]);
}

#[test]
fn reference_rejects_bad_input() {
    let model = HostModel::load(&fixtures().join("tiny-llama")).unwrap();
    let err = model.prompt_logits(&[1, 256]).unwrap_err();
    assert!(matches!(
        err,
        ModelError::TokenOutOfRange {
            id: 256,
            position: 1,
            vocab: 256
        }
    ));
    assert!(err.to_string().contains("outside the vocabulary"));
    assert!(matches!(
        model.prompt_logits(&[]),
        Err(ModelError::EmptyInput)
    ));
    assert_eq!(model.greedy(&[1, 2], 0, &[]).unwrap(), Vec::<u32>::new());
    // Stops after a stop token (the first greedy token of the fixture's prompt 0 is 50).
    assert_eq!(model.greedy(&[1], 8, &[50]).unwrap(), vec![50]);
}

// ---- weights: copies of the fixture rewritten in other forms -------------------------------

/// The fixture's tensors as (name, dtype, shape, bytes).
fn fixture_tensors(name: &str) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(fixtures().join(name).join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut list: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// bf16 bytes → f32 or f16 bytes (f32 exact; f16 rounds to nearest even).
fn convert(bytes: &[u8], to: Dtype) -> Vec<u8> {
    bytes
        .chunks_exact(2)
        .flat_map(|c| {
            let v = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
            match to {
                Dtype::F32 => v.to_le_bytes().to_vec(),
                Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
                _ => c.to_vec(),
            }
        })
        .collect()
}

fn write_safetensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, StView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), StView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A copy of fixture `name` in a temporary directory with the tensors `edit` returns.
fn rewritten(
    name: &str,
    edit: impl FnOnce(
        Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    ) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join(name).join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let tensors = edit(fixture_tensors(name));
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    dir
}

#[test]
fn sharded_f32_copy_loads_and_gives_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny-llama/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let tensors: Vec<_> = fixture_tensors("tiny-llama")
        .into_iter()
        .map(|(n, _, s, b)| (n, Dtype::F32, s, convert(&b, Dtype::F32)))
        .collect();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        write_safetensors(&dir.path().join(file), part);
        for (n, ..) in part {
            weight_map.insert(n.clone(), json!(file));
        }
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let weights = ModelWeights::open(dir.path()).unwrap();
    assert_eq!(weights.dtype(), Some(warpforge_runtime::model::DType::F32));
    let sharded = HostModel::load(dir.path()).unwrap();
    let single = HostModel::load(&fixtures().join("tiny-llama")).unwrap();
    let prompt = [1, 5, 9, 200, 33];
    // bf16 → f32 is exact, so the logits are identical, not just close.
    assert_eq!(
        sharded.prompt_logits(&prompt).unwrap(),
        single.prompt_logits(&prompt).unwrap()
    );
    // A shard the index names but the directory lacks is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = ModelWeights::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
}

#[test]
fn f16_copy_loads_and_stays_close() {
    let dir = rewritten("tiny-llama", |t| {
        t.into_iter()
            .map(|(n, _, s, b)| (n, Dtype::F16, s, convert(&b, Dtype::F16)))
            .collect()
    });
    let model = ModelDir::open(dir.path()).unwrap();
    let view = model.weights.get("model.norm.weight").unwrap();
    assert_eq!(view.dtype, warpforge_runtime::model::DType::F16);
    assert_eq!(view.to_f16().len(), 64);
    let f16 = HostModel::load(dir.path()).unwrap();
    let bf16 = HostModel::load(&fixtures().join("tiny-llama")).unwrap();
    let prompt = [1, 17, 42, 99];
    let (a, b) = (
        f16.prompt_logits(&prompt).unwrap(),
        bf16.prompt_logits(&prompt).unwrap(),
    );
    // bf16 values in f16's normal range are exact in f16; only tiny (subnormal) ones round.
    let (max, ok) = compare(&a.values, &b.values);
    assert!(ok, "f16 copy differs by {max}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = rewritten("tiny-llama", |t| {
        t.into_iter()
            .filter(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight")
            .collect()
    });
    let err = ModelDir::open(dir.path()).unwrap_err();
    assert!(matches!(
        err,
        ModelError::Weights(WeightsError::Missing { .. })
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("missing tensor model.layers.1.mlp.up_proj.weight")
            && msg.contains("[128, 64]"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_named_with_file_shapes_and_dtype() {
    let dir = rewritten("tiny-llama", |t| {
        t.into_iter()
            .map(|(n, d, s, b)| match n.as_str() {
                "model.layers.0.self_attn.k_proj.weight" => (n, d, vec![s[1], s[0]], b),
                _ => (n, d, s, b),
            })
            .collect()
    });
    let msg = ModelDir::open(dir.path()).unwrap_err().to_string();
    for part in [
        "model.safetensors",
        "model.layers.0.self_attn.k_proj.weight",
        "[64, 32]",
        "[32, 64]",
        "bf16",
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn untied_model_without_lm_head_is_an_error_tied_one_is_not() {
    let dir = rewritten("tiny-llama", |t| {
        t.into_iter()
            .filter(|(n, ..)| n != "lm_head.weight")
            .collect()
    });
    let msg = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("missing tensor lm_head.weight"), "{msg}");
    // The Qwen2 fixture is tied: it has no lm_head.weight and loads.
    let qwen = ModelDir::open(&fixtures().join("tiny-qwen2")).unwrap();
    assert!(qwen.weights.get("lm_head.weight").is_none());
}

#[test]
fn bad_dtype_malformed_file_and_int4_are_errors() {
    let dir = rewritten("tiny-llama", |mut t| {
        t[0].1 = Dtype::I32;
        let doubled = t[0].3.repeat(2);
        t[0].3 = doubled;
        t
    });
    let msg = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("I32") && msg.contains("expected F32, F16 or BF16"),
        "{msg}"
    );

    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{not json",
    )
    .unwrap();
    let msg = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("not a valid safetensors file"), "{msg}");

    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let msg = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("no weights found"), "{msg}");

    // GPTQ tensors in the files.
    let int4 = rewritten("tiny-llama", |mut t| {
        t.push((
            "model.layers.0.self_attn.q_proj.qweight".into(),
            Dtype::I32,
            vec![8, 64],
            vec![0; 8 * 64 * 4],
        ));
        t
    });
    let msg = ModelDir::open(int4.path()).unwrap_err().to_string();
    assert!(
        msg.contains("int4") && msg.contains("handled by the int4 loader"),
        "{msg}"
    );

    // A quantization_config in config.json.
    let mut config = read_json(&fixtures().join("tiny-llama/config.json"));
    config["quantization_config"] = json!({"quant_method": "awq", "bits": 4});
    std::fs::write(int4.path().join("config.json"), config.to_string()).unwrap();
    let msg = ModelDir::open(int4.path()).unwrap_err().to_string();
    assert!(
        msg.contains("\"awq\"") && msg.contains("int4 loader"),
        "{msg}"
    );
    config["quantization_config"] = json!({"quant_method": "bitsandbytes"});
    std::fs::write(int4.path().join("config.json"), config.to_string()).unwrap();
    let msg = ModelDir::open(int4.path()).unwrap_err().to_string();
    assert!(
        msg.contains("bitsandbytes") && msg.contains("not supported"),
        "{msg}"
    );
}

// ---- tokenizer ----------------------------------------------------------------------------------

#[test]
fn tokenizer_matches_python_tokenizers_and_is_optional() {
    let dir = fixtures().join("tokenizer");
    let tok = Tokenizer::from_dir(&dir)
        .unwrap()
        .expect("fixture has tokenizer.json");
    assert_eq!(tok.vocab_size(), 320);
    assert_eq!(tok.token_id("</s>"), Some(2));
    let expected = read_json(&dir.join("expected.json"));
    for case in expected["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids_ = tok.encode(text, false).unwrap();
        assert_eq!(ids_, ids(&case["ids"]), "encoding of {text:?}");
        assert_eq!(
            tok.decode(&ids_, true).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
    // A model directory without tokenizer.json loads, with no tokenizer.
    assert!(ModelDir::open(&fixtures().join("tiny-llama"))
        .unwrap()
        .tokenizer
        .is_none());
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("tokenizer.json"), "{}").unwrap();
    let msg = Tokenizer::from_dir(bad.path()).unwrap_err().to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("cannot load"),
        "{msg}"
    );
}

/// The model shipped for the README's `warpforge generate` (`scripts/train-tiny-model.py`):
/// loads with its tokenizer, and the reference reproduces transformers' greedy completions
/// (`completions.json`) token for token and text for text.
#[test]
fn shipped_tiny_model_completes_as_transformers_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama");
    let model_dir = ModelDir::open(&dir).unwrap();
    let tok = model_dir
        .tokenizer
        .as_ref()
        .expect("models/tiny-llama has tokenizer.json");
    let model = HostModel::from_weights(&model_dir.config, &model_dir.weights).unwrap();
    let prompts: Vec<Value> = std::fs::read_to_string(dir.join("prompts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = read_json(&dir.join("completions.json"));
    for (prompt, want) in prompts.iter().zip(expected.as_array().unwrap()) {
        let prompt_ids = match prompt["prompt"].as_str() {
            Some(text) => tok.encode(text, true).unwrap(),
            None => ids(&prompt["prompt_ids"]),
        };
        assert_eq!(prompt_ids, ids(&want["prompt_ids"]), "{}", want["id"]);
        let new_tokens = want["token_ids"].as_array().unwrap().len();
        let got = model.greedy(&prompt_ids, new_tokens, &[]).unwrap();
        assert_eq!(got, ids(&want["token_ids"]), "{}", want["id"]);
        let text = tok.decode(&got, true).unwrap();
        println!("{} -> {text:?}", want["id"]);
        assert_eq!(text, want["text"].as_str().unwrap());
    }
}
