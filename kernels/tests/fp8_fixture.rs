//! The FP8 conversions and kernels against PyTorch (the outside oracle): the fixture
//! `fixtures/fp8/fp8_torch.txt`, made by `fixtures/fp8/make_fixture.py` (its docstring
//! describes the format and torch's cast semantics). Everything runs on the interpreter and
//! compares bit for bit.

use std::collections::HashMap;

use warpforge_dsl::convert::{Fp8Format, E4M3, E5M2};
use warpforge_dsl::prelude::*;
use warpforge_kernels::fp8::reference::{self, Granularity, Quantized};
use warpforge_kernels::fp8::{host, Fp8Float, Fp8Type};

const FIXTURE: &str = include_str!("fixtures/fp8/fp8_torch.txt");

/// One parsed record of the fixture.
enum Record {
    F32(Vec<f32>),
    U8(Vec<u8>),
    Int(Vec<usize>),
}

struct Fixture(HashMap<String, Record>);

impl Fixture {
    fn load() -> Fixture {
        let mut records = HashMap::new();
        for (n, line) in FIXTURE.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            let bad = |v: &str| format!("fixture line {}: bad value `{v}`", n + 1);
            let record = match kind {
                "f32" => Record::F32(
                    parts
                        .map(|v| {
                            f32::from_bits(
                                u32::from_str_radix(v, 16).unwrap_or_else(|_| panic!("{}", bad(v))),
                            )
                        })
                        .collect(),
                ),
                "u8" => {
                    let hex = parts.next().unwrap_or("");
                    Record::U8(
                        (0..hex.len() / 2)
                            .map(|i| {
                                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                                    .unwrap_or_else(|_| panic!("{}", bad(hex)))
                            })
                            .collect(),
                    )
                }
                "int" => Record::Int(
                    parts
                        .map(|v| v.parse().unwrap_or_else(|_| panic!("{}", bad(v))))
                        .collect(),
                ),
                other => panic!("fixture line {}: unknown kind `{other}`", n + 1),
            };
            records.insert(name.to_string(), record);
        }
        Fixture(records)
    }

    fn f32s(&self, name: &str) -> &[f32] {
        match self.0.get(name) {
            Some(Record::F32(v)) => v,
            _ => panic!("fixture has no f32 record `{name}`"),
        }
    }

    fn codes(&self, name: &str) -> &[u8] {
        match self.0.get(name) {
            Some(Record::U8(v)) => v,
            _ => panic!("fixture has no u8 record `{name}`"),
        }
    }

    fn shape(&self, name: &str) -> &[usize] {
        match self.0.get(name) {
            Some(Record::Int(v)) => v,
            _ => panic!("fixture has no int record `{name}`"),
        }
    }

    fn quantized(&self, prefix: &str) -> Quantized {
        Quantized {
            codes: self.codes(&format!("{prefix}.codes")).to_vec(),
            scales: self.f32s(&format!("{prefix}.scales")).to_vec(),
        }
    }
}

fn is_nan_code(code: u8, fmt: Fp8Format) -> bool {
    fmt.decode(code).is_nan()
}

/// Same code, or both NaN with the same sign (payloads may differ; see the fixture doc).
fn same_code(got: u8, want: u8, fmt: Fp8Format) -> bool {
    got == want || (is_nan_code(got, fmt) && is_nan_code(want, fmt) && got >> 7 == want >> 7)
}

fn assert_codes(what: &str, x: &[f32], got: &[u8], want: &[u8], fmt: Fp8Format) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<String> = (0..got.len())
        .filter(|&i| !same_code(got[i], want[i], fmt))
        .take(5)
        .map(|i| {
            format!(
                "[{i}] x={:e}: got {:#04x}, want {:#04x}",
                x[i], got[i], want[i]
            )
        })
        .collect();
    assert!(bad.is_empty(), "{what}: codes differ: {}", bad.join("; "));
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: [{i}] got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

const FORMATS: [(&str, Fp8Format); 2] = [("e4m3", E4M3), ("e5m2", E5M2)];

