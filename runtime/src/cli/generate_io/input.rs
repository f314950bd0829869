//! The request file of `warpforge generate`: JSONL, one request per line.
//!
//! A line is `{"id": ..., "prompt": "text"}` or `{"id": ..., "prompt_ids": [ints]}` with the
//! optional sampling fields `max_tokens`, `temperature`, `top_k`, `top_p`, `seed`,
//! `stop_token_ids` and `repetition_penalty`; a field the line leaves out (or sets to
//! `null`) takes the command-line default. `id` is a string or a number and is echoed back
//! exactly. Blank lines are skipped. Every bad line is reported, each with its line number
//! and the fields at fault, so a file can be fixed in one pass.

use crate::engine::sampling::{SamplingError, SamplingParams};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Turns a text prompt into token ids (the model's tokenizer, behind a callback so this
/// module does not depend on the tokenizer type).
pub type Tokenize = dyn Fn(&str) -> Result<Vec<u32>, String>;

/// What a request line is checked against, and the defaults it inherits.
pub struct InputOptions<'a> {
    /// The command-line defaults (`--max-tokens`, `--temperature`, ...). A line without
    /// `seed` gets `defaults.seed + n`, n its 0-based position among the requests, so that
    /// identical prompts sample differently; set `seed` on the line to pin it.
    pub defaults: SamplingParams,
    /// The tokenizer; without one, text prompts are an error (give `prompt_ids`).
    pub tokenize: Option<&'a Tokenize>,
    /// Token ids must be below this.
    pub vocab: usize,
    /// A prompt may have at most this many tokens (the model's context length).
    pub max_context: usize,
}

/// One valid request.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedRequest {
    /// Position among the file's requests (blank lines not counted; invalid lines counted):
    /// the slot of its record in the output.
    pub index: usize,
    /// 1-based line number in the file.
    pub line: usize,
    /// The id exactly as given (a JSON string or number).
    pub id: Value,
    /// The prompt's token ids (never empty, at most `max_context`).
    pub prompt: Vec<u32>,
    /// The line's sampling fields over the defaults, validated.
    pub params: SamplingParams,
}

/// One thing wrong with a line: the field (when one is at fault) and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Everything wrong with one line.
#[derive(Clone, Debug, PartialEq)]
pub struct LineError {
    /// Position among the file's requests (as [`ParsedRequest::index`]).
    pub index: usize,
    /// 1-based line number.
    pub line: usize,
    /// The line's id when it has a valid one (echoed in the error record).
    pub id: Option<Value>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        for (n, problem) in self.problems.iter().enumerate() {
            let sep = if n == 0 { "" } else { "; " };
            write!(f, "{sep}{problem}")?;
        }
        Ok(())
    }
}

/// The whole file: the valid requests and the bad lines, both in input order.
#[derive(Clone, Debug, Default)]
pub struct ParsedInput {
    pub requests: Vec<ParsedRequest>,
    pub invalid: Vec<LineError>,
    /// Requests in the file (valid + invalid): the number of output records.
    pub total: usize,
}

impl ParsedInput {
    /// The valid requests when every line is valid, else every bad line as one error.
    pub fn into_valid(self, source: &str) -> Result<Vec<ParsedRequest>, InputError> {
        if self.invalid.is_empty() {
            return Ok(self.requests);
        }
        Err(InputError::Invalid {
            source_name: source.to_string(),
            total: self.total,
            errors: self.invalid,
        })
    }
}

/// Why the request file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("invalid command-line default: {0}")]
    Defaults(SamplingError),
    #[error("{0}: no requests (every line is blank)")]
    Empty(String),
    #[error("{}", invalid_message(source_name, *total, errors))]
    Invalid {
        source_name: String,
        total: usize,
        errors: Vec<LineError>,
    },
}

fn invalid_message(source: &str, total: usize, errors: &[LineError]) -> String {
    let mut text = format!(
        "{source}: {} of {total} requests are invalid (fix them, or pass --skip-invalid to \
         generate the others and write an error record for these):",
        errors.len()
    );
    for e in errors {
        text.push_str(&format!("\n  {e}"));
    }
    text
}

