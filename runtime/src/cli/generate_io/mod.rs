//! Everything `warpforge generate` does around the engine, independent of it: the request
//! file ([`input`]), the completions and `--dump-logits` files ([`output`]), the end
//! [`Summary`] and the [`Progress`] reporter. The tokenizer enters only as callbacks
//! ([`Tokenize`], [`Detokenize`]).
//!
//! The flow, for the `generate` command:
//!
//! ```text
//! read_input(path, &InputOptions { defaults, tokenize, vocab, max_context })
//!   -> ParsedInput { requests, invalid, total }
//!   strict:          input.into_valid(name)?   (every bad line in one error, nothing written)
//!   --skip-invalid:  out.put(e.index, OutputRecord::from_line_error(e)) for each bad line
//! engine over requests[i].prompt / .params  (SeqId i = position in `requests`)
//! out.put(requests[i].index, OutputRecord::Completion { .. }) ... ; out.finish()?
//! ```

pub mod input;
pub mod output;
pub mod progress;
pub mod summary;

pub use input::{
    parse_input, read_input, read_requests, InputError, InputOptions, LineError, ParsedInput,
    ParsedRequest, Problem, Tokenize,
};
pub use output::{
    read_logits, Detokenize, DumpedLogits, Finish, LogitsWriter, OutputError, OutputRecord,
    OutputWriter,
};
pub use progress::Progress;
pub use summary::{human_bytes, Summary};