#[test]
fn host_conversions_match_torch_clamped_casts() {
    let f = Fixture::load();
    let x = f.f32s("cast.x");
    assert!(
        x.len() > 3000,
        "the fixture covers every code's neighbourhood"
    );
    for (name, fmt) in FORMATS {
        let ours: Vec<u8> = x.iter().map(|&v| fmt.encode(v)).collect();
        assert_codes(
            name,
            x,
            &ours,
            f.codes(&format!("cast.{name}.clamped")),
            fmt,
        );
    }
}

/// Documents torch's own semantics: E4M3 saturates like ours; E5M2 overflows to ±Inf for
/// |x| >= 61440 (the midpoint above 57344) and for ±Inf, and nowhere else differs.
#[test]
fn torch_raw_casts_differ_from_satfinite_only_by_e5m2_overflow() {
    let f = Fixture::load();
    let x = f.f32s("cast.x");
    for (name, fmt) in FORMATS {
        let raw = f.codes(&format!("cast.{name}.raw"));
        let mut overflowed = 0;
        for (i, &v) in x.iter().enumerate() {
            let ours = fmt.encode(v);
            if same_code(raw[i], ours, fmt) {
                continue;
            }
            assert!(
                name == "e5m2" && v.abs() >= 61440.0 && raw[i] & 0x7f == 0x7c,
                "{name}: torch gives {:#04x} for {v:e}, we give {ours:#04x}",
                raw[i]
            );
            assert_eq!(ours & 0x7f, 0x7b, "{v:e} saturates to ±57344");
            overflowed += 1;
        }
        if name == "e5m2" {
            assert!(
                overflowed >= 4,
                "the fixture has E5M2 overflows ({overflowed})"
            );
        }
    }
}

/// The `float8` crate's `from_f32` is satfinite too (a port of CUDA's conversion): it agrees
/// with ours on every fixture input, NaN payloads included.
#[test]
fn float8_crate_agrees_with_the_dsl_conversions() {
    let f = Fixture::load();
    for &v in f.f32s("cast.x") {
        let (a, b) = (F8E4M3::from_f32(v).to_bits(), E4M3.encode(v));
        assert!(
            same_code(a, b, E4M3),
            "e4m3 {v:e}: float8 {a:#04x}, ours {b:#04x}"
        );
        let (a, b) = (F8E5M2::from_f32(v).to_bits(), E5M2.encode(v));
        assert!(
            same_code(a, b, E5M2),
            "e5m2 {v:e}: float8 {a:#04x}, ours {b:#04x}"
        );
    }
    for code in 0..=255u8 {
        let (a, b) = (F8E4M3::from_bits(code).to_f32(), E4M3.decode(code));
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "e4m3 decode {code:#04x}"
        );
        let (a, b) = (F8E5M2::from_bits(code).to_f32(), E5M2.decode(code));
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "e5m2 decode {code:#04x}"
        );
    }
}

/// The kernels' cast on every fixture input: the delayed-scaling kernel with s = 1 is a
/// plain cast (x / 1 == x), and it also reduces the amax (NaN ignored, so +Inf here).
fn kernel_cast<F: Fp8Type>(f: &Fixture) {
    let x = f.f32s("cast.x");
    let config = (F::kernels::<f32>().quantize_delayed)()
        .space
        .default_config();
    let (codes, amax) = host::quantize_delayed::<F>(&Device::cpu(), &config, x, 1.0).unwrap();
    let want = f.codes(&format!("cast.{}.clamped", F::NAME));
    assert_codes(F::NAME, x, &codes, want, F::FORMAT);
    assert_eq!(amax, f32::INFINITY);
}

#[test]
fn kernel_casts_match_torch() {
    let f = Fixture::load();
    kernel_cast::<F8E4M3>(&f);
    kernel_cast::<F8E5M2>(&f);
}