/// Reads and checks the request file (`-` reads stdin). Fails only when the file cannot be
/// read, a default is out of range or the file holds no request; bad lines are returned in
/// [`ParsedInput::invalid`].
pub fn read_input(path: &Path, opts: &InputOptions) -> Result<ParsedInput, InputError> {
    let name = path.display().to_string();
    if path == Path::new("-") {
        return parse_input(std::io::stdin().lock(), &name, opts);
    }
    match std::fs::File::open(path) {
        Ok(file) => parse_input(BufReader::new(file), &name, opts),
        Err(source) => Err(InputError::Read { name, source }),
    }
}

/// [`read_input`], then [`ParsedInput::into_valid`]: the requests when every line is valid.
pub fn read_requests(path: &Path, opts: &InputOptions) -> Result<Vec<ParsedRequest>, InputError> {
    read_input(path, opts)?.into_valid(&path.display().to_string())
}

/// [`read_input`] over any reader; `name` names the source in errors.
pub fn parse_input(
    mut reader: impl BufRead,
    name: &str,
    opts: &InputOptions,
) -> Result<ParsedInput, InputError> {
    opts.defaults.validate().map_err(InputError::Defaults)?;
    let read_err = |source| InputError::Read {
        name: name.to_string(),
        source,
    };
    let mut input = ParsedInput::default();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut bytes = Vec::new();
    let mut line = 0;
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes).map_err(read_err)? == 0 {
            break;
        }
        line += 1;
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => Ok(text.trim()),
            Err(e) => Err(problem(None, format!("not UTF-8 text: {e}"))),
        };
        let index = input.total;
        input.total += 1;
        let parsed = match text {
            Ok(text) => parse_line(text, index, line, opts, &mut ids),
            Err(utf8) => Err(LineError {
                index,
                line,
                id: None,
                problems: vec![utf8],
            }),
        };
        match parsed {
            Ok(request) => input.requests.push(request),
            Err(error) => input.invalid.push(error),
        }
    }
    if input.total == 0 {
        return Err(InputError::Empty(name.to_string()));
    }
    Ok(input)
}

/// The known fields: the request's own three, then the sampling fields.
const FIELDS: [&str; 10] = [
    "id",
    "prompt",
    "prompt_ids",
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "stop_token_ids",
    "repetition_penalty",
];

