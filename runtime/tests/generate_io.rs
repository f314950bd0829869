//! The I/O around `warpforge generate`: request parsing, output and logits files, summary and
//! progress (runtime/src/cli/generate_io/).

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warpforge_runtime::cli::generate_io::*;
use warpforge_runtime::engine::sampling::SamplingParams;

const VOCAB: usize = 100;
const CONTEXT: usize = 16;

/// A toy tokenizer: one token per byte, `byte % VOCAB`; "!" fails to tokenize and "~" maps
/// to an id outside the vocabulary.
fn tokenize(text: &str) -> Result<Vec<u32>, String> {
    if text.contains('!') {
        return Err("the toy tokenizer refuses '!'".into());
    }
    Ok(text
        .bytes()
        .map(|b| {
            if b == b'~' {
                VOCAB as u32
            } else {
                b as u32 % VOCAB as u32
            }
        })
        .collect())
}

fn options<'a>(tok: Option<&'a Tokenize>) -> InputOptions<'a> {
    InputOptions {
        defaults: SamplingParams {
            max_tokens: 8,
            temperature: 0.5,
            seed: 1000,
            ..SamplingParams::default()
        },
        tokenize: tok,
        vocab: VOCAB,
        max_context: CONTEXT,
    }
}

fn parse(text: &str) -> Result<ParsedInput, InputError> {
    parse_input(text.as_bytes(), "requests.jsonl", &options(Some(&tokenize)))
}

#[test]
fn a_good_file_parses_with_defaults_merged_and_ids_echoed() {
    let b = json!({"id": 7, "prompt_ids": [1, 2, 3], "max_tokens": 3, "temperature": 0,
        "top_k": 5, "top_p": 0.9, "seed": 42, "stop_token_ids": [2], "repetition_penalty": 1.2});
    // Line 2 is empty, line 3 blanks, line 4 ends in CRLF, line 5 has no final newline.
    let text = format!(
        "{}\n\n   \n{b}\r\n{}",
        json!({"id": "a", "prompt": "hi"}),
        json!({"id": 1.5, "prompt_ids": [4], "top_k": null})
    );
    let input = parse(&text).unwrap();
    assert!(input.invalid.is_empty(), "{:?}", input.invalid);
    assert_eq!(input.total, 3);
    let [a, b, c] = &input.requests[..] else {
        panic!("three requests expected")
    };
    assert_eq!((a.index, a.line, &a.id), (0, 1, &json!("a")));
    assert_eq!(a.prompt, vec![b'h' as u32 % 100, b'i' as u32 % 100]);
    let defaults = options(None).defaults;
    assert_eq!(
        a.params,
        SamplingParams {
            seed: 1000,
            ..defaults.clone()
        }
    );
    assert_eq!((b.index, b.line, &b.id), (1, 4, &json!(7)));
    assert_eq!(b.prompt, vec![1, 2, 3]);
    assert_eq!(
        b.params,
        SamplingParams {
            max_tokens: 3,
            temperature: 0.0,
            top_k: 5,
            top_p: 0.9,
            repetition_penalty: 1.2,
            seed: 42,
            stop_token_ids: vec![2],
        }
    );
    // A number id is echoed as the same JSON number; a line without seed gets default + index.
    assert_eq!(serde_json::to_string(&c.id).unwrap(), "1.5");
    assert_eq!(c.params.seed, 1002);
    assert_eq!(c.params.top_k, 0, "null means: the default");
}