/// The cast from a 16-bit input, checked against torch's codes on the fixture inputs that
/// `T` holds exactly (the fixture is f32-only and cannot be regenerated here; those inputs
/// are the same values, so torch's codes for them are the answer).
fn kernel_cast_from<T: Fp8Float, F: Fp8Type>(f: &Fixture) {
    let x = f.f32s("cast.x");
    let want = f.codes(&format!("cast.{}.clamped", F::NAME));
    let exact: Vec<usize> = (0..x.len())
        .filter(|&i| {
            let w = T::from_f32(x[i]).to_f32();
            w.to_bits() == x[i].to_bits() || (w.is_nan() && x[i].is_nan())
        })
        .collect();
    assert!(
        exact.len() > 500,
        "{}: {} exact inputs",
        T::NAME,
        exact.len()
    );
    let xt: Vec<T> = exact.iter().map(|&i| T::from_f32(x[i])).collect();
    let config = (F::kernels::<T>().quantize_delayed)()
        .space
        .default_config();
    let (codes, amax) = host::quantize_delayed::<F>(&Device::cpu(), &config, &xt, 1.0).unwrap();
    let xs: Vec<f32> = exact.iter().map(|&i| x[i]).collect();
    let want: Vec<u8> = exact.iter().map(|&i| want[i]).collect();
    let what = format!("{} -> {}", T::NAME, F::NAME);
    assert_codes(&what, &xs, &codes, &want, F::FORMAT);
    assert_eq!(amax, reference::amax(&xs), "{what} amax");
}

#[test]
fn kernel_casts_from_f16_and_bf16_match_torch_on_the_exact_inputs() {
    let f = Fixture::load();
    kernel_cast_from::<f16, F8E4M3>(&f);
    kernel_cast_from::<f16, F8E5M2>(&f);
    kernel_cast_from::<bf16, F8E4M3>(&f);
    kernel_cast_from::<bf16, F8E5M2>(&f);
}

/// Dequantization to `T` is torch's f32 dequantization rounded once to `T` (RNE, `half`).
fn dequantize_to_case<T: Fp8Float, F: Fp8Type>(f: &Fixture, device: &Device) {
    let n = f.f32s("tensor.x").len();
    let want = f.quantized(&format!("tensor.{}", F::NAME));
    let got = host::dequantize_to::<F, T>(device, &Config::new(), &want, 1, n, Granularity::Tensor)
        .unwrap();
    let expected: Vec<f32> = f
        .f32s(&format!("tensor.{}.deq", F::NAME))
        .iter()
        .map(|&y| T::from_f32(y).to_f32())
        .collect();
    let got: Vec<f32> = got.iter().map(|v| v.to_f32()).collect();
    assert_bits(
        &format!("tensor {} -> {} dequantize", F::NAME, T::NAME),
        &got,
        &expected,
    );
}

#[test]
fn dequantization_to_f16_and_bf16_rounds_torchs_f32_result_once() {
    let (f, device) = (Fixture::load(), Device::cpu());
    dequantize_to_case::<f16, F8E4M3>(&f, &device);
    dequantize_to_case::<f16, F8E5M2>(&f, &device);
    dequantize_to_case::<bf16, F8E4M3>(&f, &device);
    dequantize_to_case::<bf16, F8E5M2>(&f, &device);
}

fn check_quantized(what: &str, x: &[f32], got: &Quantized, want: &Quantized, fmt: Fp8Format) {
    // Codes are in the output's own layout; x is only used for messages where it lines up.
    let xs: Vec<f32> = if x.len() == got.codes.len() {
        x.to_vec()
    } else {
        vec![f32::NAN; got.codes.len()]
    };
    assert_codes(what, &xs, &got.codes, &want.codes, fmt);
    assert_bits(&format!("{what} scales"), &got.scales, &want.scales);
}

