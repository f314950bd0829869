//! Training data: a tokenized corpus packed into fixed-length rows without padding.
//!
//! Documents are concatenated (in a seeded shuffled order) into one token stream, which is
//! cut into rows of `seq_len` tokens; row `r` reads `stream[r·L .. r·L + L]` and predicts
//! `stream[r·L + 1 .. r·L + L + 1]`, so no target is lost at a row's end. Inside a row,
//! each maximal run of one document is a *segment*: attention stays inside it (the varlen
//! kernels' `cu_seqlens` are the segment boundaries), positions restart at 0 at its start,
//! and a target that would cross into the next document is ignored. Rows are shuffled per
//! epoch with the seed, so batch `b` is a pure function of `(seed, b)`: resuming needs only
//! the step count.
//!
//! Naive batching (every document, cut into pieces of at most `seq_len`, on its own row
//! padded to `seq_len`) is reported beside it: [`Corpus::naive_padding`].

use crate::model::tokenizer::{Tokenizer, TokenizerError};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::path::Path;

/// The cross-entropy's ignored target (PyTorch's `ignore_index`).
pub const IGNORE: i32 = -100;

/// Why a corpus cannot be loaded or packed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("{path}: a binary corpus is little-endian u32 token ids; its {bytes} bytes are not a multiple of 4")]
    BinaryLength { path: String, bytes: usize },
    #[error("{path}: a text corpus needs the model's tokenizer.json")]
    NoTokenizer { path: String },
    #[error("token id {id} at index {at} is outside the vocabulary ({vocab})")]
    OutOfVocab { id: u32, at: usize, vocab: usize },
    #[error(
        "the corpus has {tokens} tokens: too few for one row of {seq_len} (and its last target)"
    )]
    TooSmall { tokens: usize, seq_len: usize },
    #[error("{0}")]
    Config(String),
}

/// A tokenized corpus: documents of token ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    pub docs: Vec<Vec<u32>>,
}

/// Special token ids framing each document of a text corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

impl Corpus {
    /// Loads `path`: a `.bin` file of little-endian u32 ids (documents end at each `eos`),
    /// or text through `tokenizer` (documents are separated by blank lines; a file with no
    /// blank line has one document per non-empty line), each framed by BOS/EOS.
    pub fn load(
        path: &Path,
        tokenizer: Option<&Tokenizer>,
        specials: Specials,
    ) -> Result<Corpus, DataError> {
        let io = |source| DataError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(path).map_err(io)?;
            if bytes.len() % 4 != 0 {
                return Err(DataError::BinaryLength {
                    path: path.display().to_string(),
                    bytes: bytes.len(),
                });
            }
            let ids: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            return Ok(Corpus::from_ids(&ids, specials.eos));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let tokenizer = tokenizer.ok_or_else(|| DataError::NoTokenizer {
            path: path.display().to_string(),
        })?;
        Corpus::from_text(&text, tokenizer, specials)
    }

