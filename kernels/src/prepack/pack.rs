//! Packing prompts into one token stream on the host: ids, `cu_seqlens`, position ids.

use thiserror::Error;

/// Why prompts cannot be packed (or a packing's inputs are inconsistent).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrepackError {
    #[error(
        "prompt {prompt}: tokens {offset}..{offset}+{len} are past the flat array's {flat} tokens"
    )]
    Span {
        prompt: usize,
        offset: usize,
        len: usize,
        flat: usize,
    },
    #[error("{0}")]
    Mismatch(String),
    #[error("the packed batch has {0} tokens (or positions); u32 indices allow fewer than 2^32")]
    TooLong(usize),
    #[error("token {index}: id {id} is not below the vocabulary size {vocab}")]
    TokenId { index: usize, id: u32, vocab: usize },
    #[error("item {index} of length {len} does not fit a bin of capacity {capacity}")]
    ItemTooLong {
        index: usize,
        len: usize,
        capacity: usize,
    },
}

/// A packed batch: what the embedding gather, RoPE, the page writer and flash attention
/// read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedPrompts {
    /// The prompts' tokens back to back, `[tokens]`.
    pub token_ids: Vec<u32>,
    /// `prompts + 1` prefix sums from 0: prompt `b` is tokens `cu_seqlens[b]..cu_seqlens[b+1]`.
    pub cu_seqlens: Vec<u32>,
    /// `[tokens]`: `start[b] + i` for token `i` of prompt `b`.
    pub positions: Vec<u32>,
    /// The longest prompt (the grid of per-sequence kernels).
    pub max_len: usize,
}

/// `lens.len() + 1` prefix sums from 0, as u32.
pub fn cu_seqlens(lens: &[usize]) -> Result<Vec<u32>, PrepackError> {
    let mut out = Vec::with_capacity(lens.len() + 1);
    let mut total = 0usize;
    out.push(0);
    for &n in lens {
        total += n;
        out.push(u32::try_from(total).map_err(|_| PrepackError::TooLong(total))?);
    }
    Ok(out)
}

/// Position ids restarting per prompt: `starts[b] + i` for token `i` of prompt `b`
/// (`starts`: each prompt's already-cached length for chunked prefill; `None`: all 0).
pub fn positions(lens: &[usize], starts: Option<&[u32]>) -> Result<Vec<u32>, PrepackError> {
    if let Some(s) = starts {
        if s.len() != lens.len() {
            return Err(PrepackError::Mismatch(format!(
                "{} start positions for {} prompts",
                s.len(),
                lens.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(lens.iter().sum());
    for (b, &n) in lens.iter().enumerate() {
        let start = starts.map_or(0, |s| s[b]) as usize;
        let last = start + n;
        if last > u32::MAX as usize {
            return Err(PrepackError::TooLong(last));
        }
        out.extend((start..last).map(|p| p as u32));
    }
    Ok(out)
}

/// Packs prompt `b` = `flat[offsets[b]..offsets[b] + lens[b]]` for every `b`, in order.
pub fn pack_prompts(
    flat: &[u32],
    offsets: &[usize],
    lens: &[usize],
    starts: Option<&[u32]>,
) -> Result<PackedPrompts, PrepackError> {
    if offsets.len() != lens.len() {
        return Err(PrepackError::Mismatch(format!(
            "{} offsets for {} lengths",
            offsets.len(),
            lens.len()
        )));
    }
    let cu = cu_seqlens(lens)?;
    let mut token_ids = Vec::with_capacity(*cu.last().unwrap_or(&0) as usize);
    for (prompt, (&offset, &len)) in offsets.iter().zip(lens).enumerate() {
        let span = flat.get(offset..).and_then(|rest| rest.get(..len));
        let Some(span) = span else {
            return Err(PrepackError::Span {
                prompt,
                offset,
                len,
                flat: flat.len(),
            });
        };
        token_ids.extend_from_slice(span);
    }
    Ok(PackedPrompts {
        token_ids,
        cu_seqlens: cu,
        positions: positions(lens, starts)?,
        max_len: lens.iter().copied().max().unwrap_or(0),
    })
}

/// An error naming the first id that is not below `vocab` (the gather kernel writes NaN
/// rows for such ids rather than read past the table).
pub fn check_ids(ids: &[u32], vocab: usize) -> Result<(), PrepackError> {
    match ids.iter().position(|&id| id as usize >= vocab) {
        Some(index) => Err(PrepackError::TokenId {
            index,
            id: ids[index],
            vocab,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_pack_in_order_with_restarting_positions() {
        let flat = [10, 11, 12, 20, 30, 31, 99];
        // Prompt 1 is empty; prompt 2 reads out of order; prompt 0 continues a cache of 5.
        let packed = pack_prompts(&flat, &[0, 3, 4], &[3, 0, 2], Some(&[5, 0, 1])).unwrap();
        assert_eq!(packed.token_ids, vec![10, 11, 12, 30, 31]);
        assert_eq!(packed.cu_seqlens, vec![0, 3, 3, 5]);
        assert_eq!(packed.positions, vec![5, 6, 7, 1, 2]);
        assert_eq!(packed.max_len, 3);
        let plain = pack_prompts(&flat, &[6, 0], &[1, 2], None).unwrap();
        assert_eq!(
            (plain.token_ids, plain.positions),
            (vec![99, 10, 11], vec![0, 0, 1])
        );
    }

    #[test]
    fn bad_spans_and_ids_are_errors() {
        let err = pack_prompts(&[1, 2, 3], &[2], &[2], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt 0: tokens 2..2+2 are past the flat array's 3 tokens"
        );
        assert!(matches!(
            pack_prompts(&[1], &[0, 0], &[1], None),
            Err(PrepackError::Mismatch(_))
        ));
        assert!(pack_prompts(&[1], &[0], &[1], Some(&[])).is_err());
        assert_eq!(
            check_ids(&[0, 4, 5], 5),
            Err(PrepackError::TokenId {
                index: 2,
                id: 5,
                vocab: 5
            })
        );
        assert_eq!(
            positions(&[2], Some(&[u32::MAX])),
            Err(PrepackError::TooLong(1 << 32 | 1))
        );
        assert_eq!(cu_seqlens(&[]).unwrap(), vec![0]);
    }
}
