//! `warpforge quantize` and the int4 model loader (`runtime/src/model/int4.rs`): the shipped
//! tiny model (bf16, hidden 128, 3 layers) quantized with RTN and GPTQ in group 32 loads back
//! through `ModelDir`/`HostModel`, stays close to the float model, and GPTQ's per-layer
//! output error is at most RTN's; GPTQ/AWQ checkpoints import through the same loader.
//!
//! Tolerance for logits (int4 vs the bf16 model, on the shipped prompts): the relative RMS
//! error `‖Δlogits‖ / ‖logits‖` over all positions must be below 0.15 and greedy's next
//! token must agree on at least 2/3 of the prompts. Measured (calibration: 8 windows of 64
//! tokens of corpus.txt, the shipped model trained by `warpforge train`): RTN/oc g32 0.031,
//! GPTQ/oc g32 0.025, RTN/ic g16 0.034, GPTQ/auto g16 0.021, the next token agreeing on 6 to
//! 7 of the 7 prompts; zero points read one step off give 0.81, so the bound catches a
//! loader error.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use warpforge_kernels::int4::import::Checkpoint;
use warpforge_kernels::int4::GroupDim;
use warpforge_runtime::cli::quantize::{quantize, DimArg, MethodArg, QuantizeArgs, Summary};
use warpforge_runtime::model::int4::{self, Int4Config, LinearWeight, WarpforgeInt4};
use warpforge_runtime::model::{HostModel, ModelDir, ModelWeights};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama")
}

fn args(out: &Path, method: MethodArg, dim: DimArg, group: usize) -> QuantizeArgs {
    QuantizeArgs {
        model: tiny(),
        out: out.to_path_buf(),
        bits: 4,
        group,
        dim,
        method,
        calibration: Some(tiny().join("corpus.txt")),
        nsamples: 8,
        seq_len: 64,
        sym: false,
        force: false,
    }
}

