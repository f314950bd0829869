//! T4 for GPTQ/AWQ checkpoint import (`kernels/src/int4/import.rs`): checkpoints in
//! `tests/fixtures/int4/`, written by an independent packer from the formats' specs
//! (`make_fixtures.py`, beside them, with the dequantized weights it expects), must import
//! to exactly those weights; malformed tensors and configs are errors naming the tensor.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use warpforge::kernels::int4::import::{
    import_layer, Checkpoint, CheckpointFormat, Dtype, ImportError, QuantMethod,
    QuantizationConfig, TensorSource,
};
use warpforge::kernels::int4::GroupDim;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/int4")
        .join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Imports every layer of a fixture and compares it with the packer's expectation.
fn check_fixture(name: &str) {
    let ck = Checkpoint::open(fixture(name)).unwrap();
    let want = expected(name);
    let layers = want["layers"].as_object().unwrap();
    assert!(!layers.is_empty());
    for (prefix, layer) in layers {
        let got = ck
            .import(prefix)
            .unwrap_or_else(|e| panic!("{name}/{prefix}: {e}"));
        let w = &got.weight;
        assert_eq!(
            (w.k, w.n),
            (
                layer["k"].as_u64().unwrap() as usize,
                layer["n"].as_u64().unwrap() as usize
            )
        );
        assert_eq!(w.dim, GroupDim::Oc);
        assert_eq!(
            format!("{:?}", got.format),
            layer["format"].as_str().unwrap(),
            "{name}/{prefix}"
        );
        assert_eq!(
            w.g_idx.is_some(),
            layer["act_order"].as_bool().unwrap(),
            "{name}/{prefix}: g_idx"
        );
        let (d, e) = (w.dequantize(), floats(&layer["weight"]));
        assert_eq!(d.len(), e.len());
        if let Some(i) = (0..d.len()).find(|&i| d[i] != e[i]) {
            panic!(
                "{name}/{prefix}: W[{}, {}] = {}, the packer expects {}",
                i / w.n,
                i % w.n,
                d[i],
                e[i]
            );
        }
        match layer["bias"].is_null() {
            true => assert_eq!(got.bias, None),
            false => assert_eq!(got.bias.as_deref(), Some(&floats(&layer["bias"])[..])),
        }
    }
}

#[test]
fn gptq_v1_asymmetric_from_quantize_config() {
    check_fixture("gptq-v1");
    let cfg = Checkpoint::open(fixture("gptq-v1"))
        .unwrap()
        .quantization_config()
        .unwrap();
    assert_eq!(
        (cfg.method, cfg.format, cfg.sym, cfg.group_size),
        (QuantMethod::Gptq, CheckpointFormat::GptqV1, false, Some(16))
    );
}

#[test]
fn gptq_v1_symmetric() {
    check_fixture("gptq-v1-sym");
}

#[test]
fn gptq_v2_with_act_order() {
    check_fixture("gptq-v2-actorder");
}

#[test]
fn gptq_claimed_v1_holding_v2_zeros_per_channel() {
    check_fixture("gptq-v2-claimed-v1");
    let w = Checkpoint::open(fixture("gptq-v2-claimed-v1"))
        .unwrap()
        .import("model.layers.0.mlp.down_proj")
        .unwrap()
        .weight;
    assert_eq!((w.group, w.groups()), (w.k, 1));
}

#[test]
fn awq_sharded() {
    check_fixture("awq");
}

const PREFIX: &str = "model.layers.0.mlp.down_proj";

type Tensors = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// A fixture's tensors in memory, to break.
fn tensors(name: &str) -> (Tensors, QuantizationConfig) {
    let ck = Checkpoint::open(fixture(name)).unwrap();
    let mut map = Tensors::new();
    for suffix in ["qweight", "qzeros", "scales", "g_idx", "bias"] {
        let tensor = format!("{PREFIX}.{suffix}");
        if let Some(raw) = ck.tensor(&tensor) {
            map.insert(tensor, (raw.dtype, raw.shape.clone(), raw.data.to_vec()));
        }
    }
    (map, ck.quantization_config().unwrap())
}