/// One file with every kind of bad line: each is reported with its line number and field,
/// all together, and the good lines still parse.
#[test]
fn every_bad_line_is_reported_with_its_line_and_field() {
    let long: Vec<u32> = vec![1; CONTEXT + 1];
    let lines = [
        json!({"id": "ok1", "prompt": "fine"}).to_string(), // 1
        "{\"id\": 1, \"prompt\": ".to_string(),             // 2 malformed
        "[1, 2]".to_string(),                               // 3 not an object
        json!({"id": 2, "prompt": "x", "temprature": 1.0}).to_string(), // 4 unknown field
        json!({"id": 3, "prompt": "x", "temperature": "hot"}).to_string(), // 5 wrong type
        json!({"id": 4, "prompt": ""}).to_string(),         // 6 empty prompt
        json!({"id": 5, "prompt_ids": []}).to_string(),     // 7 empty prompt_ids
        json!({"id": 6, "prompt": "x", "prompt_ids": [1]}).to_string(), // 8 both
        json!({"id": 7}).to_string(),                       // 9 neither
        json!({"id": 8, "prompt_ids": [1, 100]}).to_string(), // 10 id >= vocab
        json!({"id": 9, "prompt_ids": long}).to_string(),   // 11 longer than context
        json!({"prompt": "x"}).to_string(),                 // 12 missing id
        json!({"id": [1], "prompt": "x"}).to_string(),      // 13 id of a wrong type
        json!({"id": "ok1", "prompt": "x"}).to_string(),    // 14 duplicate id
        json!({"id": 10, "prompt": "x", "top_p": 1.5, "max_tokens": -1}).to_string(), // 15
        json!({"id": 11, "prompt": "x!"}).to_string(),      // 16 tokenizer error
        json!({"id": 12, "prompt": "~"}).to_string(),       // 17 tokenizer id >= vocab
        json!({"id": 13, "prompt": "x", "stop_token_ids": [3, 500]}).to_string(), // 18
        json!({"id": 14, "prompt": 5}).to_string(),         // 19 prompt not a string
        json!({"id": 15, "prompt_ids": [1, -2]}).to_string(), // 20 negative id
        json!({"id": "ok2", "prompt_ids": [1]}).to_string(), // 21
    ];
    let input = parse(&lines.join("\n")).unwrap();
    assert_eq!(input.total, 21);
    let ok: Vec<usize> = input.requests.iter().map(|r| r.line).collect();
    assert_eq!(ok, vec![1, 21]);
    let expect: &[(usize, Option<&str>, &str)] = &[
        (2, None, "not valid JSON"),
        (3, None, "a request is a JSON object, got an array"),
        (4, Some("temprature"), "unknown field"),
        (5, Some("temperature"), "must be a number"),
        (6, Some("prompt"), "empty"),
        (7, Some("prompt_ids"), "empty"),
        (8, None, "not both"),
        (9, None, "missing"),
        (
            10,
            Some("prompt_ids"),
            "token id 100 (position 1) is outside the vocabulary",
        ),
        (
            11,
            Some("prompt_ids"),
            "17 tokens, more than the model's context of 16",
        ),
        (12, Some("id"), "missing"),
        (13, Some("id"), "must be a string or a number, got an array"),
        (14, Some("id"), "already the id of line 1"),
        (15, Some("top_p"), "1.5 must be in (0, 1]"),
        (
            16,
            Some("prompt"),
            "cannot tokenize: the toy tokenizer refuses '!'",
        ),
        (
            17,
            Some("prompt"),
            "token id 100 (position 0) is outside the vocabulary",
        ),
        (18, Some("stop_token_ids"), "token id 500 (position 1)"),
        (19, Some("prompt"), "must be a string, got a number"),
        (20, Some("prompt_ids"), "element 1 (-2) is not a token id"),
    ];
    assert_eq!(input.invalid.len(), expect.len());
    for (e, &(line, field, text)) in input.invalid.iter().zip(expect) {
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.index, line - 1, "no blank lines: index = line - 1");
        let p = e
            .problems
            .iter()
            .find(|p| p.field.as_deref() == field && p.message.contains(text));
        assert!(
            p.is_some(),
            "line {line}: expected {field:?} ~ {text:?}, got {e}"
        );
    }
    // Line 15 has two bad fields: both are reported.
    let line15 = &input.invalid[13];
    let fields: Vec<_> = line15.problems.iter().map(|p| p.field.clone()).collect();
    assert_eq!(
        fields,
        vec![Some("max_tokens".into()), Some("top_p".into())]
    );
    // The id is kept for the error record when it was valid.
    assert_eq!(input.invalid[2].id, Some(json!(2)));
    assert_eq!(input.invalid[0].id, None);
    // Strict mode: one error naming every bad line.
    let msg = input.into_valid("requests.jsonl").unwrap_err().to_string();
    assert!(
        msg.starts_with("requests.jsonl: 19 of 21 requests are invalid"),
        "{msg}"
    );
    for (line, ..) in expect {
        assert!(
            msg.contains(&format!("\n  line {line}: ")),
            "line {line} missing in {msg}"
        );
    }
}

#[test]
fn text_prompts_need_a_tokenizer_and_bytes_must_be_utf8() {
    let text = "{\"id\": 1, \"prompt\": \"hello\"}\n{\"id\": 2, \"prompt_ids\": [5]}\n";
    let input = parse_input(text.as_bytes(), "f", &options(None)).unwrap();
    assert_eq!(input.requests.len(), 1);
    let e = &input.invalid[0];
    assert_eq!(
        (e.line, e.problems[0].field.as_deref()),
        (1, Some("prompt"))
    );
    assert!(e.problems[0].message.contains("tokenizer.json"), "{e}");

    let bytes = b"{\"id\": 1, \"prompt\": \"\xff\"}\n";
    let input = parse_input(&bytes[..], "f", &options(Some(&tokenize))).unwrap();
    assert!(input.invalid[0].to_string().contains("not UTF-8"));
}