fn run(out: &Path, method: MethodArg, dim: DimArg, group: usize) -> Summary {
    let mut lines = Vec::new();
    let summary = quantize(&args(out, method, dim, group), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap_or_else(|e| panic!("{method:?}/{dim:?}: {e:#}"));
    // A progress line per linear: 7 per layer, 3 layers.
    assert_eq!(lines.len(), 21, "{lines:?}");
    summary
}

/// Prompt token ids of the shipped prompts.
fn prompts(model: &ModelDir) -> Vec<Vec<u32>> {
    let tok = model.tokenizer.as_ref().expect("tokenizer.json");
    std::fs::read_to_string(tiny().join("prompts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            match v["prompt"].as_str() {
                Some(text) => tok.encode(text, true).unwrap(),
                None => v["prompt_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
            }
        })
        .collect()
}

/// Relative RMS logit error of `quantized` against `float` over all prompt positions, and
/// the number of prompts whose greedy next token agrees.
fn compare(float: &HostModel, quantized: &HostModel, prompts: &[Vec<u32>]) -> (f64, usize) {
    let (mut diff, mut norm, mut agree) = (0f64, 0f64, 0);
    for p in prompts {
        let (a, b) = (
            float.prompt_logits(p).unwrap(),
            quantized.prompt_logits(p).unwrap(),
        );
        for (x, y) in a.values.iter().zip(&b.values) {
            diff += ((x - y) as f64).powi(2);
            norm += (*x as f64).powi(2);
        }
        let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
        agree += usize::from(argmax(a.last()) == argmax(b.last()));
    }
    ((diff / norm).sqrt(), agree)
}

#[test]
fn rtn_and_gptq_models_load_back_close_to_the_float_model() {
    let tmp = tempfile::tempdir().unwrap();
    let float_dir = ModelDir::open(&tiny()).unwrap();
    let float = HostModel::from_weights(&float_dir.config, &float_dir.weights).unwrap();
    let prompts = prompts(&float_dir);
    let mut reports = Vec::new();
    // k/v_proj have 48 outputs: groups along output channels (ic, auto) need 16.
    for (method, dim, group) in [
        (MethodArg::Rtn, DimArg::Oc, 32),
        (MethodArg::Gptq, DimArg::Oc, 32),
        (MethodArg::Rtn, DimArg::Ic, 16),
        (MethodArg::Gptq, DimArg::Auto, 16),
    ] {
        let out = tmp.path().join(format!("{method:?}-{dim:?}"));
        let summary = run(&out, method, dim, group);
        let model = ModelDir::open(&out).unwrap();
        let Some(Int4Config::Warpforge(q)) = &model.quant else {
            panic!("{out:?} is not read as warpforge int4: {:?}", model.quant)
        };
        assert_eq!(q.group, group);
        assert!(model.tokenizer.is_some(), "tokenizer.json copied");
        // Every decoder linear is int4 with the dim the report names; the head is not.
        for layer in &summary.layers {
            let w = int4::linear(
                &model.weights,
                model.quant.as_ref(),
                &layer.name,
                layer.out,
                layer.in_,
            )
            .unwrap();
            let LinearWeight::Int4(w) = w else {
                panic!("{} is not int4", layer.name)
            };
            assert_eq!(w.dim, layer.dim, "{}", layer.name);
            assert_eq!(Some(w.dim), q.dim_of(&layer.name));
        }
        assert!(model.weights.get("model.embed_tokens.weight").is_some());
        let quantized = HostModel::load(&out).unwrap();
        let (error, agree) = compare(&float, &quantized, &prompts);
        println!(
            "{method:?}/{dim:?}: {} → {} bytes in {:.2} s, logits rel. RMS error {error:.4}, \
             greedy first token agrees on {agree}/{}",
            summary.bytes_before,
            summary.bytes_after,
            summary.seconds,
            prompts.len()
        );
        for l in &summary.layers {
            println!(
                "  {:<34} {} out {:.3e} weight {:.3e}",
                l.name,
                int4::dim_name(l.dim),
                l.output_error.unwrap(),
                l.weight_error
            );
        }
        assert!(error < 0.15, "{method:?}/{dim:?}: logits error {error}");
        assert!(
            agree * 3 >= prompts.len() * 2,
            "{method:?}/{dim:?}: {agree}"
        );
        assert!(summary.bytes_after < summary.bytes_before);
        reports.push(((method, dim), summary));
    }
    // GPTQ's output error per layer is at most RTN's (same groups, same calibration).
    let (rtn, gptq) = (&reports[0].1, &reports[1].1);
    for (r, g) in rtn.layers.iter().zip(&gptq.layers) {
        let (re, ge) = (r.output_error.unwrap(), g.output_error.unwrap());
        assert!(ge <= re, "{}: GPTQ {ge:.3e} > RTN {re:.3e}", r.name);
    }
    // AdaDim chose per layer and recorded it.
    let auto = &reports[3].1;
    let dims: Vec<GroupDim> = auto.layers.iter().map(|l| l.dim).collect();
    println!("auto dims: {dims:?}");

    // The same int4 weights repacked as a GPTQ v2 checkpoint load through `ModelDir` and
    // the importer to the very same model.
    let rtn_dir = tmp.path().join("Rtn-Oc");
    let gptq_dir = tmp.path().join("as-gptq");
    write_as_gptq(&rtn_dir, &gptq_dir);
    let model = ModelDir::open(&gptq_dir).unwrap();
    assert!(matches!(model.quant, Some(Int4Config::Imported(_))));
    let (ours, theirs) = (
        HostModel::load(&rtn_dir).unwrap(),
        HostModel::load(&gptq_dir).unwrap(),
    );
    for p in &prompts {
        assert_eq!(
            ours.prompt_logits(p).unwrap(),
            theirs.prompt_logits(p).unwrap()
        );
    }

    // The tolerance catches a loader error: zero points read one step off.
    shift_zeros(&rtn_dir.join("model.safetensors"));
    let (error, _) = compare(&float, &HostModel::load(&rtn_dir).unwrap(), &prompts);
    println!("zeros one step off: logits rel. RMS error {error:.4}");
    assert!(error > 0.15, "a shifted zero point gives {error}");
}

/// Writes the warpforge int4 (oc, asymmetric) model `from` as a GPTQ v2 checkpoint, packed
/// as `kernels/src/int4/import.rs` documents the format (written here independently).
fn write_as_gptq(from: &Path, to: &Path) {
    let model = ModelDir::open(from).unwrap();
    let quant = model.quant.as_ref().unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let words = |w: Vec<u32>| -> Vec<u8> { w.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mut packed = std::collections::HashSet::new();
    for l in 0..model.config.num_hidden_layers {
        for proj in int4::DECODER_LINEARS {
            let name = format!("model.layers.{l}.{proj}");
            let (out, in_) = int4::linear_shape(&model.config, proj).unwrap();
            let LinearWeight::Int4(w) =
                int4::linear(&model.weights, Some(quant), &name, out, in_).unwrap()
            else {
                panic!("{name} is not int4")
            };
            assert_eq!(w.dim, GroupDim::Oc);
            let (k, n, groups) = (w.k, w.n, w.groups());
            // qweight [k/8, n]: input channel 8r + j of output o in bits 4j of word (r, o).
            let mut qweight = vec![0u32; k / 8 * n];
            for i in 0..k {
                for o in 0..n {
                    qweight[i / 8 * n + o] |= (w.codes[i * n + o] as u32) << (4 * (i % 8));
                }
            }
            // qzeros [groups, n/8]: output 8c + j in bits 4j of word (g, c); v2 = true zeros.
            let mut qzeros = vec![0u32; groups * n / 8];
            for g in 0..groups {
                for o in 0..n {
                    qzeros[g * n / 8 + o / 8] |= (w.zeros[g * n + o] as u32) << (4 * (o % 8));
                }
            }
            let scales = w
                .scales
                .iter()
                .flat_map(|&s| half::f16::from_f32(s).to_le_bytes())
                .collect();
            use safetensors::Dtype::{F16, I32};
            tensors.push((
                format!("{name}.qweight"),
                I32,
                vec![k / 8, n],
                words(qweight),
            ));
            tensors.push((
                format!("{name}.qzeros"),
                I32,
                vec![groups, n / 8],
                words(qzeros),
            ));
            tensors.push((format!("{name}.scales"), F16, vec![groups, n], scales));
            packed.insert(name);
        }
    }
    for name in model.weights.names() {
        let prefix = name.rsplit_once('.').unwrap().0;
        if !packed.contains(prefix) {
            let (dtype, shape, bytes) = model.weights.raw(name).unwrap();
            tensors.push((name.to_string(), dtype, shape.to_vec(), bytes.to_vec()));
        }
    }
    std::fs::create_dir(to).unwrap();
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.as_str(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &to.join("model.safetensors")).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("config.json")).unwrap()).unwrap();
    config["quantization_config"] = serde_json::json!({
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": false,
        "desc_act": false, "checkpoint_format": "gptq_v2"
    });
    std::fs::write(to.join("config.json"), config.to_string()).unwrap();
}