fn problem(field: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// Parses one non-blank line; `ids` maps each id seen so far (as JSON) to its line.
fn parse_line(
    text: &str,
    index: usize,
    line: usize,
    opts: &InputOptions,
    ids: &mut HashMap<String, usize>,
) -> Result<ParsedRequest, LineError> {
    let fail = |id, problems| LineError {
        index,
        line,
        id,
        problems,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(None, vec![problem(None, format!("not valid JSON: {e}"))]))?;
    let Value::Object(obj) = value else {
        let msg = format!("a request is a JSON object, got {}", kind(&value));
        return Err(fail(None, vec![problem(None, msg)]));
    };
    let mut problems = Vec::new();
    for key in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        let msg = format!("unknown field (known: {})", FIELDS.join(", "));
        problems.push(problem(Some(key), msg));
    }
    let id = parse_id(&obj, line, ids, &mut problems);
    let prompt = parse_prompt(&obj, opts, &mut problems);
    let params = parse_params(&obj, index, opts, &mut problems);
    match (id, prompt, params) {
        (Some(id), Some(prompt), Some(params)) if problems.is_empty() => Ok(ParsedRequest {
            index,
            line,
            id,
            prompt,
            params,
        }),
        (id, ..) => Err(fail(id, problems)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field's value; `null` counts as absent.
fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn parse_id(
    obj: &Map<String, Value>,
    line: usize,
    ids: &mut HashMap<String, usize>,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let id = match obj.get("id") {
        None => {
            problems.push(problem(Some("id"), "missing (a string or a number)"));
            return None;
        }
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(other) => {
            let msg = format!("must be a string or a number, got {}", kind(other));
            problems.push(problem(Some("id"), msg));
            return None;
        }
    };
    let first = *ids.entry(id.to_string()).or_insert(line);
    if first != line {
        let msg = format!("{id} is already the id of line {first}; ids must be unique");
        problems.push(problem(Some("id"), msg));
    }
    Some(id)
}

fn parse_prompt(
    obj: &Map<String, Value>,
    opts: &InputOptions,
    problems: &mut Vec<Problem>,
) -> Option<Vec<u32>> {
    let (field_name, tokens) = match (field(obj, "prompt"), field(obj, "prompt_ids")) {
        (Some(_), Some(_)) => {
            let msg = "give either `prompt` (text) or `prompt_ids` (token ids), not both";
            problems.push(problem(None, msg));
            return None;
        }
        (None, None) => {
            let msg = "missing: give `prompt` (text) or `prompt_ids` (token ids)";
            problems.push(problem(None, msg));
            return None;
        }
        (Some(text), None) => ("prompt", tokenize_prompt(text, opts)),
        (None, Some(ids)) => ("prompt_ids", token_ids(ids, opts.vocab)),
    };
    let checked = tokens.and_then(|tokens| {
        if tokens.is_empty() {
            return Err("the prompt is empty".to_string());
        }
        if let Some((at, &t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= opts.vocab)
        {
            return Err(format!(
                "token id {t} (position {at}) is outside the vocabulary (size {})",
                opts.vocab
            ));
        }
        if tokens.len() > opts.max_context {
            return Err(format!(
                "the prompt has {} tokens, more than the model's context of {}",
                tokens.len(),
                opts.max_context
            ));
        }
        Ok(tokens)
    });
    checked
        .map_err(|msg| problems.push(problem(Some(field_name), msg)))
        .ok()
}

fn tokenize_prompt(text: &Value, opts: &InputOptions) -> Result<Vec<u32>, String> {
    let Value::String(text) = text else {
        return Err(format!("must be a string, got {}", kind(text)));
    };
    if text.is_empty() {
        return Err("the prompt is empty".to_string());
    }
    let tokenize = opts.tokenize.ok_or(
        "a text prompt needs the model's tokenizer.json, which this model lacks; give \
         `prompt_ids` instead",
    )?;
    tokenize(text).map_err(|e| format!("cannot tokenize: {e}"))
}

/// A JSON array of token ids (integers in 0..vocab).
fn token_ids(value: &Value, vocab: usize) -> Result<Vec<u32>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "must be an array of token ids, got {}",
            kind(value)
        ));
    };
    let mut ids = Vec::with_capacity(items.len());
    for (at, item) in items.iter().enumerate() {
        match item.as_u64() {
            Some(t) if t < vocab as u64 => ids.push(t as u32),
            Some(t) => {
                return Err(format!(
                    "token id {t} (position {at}) is outside the vocabulary (size {vocab})"
                ))
            }
            None => {
                return Err(format!(
                    "element {at} ({item}) is not a token id (an integer >= 0)"
                ))
            }
        }
    }
    Ok(ids)
}

/// The sampling fields over the defaults; `None` (with problems) when one is bad.
fn parse_params(
    obj: &Map<String, Value>,
    index: usize,
    opts: &InputOptions,
    problems: &mut Vec<Problem>,
) -> Option<SamplingParams> {
    let before = problems.len();
    let mut p = opts.defaults.clone();
    p.seed = opts.defaults.seed.wrapping_add(index as u64);
    for &name in &FIELDS[3..] {
        let Some(v) = field(obj, name) else { continue };
        let set = match name {
            "max_tokens" => uint(v).map(|x| p.max_tokens = x as usize),
            "top_k" => uint(v).map(|x| p.top_k = x as usize),
            "seed" => uint(v).map(|x| p.seed = x),
            "temperature" => number(v).map(|x| p.temperature = x),
            "top_p" => number(v).map(|x| p.top_p = x),
            "repetition_penalty" => number(v).map(|x| p.repetition_penalty = x),
            "stop_token_ids" => token_ids(v, opts.vocab).map(|ids| p.stop_token_ids = ids),
            _ => unreachable!("FIELDS[3..] are the sampling fields"),
        };
        if let Err(msg) = set {
            problems.push(problem(Some(name), msg));
        }
    }
    for e in p.out_of_range() {
        if let SamplingError::OutOfRange {
            field,
            value,
            expected,
        } = e
        {
            problems.push(problem(Some(field), format!("{value} {expected}")));
        }
    }
    (problems.len() == before).then_some(p)
}

fn uint(v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("must be an integer >= 0, got {v}"))
}

fn number(v: &Value) -> Result<f32, String> {
    v.as_f64()
        .map(|x| x as f32)
        .ok_or_else(|| format!("must be a number, got {v}"))
}