fn import_err(map: &Tensors, cfg: &QuantizationConfig) -> String {
    let err: ImportError = import_layer(map, PREFIX, cfg).unwrap_err();
    err.to_string()
}

#[test]
fn bad_tensors_are_named() {
    let (good, cfg) = tensors("gptq-v2-actorder");
    import_layer(&good, PREFIX, &cfg).unwrap();
    let name = |s: &str| format!("{PREFIX}.{s}");

    let mut map = good.clone();
    map.remove(&name("qzeros"));
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!("`{}` is missing", name("qzeros"))),
        "{msg}"
    );

    let mut map = good.clone();
    let (_, shape, data) = map.remove(&name("scales")).unwrap();
    let as_f32: Vec<u8> = data.chunks(2).flat_map(|_| 0.5f32.to_le_bytes()).collect();
    map.insert(name("scales"), (Dtype::F32, shape, as_f32));
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!("`{}` has dtype F32", name("scales")))
            && msg.contains("expected F16"),
        "{msg}"
    );

    let mut map = good.clone();
    let (dtype, _, data) = map.remove(&name("scales")).unwrap();
    map.insert(name("scales"), (dtype, vec![2, 32], data));
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!(
            "`{}` (F16) has shape [2, 32], expected [4, 16]",
            name("scales")
        )),
        "{msg}"
    );

    let mut map = good.clone();
    map.get_mut(&name("g_idx")).unwrap().2[..4].copy_from_slice(&9i32.to_le_bytes());
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!("`{}`: g_idx[0] = 9", name("g_idx"))),
        "{msg}"
    );

    let mut map = good.clone();
    let (dtype, _, data) = map.remove(&name("qweight")).unwrap();
    map.insert(name("qweight"), (dtype, vec![64], data));
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!("`{}` (I32) has shape [64]", name("qweight"))),
        "{msg}"
    );
}

#[test]
fn v1_overflowed_zeros_are_an_error() {
    let (mut map, cfg) = tensors("gptq-v1");
    map.get_mut(&format!("{PREFIX}.qzeros")).unwrap().2[0] = 0x0F;
    let msg = import_err(&map, &cfg);
    assert!(
        msg.contains(&format!("`{PREFIX}.qzeros`")) && msg.contains("true zero of 16"),
        "{msg}"
    );
}

#[test]
fn configs_are_checked() {
    let parse = |v: Value| QuantizationConfig::from_json(&v).map_err(|e| e.to_string());
    let gptq = json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": true, "checkpoint_format": "gptq_v2"});
    let cfg = parse(gptq).unwrap();
    assert_eq!(
        (cfg.group_size, cfg.desc_act, cfg.format),
        (Some(128), true, CheckpointFormat::GptqV2)
    );
    let awq = parse(json!({"zero_point": true, "q_group_size": 64, "w_bit": 4, "version": "GEMM"}))
        .unwrap();
    assert_eq!(
        (awq.method, awq.group_size, awq.sym),
        (QuantMethod::Awq, Some(64), false)
    );

    let err = parse(json!({"quant_method": "gptq", "bits": 8, "group_size": 128})).unwrap_err();
    assert!(err.contains("bits = 8: only 4-bit"), "{err}");
    let err = parse(json!({"quant_method": "hqq", "bits": 4, "group_size": 64})).unwrap_err();
    assert!(
        err.contains("quant_method \"hqq\" is not supported"),
        "{err}"
    );
    let err = parse(json!({"quant_method": "gptq", "bits": 4, "group_size": 0})).unwrap_err();
    assert!(err.contains("group_size = 0"), "{err}");
    let err = parse(json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"})).unwrap_err();
    assert!(err.contains("checkpoint_format \"marlin\""), "{err}");
    let err =
        parse(json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}))
            .unwrap_err();
    assert!(err.contains("AWQ version \"gemv\""), "{err}");
    let err = parse(json!({"quant_method": "gptq", "group_size": 128})).unwrap_err();
    assert!(err.contains("`bits` is missing"), "{err}");
}

#[test]
fn missing_checkpoints_and_configs_say_what_was_expected() {
    let dir = std::env::temp_dir().join(format!("warpforge-int4-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(err.contains("0 *.safetensors files"), "{err}");
    let err = QuantizationConfig::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("no quantization config"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