#[test]
fn bad_defaults_and_empty_files_are_errors_of_their_own() {
    let mut opts = options(Some(&tokenize));
    opts.defaults.top_p = 0.0;
    let err = parse_input(&b"{\"id\":1,\"prompt\":\"x\"}"[..], "f", &opts).unwrap_err();
    assert!(matches!(err, InputError::Defaults(_)), "{err}");
    assert!(err.to_string().contains("top_p"));
    let err = parse("\n \n").unwrap_err();
    assert!(matches!(err, InputError::Empty(_)), "{err}");
    let missing = read_input(Path::new("/nonexistent/requests.jsonl"), &options(None));
    assert!(matches!(missing, Err(InputError::Read { .. })));
}

#[test]
fn read_requests_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, "{\"id\": \"x\", \"prompt_ids\": [1, 2]}\n").unwrap();
    let requests = read_requests(&path, &options(None)).unwrap();
    assert_eq!(requests[0].prompt, vec![1, 2]);
    std::fs::write(
        &path,
        "{\"id\": \"x\", \"prompt_ids\": [1, 2]}\n{\"id\": 3}\n",
    )
    .unwrap();
    let err = read_requests(&path, &options(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in.jsonl: 1 of 2 requests are invalid") && err.contains("line 2"));
}

fn completion(id: Value, tokens: &[u32], finish: Finish) -> OutputRecord {
    OutputRecord::Completion {
        id,
        token_ids: tokens.to_vec(),
        finish,
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn records_given_in_any_order_are_written_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let detok = |ids: &[u32]| -> Result<String, String> {
        Ok(ids.iter().map(|&t| char::from(b'a' + t as u8)).collect())
    };
    let bad_line = parse("{\"id\": \"b\", \"prompt\": \"\"}").unwrap().invalid[0].clone();
    let mut out = OutputWriter::create(&path, 4, Some(&detok)).unwrap();
    out.put(3, completion(json!(3), &[0, 1], Finish::Stop))
        .unwrap();
    out.put(1, OutputRecord::from_line_error(&bad_line))
        .unwrap();
    out.put(0, completion(json!("a"), &[2], Finish::Length))
        .unwrap();
    assert!(matches!(
        out.put(0, completion(json!("a"), &[2], Finish::Length)),
        Err(OutputError::Duplicate { index: 0 })
    ));
    assert!(matches!(
        out.put(4, completion(json!(9), &[], Finish::Stop)),
        Err(OutputError::IndexOutOfRange { .. })
    ));
    out.put(2, completion(json!(2.5), &[], Finish::Length))
        .unwrap();
    out.finish().unwrap();
    let lines = std::fs::read_to_string(&path).unwrap();
    let expected = [
        r#"{"id":"a","text":"c","token_ids":[2],"finish_reason":"length"}"#.to_string(),
        r#"{"id":"b","error":"line 1: field `prompt`: the prompt is empty"}"#.to_string(),
        r#"{"id":2.5,"text":"","token_ids":[],"finish_reason":"length"}"#.to_string(),
        r#"{"id":3,"text":"ab","token_ids":[0,1],"finish_reason":"stop"}"#.to_string(),
    ];
    assert_eq!(lines, expected.join("\n") + "\n");
}

#[test]
fn without_a_detokenizer_there_is_no_text_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut out = OutputWriter::create(&path, 1, None).unwrap();
    out.put(0, completion(json!("z"), &[5, 6], Finish::Stop))
        .unwrap();
    out.finish().unwrap();
    assert_eq!(
        read_lines(&path),
        vec![json!({"id": "z", "token_ids": [5, 6], "finish_reason": "stop"})]
    );
}

/// The destination appears only at `finish`; a writer dropped early (a crash, an error)
/// leaves the previous file untouched and no temporary file behind.
#[test]
fn the_output_is_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "previous run\n").unwrap();
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    {
        let mut out = OutputWriter::create(&path, 2, None).unwrap();
        out.put(0, completion(json!(0), &[1], Finish::Stop))
            .unwrap();
        assert_eq!(
            files().len(),
            2,
            "a temporary file beside the output: {:?}",
            files()
        );
        let err = out.finish().unwrap_err();
        assert!(
            matches!(
                err,
                OutputError::Missing {
                    first: 1,
                    missing: 1
                }
            ),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "previous run\n");
    assert_eq!(files(), vec!["out.jsonl".to_string()]);
    let mut out = OutputWriter::create(&path, 1, None).unwrap();
    out.put(0, completion(json!(0), &[1], Finish::Stop))
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "previous run\n");
    out.finish().unwrap();
    assert_eq!(read_lines(&path)[0]["token_ids"], json!([1]));
    assert_eq!(files(), vec!["out.jsonl".to_string()]);
}

