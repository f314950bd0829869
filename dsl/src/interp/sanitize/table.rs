//! Shadow words of global memory: an open-addressing hash table (linear probing) whose
//! entries are valid only in the epoch stamped into them.
//!
//! All entries of the current epoch were inserted during it, and none is ever removed, so a
//! probe sequence never crosses a stale entry before reaching a live one with its key: a
//! stale entry can be treated as empty, and moving to a new epoch clears the table for free.

use super::Word;

/// The most words tracked per epoch (a bound on the table's memory: 2 × this × 32 bytes).
pub(in crate::interp) const MAX_WORDS: usize = 1 << 20;

const INITIAL_CAPACITY: usize = 1 << 10;

#[derive(Default)]
pub(in crate::interp) struct WordTable {
    entries: Vec<(u64, Word)>,
    /// Live entries (stamped with `epoch`).
    live: usize,
    epoch: u32,
}

#[inline]
fn hash(key: u64) -> usize {
    // Fibonacci hashing; the high bits are the best mixed.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

impl WordTable {
    /// The word for `key` in `epoch`, inserted fresh when absent; `None` when absent and
    /// the table already holds [`MAX_WORDS`] words of this epoch.
    #[inline]
    pub fn word(&mut self, key: u64, epoch: u32) -> Option<&mut Word> {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.live = 0;
        }
        if 2 * (self.live + 1) > self.entries.len() && self.live < MAX_WORDS {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut i = hash(key) & mask;
        loop {
            let (k, w) = self.entries[i];
            if w.epoch != epoch {
                if self.live >= MAX_WORDS {
                    return None;
                }
                self.live += 1;
                self.entries[i] = (key, Word::fresh(epoch));
                return Some(&mut self.entries[i].1);
            }
            if k == key {
                return Some(&mut self.entries[i].1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the capacity, keeping the live entries.
    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(INITIAL_CAPACITY);
        let old = std::mem::replace(&mut self.entries, vec![(0, Word::STALE); capacity]);
        let mask = capacity - 1;
        for (key, word) in old.into_iter().filter(|(_, w)| w.epoch == self.epoch) {
            let mut i = hash(key) & mask;
            while self.entries[i].1.epoch == self.epoch {
                i = (i + 1) & mask;
            }
            self.entries[i] = (key, word);
        }
    }

    /// Forgets every entry (when epoch numbers wrap around).
    pub fn clear(&mut self) {
        self.entries.fill((0, Word::STALE));
        self.live = 0;
    }
}