    /// Splits `text` into documents and tokenizes each (without the tokenizer's own special
    /// tokens), framed by `specials`.
    pub fn from_text(
        text: &str,
        tokenizer: &Tokenizer,
        specials: Specials,
    ) -> Result<Corpus, DataError> {
        let docs = split_documents(text)
            .into_iter()
            .map(|doc| {
                let mut ids = Vec::new();
                ids.extend(specials.bos);
                ids.extend(tokenizer.encode(&doc, false)?);
                ids.extend(specials.eos);
                Ok(ids)
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok(Corpus { docs })
    }

    /// Splits a stream of ids into documents after each `eos` (one document without it).
    pub fn from_ids(ids: &[u32], eos: Option<u32>) -> Corpus {
        let mut docs = vec![];
        let mut doc = vec![];
        for &id in ids {
            doc.push(id);
            if Some(id) == eos {
                docs.push(std::mem::take(&mut doc));
            }
        }
        if !doc.is_empty() {
            docs.push(doc);
        }
        Corpus { docs }
    }

    pub fn tokens(&self) -> usize {
        self.docs.iter().map(Vec::len).sum()
    }

    /// Every id below `vocab`.
    pub fn check_vocab(&self, vocab: usize) -> Result<(), DataError> {
        let all = self.docs.iter().flatten();
        match all.enumerate().find(|(_, &id)| id as usize >= vocab) {
            Some((at, &id)) => Err(DataError::OutOfVocab { id, at, vocab }),
            None => Ok(()),
        }
    }

    /// Holds back every `1/every`-th document (by position, deterministic) for evaluation:
    /// `(train, held_back)`. `every` = 0 holds nothing back.
    pub fn split_held_back(self, every: usize) -> (Corpus, Corpus) {
        let (mut train, mut held) = (vec![], vec![]);
        for (i, doc) in self.docs.into_iter().enumerate() {
            match every > 0 && i % every == every - 1 {
                true => held.push(doc),
                false => train.push(doc),
            }
        }
        (Corpus { docs: train }, Corpus { docs: held })
    }

    /// The padding fraction of naive batching: every document cut into pieces of at most
    /// `seq_len` tokens, each piece on its own row padded to `seq_len`.
    pub fn naive_padding(&self, seq_len: usize) -> f64 {
        let rows: usize = self.docs.iter().map(|d| d.len().div_ceil(seq_len)).sum();
        match rows {
            0 => 0.0,
            _ => 1.0 - self.tokens() as f64 / (rows * seq_len) as f64,
        }
    }
}

/// Documents of a text: blank-line separated paragraphs, or lines when there is no blank
/// line. Empty documents are dropped.
fn split_documents(text: &str) -> Vec<String> {
    let blank = |l: &str| l.trim().is_empty();
    let paragraphs = text.trim().lines().any(blank);
    let mut docs = vec![];
    let mut doc: Vec<&str> = vec![];
    for line in text.lines() {
        if !paragraphs || blank(line) {
            if paragraphs {
                docs.push(doc.join("\n"));
                doc.clear();
            } else {
                docs.push(line.to_string());
            }
        } else {
            doc.push(line);
        }
    }
    docs.push(doc.join("\n"));
    docs.into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// One batch of packed rows, flattened: `rows · seq_len` tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    /// The next token of the same document, or [`IGNORE`].
    pub targets: Vec<i32>,
    /// Position inside the token's segment.
    pub positions: Vec<u32>,
    /// Prefix sums of the segment lengths over the whole batch (`segments + 1` entries).
    pub cu_seqlens: Vec<u32>,
    pub rows: usize,
    pub seq_len: usize,
}

impl Batch {
    pub fn segments(&self) -> usize {
        self.cu_seqlens.len() - 1
    }

    /// Segment lengths.
    pub fn lengths(&self) -> Vec<usize> {
        self.cu_seqlens
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .collect()
    }

    /// Targets not ignored.
    pub fn counted(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// The packed corpus: the token stream with each token's document, cut into rows.
#[derive(Clone, Debug)]
pub struct Packed {
    stream: Vec<u32>,
    doc_of: Vec<u32>,
    seq_len: usize,
    rows: usize,
    seed: u64,
}

impl Packed {
    /// Concatenates `corpus`'s documents in an order shuffled by `seed` and cuts the stream
    /// into rows of `seq_len` (the tail that does not fill a row is dropped).
    pub fn new(corpus: &Corpus, seq_len: usize, seed: u64) -> Result<Packed, DataError> {
        if seq_len == 0 {
            return Err(DataError::Config(
                "the sequence length must be positive".into(),
            ));
        }
        let mut order: Vec<usize> = (0..corpus.docs.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (mut stream, mut doc_of) = (vec![], vec![]);
        for (n, &d) in order.iter().enumerate() {
            stream.extend_from_slice(&corpus.docs[d]);
            doc_of.extend(std::iter::repeat_n(n as u32, corpus.docs[d].len()));
        }
        // The last row needs one more token for its last target.
        let rows = stream.len().saturating_sub(1) / seq_len;
        if rows == 0 {
            return Err(DataError::TooSmall {
                tokens: stream.len(),
                seq_len,
            });
        }
        Ok(Packed {
            stream,
            doc_of,
            seq_len,
            rows,
            seed,
        })
    }

    /// Rows of `seq_len` tokens.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Tokens the rows cover.
    pub fn tokens(&self) -> usize {
        self.rows * self.seq_len
    }

    /// The order of the rows in `epoch`: a permutation seeded by the seed and the epoch.
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rows).collect();
        let seed = self.seed ^ (epoch + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        order
    }

    /// Batch `index` of `rows_per_batch` rows: rows `index·B ..` of the concatenated epoch
    /// orders (a batch may span two epochs).
    pub fn batch(&self, index: u64, rows_per_batch: usize) -> Batch {
        let first = index * rows_per_batch as u64;
        let mut epoch = u64::MAX;
        let mut order = vec![];
        let mut rows = Vec::with_capacity(rows_per_batch);
        for g in first..first + rows_per_batch as u64 {
            let e = g / self.rows as u64;
            if e != epoch {
                epoch = e;
                order = self.epoch_order(e);
            }
            rows.push(order[(g % self.rows as u64) as usize]);
        }
        self.batch_of_rows(&rows)
    }

    /// Every row once, in order (for evaluation), in batches of `rows_per_batch`.
    pub fn sequential(&self, rows_per_batch: usize) -> Vec<Batch> {
        let all: Vec<usize> = (0..self.rows).collect();
        all.chunks(rows_per_batch.max(1))
            .map(|rows| self.batch_of_rows(rows))
            .collect()
    }

    fn batch_of_rows(&self, rows: &[usize]) -> Batch {
        let l = self.seq_len;
        let mut b = Batch {
            tokens: Vec::with_capacity(rows.len() * l),
            targets: Vec::with_capacity(rows.len() * l),
            positions: Vec::with_capacity(rows.len() * l),
            cu_seqlens: vec![0],
            rows: rows.len(),
            seq_len: l,
        };
        for &r in rows {
            let start = r * l;
            let mut position = 0u32;
            for i in start..start + l {
                let same_doc_next = self.doc_of[i + 1] == self.doc_of[i];
                if i > start && self.doc_of[i] != self.doc_of[i - 1] {
                    b.cu_seqlens.push(b.tokens.len() as u32);
                    position = 0;
                }
                b.tokens.push(self.stream[i]);
                b.targets.push(match same_doc_next {
                    true => self.stream[i + 1] as i32,
                    false => IGNORE,
                });
                b.positions.push(position);
                position += 1;
            }
            b.cu_seqlens.push(b.tokens.len() as u32);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(lens: &[usize]) -> Corpus {
        // Document d's tokens are 100·d + i: each token names its document.
        let docs = lens
            .iter()
            .enumerate()
            .map(|(d, &n)| (0..n).map(|i| (100 * d + i) as u32).collect())
            .collect();
        Corpus { docs }
    }

    #[test]
    fn rows_keep_every_token_once_and_segments_stay_inside_documents() {
        let c = corpus(&[5, 13, 2, 9, 7]);
        let p = Packed::new(&c, 8, 3).unwrap();
        assert_eq!(p.rows(), (36 - 1) / 8);
        let all = p.sequential(2);
        let tokens: Vec<u32> = all.iter().flat_map(|b| b.tokens.clone()).collect();
        assert_eq!(tokens, p.stream[..p.tokens()].to_vec());
        for b in &all {
            for (s, w) in b.cu_seqlens.windows(2).enumerate() {
                let seg = &b.tokens[w[0] as usize..w[1] as usize];
                let doc = seg[0] / 100;
                assert!(seg.iter().all(|t| t / 100 == doc), "segment {s}: {seg:?}");
                let pos = &b.positions[w[0] as usize..w[1] as usize];
                assert_eq!(pos, (0..seg.len() as u32).collect::<Vec<_>>());
            }
            // Segments never cross a row boundary.
            for r in 1..b.rows {
                assert!(b.cu_seqlens.contains(&((r * 8) as u32)));
            }
        }
    }

    #[test]
    fn targets_are_the_next_token_of_the_same_document() {
        let c = corpus(&[5, 13, 2, 9, 7]);
        let p = Packed::new(&c, 8, 3).unwrap();
        for b in p.sequential(4) {
            for (i, &t) in b.targets.iter().enumerate() {
                let tok = b.tokens[i];
                if t == IGNORE {
                    // Only a document's last token loses its target.
                    let doc = (tok / 100) as usize;
                    assert_eq!(tok as usize % 100, c.docs[doc].len() - 1);
                } else {
                    assert_eq!(t as u32, tok + 1, "token {tok}");
                }
            }
        }
    }

    #[test]
    fn batches_are_a_pure_function_of_seed_and_index_and_cover_each_epoch() {
        let c = corpus(&[40, 23, 17, 31]);
        let p = Packed::new(&c, 6, 11).unwrap();
        let q = Packed::new(&c, 6, 11).unwrap();
        assert_eq!(p.batch(5, 3), q.batch(5, 3));
        assert_ne!(p.batch(0, 3), Packed::new(&c, 6, 12).unwrap().batch(0, 3));
        // One epoch of batches of one row covers every row once.
        let mut firsts: Vec<u32> = (0..p.rows() as u64)
            .map(|i| p.batch(i, 1).tokens[0])
            .collect();
        let mut want: Vec<u32> = (0..p.rows()).map(|r| p.stream[r * 6]).collect();
        firsts.sort();
        want.sort();
        assert_eq!(firsts, want);
    }

    #[test]
    fn naive_padding_counts_padded_pieces() {
        let c = corpus(&[5, 13]);
        // Rows: [5], [8], [5] of 8 → 24 slots, 18 tokens.
        assert!((c.naive_padding(8) - 6.0 / 24.0).abs() < 1e-12);
    }

    #[test]
    fn ids_split_after_eos_and_held_back_is_deterministic() {
        let c = Corpus::from_ids(&[1, 5, 6, 2, 1, 7, 2, 1, 9], Some(2));
        assert_eq!(c.docs, vec![vec![1, 5, 6, 2], vec![1, 7, 2], vec![1, 9]]);
        let (train, held) = c.split_held_back(3);
        assert_eq!(held.docs, vec![vec![1, 9]]);
        assert_eq!(train.docs.len(), 2);
        assert!(train.check_vocab(10).is_ok());
        assert!(matches!(
            train.check_vocab(7),
            Err(DataError::OutOfVocab { id: 7, .. })
        ));
    }

    #[test]
    fn documents_split_on_blank_lines_else_lines() {
        assert_eq!(split_documents("a b\nc\n\nd\n"), vec!["a b\nc", "d"]);
        assert_eq!(split_documents("a\nb\n\n"), vec!["a", "b"]);
        assert_eq!(split_documents("x\n  \ny"), vec!["x", "y"]);
        assert_eq!(split_documents("a\nb\n"), vec!["a", "b"]);
    }

    #[test]
    fn too_small_a_corpus_is_an_error() {
        assert!(matches!(
            Packed::new(&corpus(&[4]), 4, 0),
            Err(DataError::TooSmall { .. })
        ));
    }
}