/// Floats covering every exponent and subnormals, from a fixed-seed generator.
fn awkward_floats(n: usize) -> Vec<f32> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut floats: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f32::from_bits((state >> 32) as u32)
        })
        .filter(|x| x.is_finite())
        .collect();
    floats.extend([
        0.0,
        -0.0,
        1.0,
        0.1,
        -1e-7,
        1e16,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::EPSILON,
        16_777_217.0,
    ]);
    let pad = (8 - floats.len() % 8) % 8;
    floats.extend(std::iter::repeat_n(0.5, pad));
    floats
}

/// Written then read back (serde_json reads through f64, as Python's json does; `str::parse`
/// reads f32 directly): every bit identical, -0.0 and subnormals included.
#[test]
fn dumped_logits_round_trip_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logits.jsonl");
    let floats = awkward_floats(200_000);
    let vocab = 8;
    let mut w = LogitsWriter::create(&path).unwrap();
    w.write(&json!("first"), &floats, vocab).unwrap();
    w.write(&json!(2), &[f32::NAN, f32::INFINITY, 1.5, -2.0], 2)
        .unwrap();
    assert!(matches!(
        w.write(&json!(3), &[1.0, 2.0, 3.0], 2),
        Err(OutputError::Ragged { .. })
    ));
    w.finish().unwrap();
    let dumped = read_logits(&path).unwrap();
    assert_eq!(dumped.len(), 2);
    assert_eq!(dumped[0].id, json!("first"));
    assert_eq!(dumped[0].logits.len(), floats.len() / vocab);
    let back: Vec<f32> = dumped[0].logits.concat();
    let mismatches: Vec<(f32, f32)> = floats
        .iter()
        .zip(&back)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .map(|(a, b)| (*a, *b))
        .take(5)
        .collect();
    assert!(mismatches.is_empty(), "via f64: {mismatches:?}");
    // The same text parsed straight to f32.
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    let numbers = first.split("\"logits\":").nth(1).unwrap();
    let direct: Vec<f32> = numbers
        .split(['[', ']', ',', '}'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(floats
        .iter()
        .zip(&direct)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(direct.len(), floats.len());
    // Non-finite values are written as null (JSON has no NaN) and read back as NaN.
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .contains("[[null,null],[1.5,-2.0]]"));
    assert!(dumped[1].logits[0].iter().all(|x| x.is_nan()));
}

#[test]
fn the_summary_prints_an_aligned_block_and_json() {
    let s = Summary {
        requests: 12,
        invalid_requests: 1,
        prompt_tokens: 4096,
        generated_tokens: 768,
        prefill_seconds: 2.0,
        decode_seconds: 3.0,
        padding_tokens: 0,
        kv_bytes_saved: 1536 * 1024,
        peak_kv_bytes: 12 * 1024 * 1024 * 1024,
        preemptions: 2,
    };
    let text = s.to_string();
    let expected = "summary
  requests             12 (1 invalid, skipped)
  prompt tokens            4096 in    2.000 s  2.05 k tok/s
  generated tokens          768 in    3.000 s  256.0 tok/s
  padding waste               0 tokens
  KV saved (sharing)    1.5 MiB
  peak KV memory       12.0 GiB
  preemptions                 2
";
    assert_eq!(text, expected);
    let j = s.to_json();
    assert_eq!(j["prefill_tokens_per_second"], json!(2048.0));
    assert_eq!(j["decode_tokens_per_second"], json!(256.0));
    assert_eq!(j["peak_kv_bytes"], json!(12u64 << 30));
    let idle = Summary::default();
    assert_eq!(idle.to_json()["decode_tokens_per_second"], Value::Null);
    assert!(idle.to_string().contains("n/a"));
}

#[test]
fn bytes_are_humanized_in_binary_units() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
}

/// A `Write` into a shared buffer, to read what the progress reporter printed.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plain_progress_prints_counts_and_a_final_line() {
    let sink = Shared::default();
    let mut p = Progress::lines(3, Duration::ZERO, Box::new(sink.clone()));
    p.update(1, 10);
    p.update(3, 25);
    p.finish();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("generate: 1/3 requests, 10 tokens, "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("generate: 3/3 requests, 25 tokens, "),
        "{text}"
    );
    // A long interval prints only the final line.
    let sink = Shared::default();
    let mut p = Progress::lines(3, Duration::from_secs(3600), Box::new(sink.clone()));
    p.update(2, 5);
    p.finish();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}