fn tensor_case<F: Fp8Type>(f: &Fixture, device: &Device) {
    let x = f.f32s("tensor.x");
    let want = f.quantized(&format!("tensor.{}", F::NAME));
    check_quantized(
        "reference",
        x,
        &reference::quantize_tensor(x, F::FORMAT),
        &want,
        F::FORMAT,
    );
    let def = (F::kernels::<f32>().quantize_tensor)();
    for config in def.space.configs() {
        let amax_config = Config::new();
        let got = host::quantize_tensor::<F>(device, &amax_config, &config, x).unwrap();
        check_quantized(&format!("{} {config}", def.name), x, &got, &want, F::FORMAT);
    }
    let deq = host::dequantize::<F>(
        device,
        &Config::new(),
        &want,
        1,
        x.len(),
        Granularity::Tensor,
    );
    assert_bits(
        "tensor dequantize",
        &deq.unwrap(),
        f.f32s(&format!("tensor.{}.deq", F::NAME)),
    );
}

#[test]
fn per_tensor_quantization_matches_torch() {
    let (f, device) = (Fixture::load(), Device::cpu());
    tensor_case::<F8E4M3>(&f, &device);
    tensor_case::<F8E5M2>(&f, &device);
}

fn rows_case<F: Fp8Type>(f: &Fixture, device: &Device, transposed: bool) {
    let name = if transposed { "rows_t" } else { "rows" };
    let (rows, cols) = (
        f.shape(&format!("{name}.shape"))[0],
        f.shape(&format!("{name}.shape"))[1],
    );
    let x = f.f32s(&format!("{name}.x"));
    for g in [16usize, 32, 64, 128] {
        let prefix = format!("{name}.g{g}.{}", F::NAME);
        let want = f.quantized(&prefix);
        let config = Config::new().with("G", g as i64);
        let (got, reference) = if transposed {
            (
                host::quantize_rows_t::<F>(device, &config, x, rows, cols).unwrap(),
                reference::quantize_rows_t(x, rows, cols, g, F::FORMAT),
            )
        } else {
            (
                host::quantize_rows::<F>(device, &config, x, rows, cols).unwrap(),
                reference::quantize_rows(x, rows, cols, g, F::FORMAT),
            )
        };
        check_quantized(
            &format!("{prefix} reference"),
            x,
            &reference,
            &want,
            F::FORMAT,
        );
        check_quantized(&format!("{prefix} kernel"), x, &got, &want, F::FORMAT);
        let (qr, qc) = if transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let granularity = Granularity::Rows { g: g as u32 };
        let deq = host::dequantize::<F>(device, &Config::new(), &want, qr, qc, granularity);
        assert_bits(
            &format!("{prefix} dequantize"),
            &deq.unwrap(),
            f.f32s(&format!("{prefix}.deq")),
        );
    }
}

#[test]
fn row_group_quantization_matches_torch() {
    let (f, device) = (Fixture::load(), Device::cpu());
    rows_case::<F8E4M3>(&f, &device, false);
    rows_case::<F8E5M2>(&f, &device, false);
}

#[test]
fn transposed_row_group_quantization_matches_torch() {
    let (f, device) = (Fixture::load(), Device::cpu());
    rows_case::<F8E4M3>(&f, &device, true);
    rows_case::<F8E5M2>(&f, &device, true);
}

fn blocks_case<F: Fp8Type>(f: &Fixture, device: &Device) {
    let (rows, cols) = (f.shape("blocks.shape")[0], f.shape("blocks.shape")[1]);
    let x = f.f32s("blocks.x");
    let want = f.quantized(&format!("blocks.{}", F::NAME));
    let reference = reference::quantize_blocks(x, rows, cols, F::FORMAT);
    check_quantized("blocks reference", x, &reference, &want, F::FORMAT);
    let got = host::quantize_blocks::<F>(device, &Config::new(), x, rows, cols).unwrap();
    check_quantized("blocks kernel", x, &got, &want, F::FORMAT);
    let deq = host::dequantize::<F>(
        device,
        &Config::new(),
        &want,
        rows,
        cols,
        Granularity::Blocks,
    );
    let expected = reference::dequantize(&want, rows, cols, Granularity::Blocks, F::FORMAT);
    assert_bits("blocks dequantize", &deq.unwrap(), &expected);
}

#[test]
fn tile_quantization_matches_torch() {
    let (f, device) = (Fixture::load(), Device::cpu());
    blocks_case::<F8E4M3>(&f, &device);
    blocks_case::<F8E5M2>(&f, &device);
}