/// Rewrites a warpforge int4 file with every zero point one step higher (15 stays).
fn shift_zeros(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let mut data = t.data().to_vec();
            if name.ends_with(".qzeros") {
                data.iter_mut().for_each(|z| *z = (*z + 1).min(15));
            }
            (name, t.dtype(), t.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.as_str(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn bad_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q");
    let err = |a: QuantizeArgs| format!("{:#}", quantize(&a, &mut |_| {}).unwrap_err());
    // Groups along the output features: k_proj's 64 outputs are not a multiple of 128.
    let msg = err(args(&out, MethodArg::Rtn, DimArg::Ic, 128));
    assert!(
        msg.contains("--group 128 does not divide")
            && msg.contains("out_features = 64")
            && msg.contains("with this --dim: 16, 32, 64"),
        "{msg}"
    );
    let msg = err(args(&out, MethodArg::Rtn, DimArg::Oc, 24));
    assert!(msg.contains("power of two"), "{msg}");
    let mut a = args(&out, MethodArg::Rtn, DimArg::Oc, 32);
    a.bits = 8;
    assert!(err(a).contains("only 4-bit"));
    // An existing --out is kept unless --force.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "x").unwrap();
    let msg = err(args(&out, MethodArg::Rtn, DimArg::Oc, 32));
    assert!(msg.contains("exists; pass --force"), "{msg}");
    assert!(out.join("keep").exists());
    // GPTQ without calibration, on a model directory without prompts.jsonl.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny().join(f), bare.join(f)).unwrap();
    }
    let mut a = args(&tmp.path().join("q2"), MethodArg::Gptq, DimArg::Oc, 32);
    a.model = bare;
    a.calibration = None;
    let msg = err(a);
    assert!(msg.contains("need calibration text"), "{msg}");
    assert!(!tmp.path().join("q2").exists());
}

/// The command line: --force replaces, progress goes to stderr, the summary to stdout.
#[test]
fn cli_quantizes_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q");
    std::fs::create_dir(&out).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .args(["quantize", "--model"])
        .arg(tiny())
        .arg("--out")
        .arg(&out)
        .args(["--group", "32", "--dim", "oc", "--method", "rtn", "--force"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("layer 3/3: mlp.down_proj"), "{stderr}");
    assert!(stdout.contains("quantized 21 linears"), "{stdout}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let q = WarpforgeInt4::from_json(&config["quantization_config"]).unwrap();
    assert_eq!(q.group, 32);
    assert!(out.join("quantize-report.json").exists());
    let bad = Command::new(env!("CARGO_BIN_EXE_warpforge"))
        .args(["quantize", "--model"])
        .arg(tiny())
        .arg("--out")
        .arg(&out)
        .args(["--bits", "3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bits 3: only 4-bit"));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/int4")
        .join(name)
}

/// GPTQ (v1, v2 with act-order) and AWQ (sharded) checkpoints load through `int4::linear`
/// over the memory-mapped `ModelWeights` exactly as the kernels' importer reads them.
#[test]
fn gptq_and_awq_checkpoints_load_through_the_int4_loader() {
    for name in [
        "gptq-v1",
        "gptq-v1-sym",
        "gptq-v2-actorder",
        "gptq-v2-claimed-v1",
        "awq",
    ] {
        let dir = fixture(name);
        let quant = Int4Config::from_dir(&dir).unwrap();
        assert!(
            matches!(quant, Some(Int4Config::Imported(_))),
            "{name}: {quant:?}"
        );
        let weights = ModelWeights::open_quantized(&dir).unwrap();
        let ck = Checkpoint::open(&dir).unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        for (prefix, layer) in expected["layers"].as_object().unwrap() {
            let (k, n) = (
                layer["k"].as_u64().unwrap() as usize,
                layer["n"].as_u64().unwrap() as usize,
            );
            let got = int4::linear(&weights, quant.as_ref(), prefix, n, k).unwrap();
            let LinearWeight::Int4(w) = &got else {
                panic!("{name}/{prefix} is not int4")
            };
            assert_eq!(w, &ck.import(prefix).unwrap().weight, "{name}/{prefix}");
            // The dequantized weight is the packer's (`[k, n]`), and `to_f32` its transpose.
            let want: Vec<f32> = layer["weight"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(w.dequantize(), want, "{name}/{prefix}");
            assert_eq!(got.to_f32(), w.dequantize_nk());
            // A caller expecting another shape gets an error naming the linear.
            let msg = int4::linear(&weights, quant.as_ref(), prefix, n + 8, k)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(prefix.as_str()) && msg.contains("expects"),
                "{msg}"
            );
        }
        let msg = int4::linear(&weights, quant.as_ref(), "model.layers.9.mlp.up_proj", 8, 8)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("model.layers.9.mlp.up_proj") && msg.contains("neither"),
            "{msg}"
        );
    }
}
