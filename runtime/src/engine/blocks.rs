//! The paged KV block manager: a fixed pool of pages of `page_size` tokens, a free list and a
//! reference count per page. A sequence's block table lists its pages in position order;
//! sequences sharing a prompt prefix list the same leading page ids (each holding a
//! reference). Pure bookkeeping over page ids: the runner owns the memory they index.

use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct BlockManager {
    page_size: usize,
    /// References to each page; 0 = free.
    refs: Vec<u32>,
    /// Free pages, reused oldest-freed first (so a freed prefix page stays reusable for as
    /// long as possible).
    free: VecDeque<u32>,
    peak_used: usize,
}

impl BlockManager {
    pub fn new(num_pages: usize, page_size: usize) -> Self {
        BlockManager {
            page_size,
            refs: vec![0; num_pages],
            free: (0..num_pages as u32).collect(),
            peak_used: 0,
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn num_pages(&self) -> usize {
        self.refs.len()
    }

    /// Pages needed to hold `tokens` tokens.
    pub fn pages_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.page_size)
    }

    pub fn free_pages(&self) -> usize {
        self.free.len()
    }

    pub fn used_pages(&self) -> usize {
        self.num_pages() - self.free_pages()
    }

    /// The most pages ever in use at once.
    pub fn peak_used(&self) -> usize {
        self.peak_used
    }

    pub fn refs(&self, page: u32) -> u32 {
        self.refs[page as usize]
    }

    pub fn can_allocate(&self, pages: usize) -> bool {
        pages <= self.free.len()
    }

    /// Extends `table` with fresh pages until it covers `tokens` tokens. Returns false (and
    /// changes nothing) when there are not enough free pages.
    pub fn grow(&mut self, table: &mut Vec<u32>, tokens: usize) -> bool {
        let missing = self.pages_for(tokens).saturating_sub(table.len());
        if !self.can_allocate(missing) {
            return false;
        }
        for _ in 0..missing {
            let page = self.free.pop_front().expect("checked by can_allocate");
            self.refs[page as usize] = 1;
            table.push(page);
        }
        self.peak_used = self.peak_used.max(self.used_pages());
        true
    }

    /// Takes one more reference to each of `pages` and returns them, to start another
    /// sequence's block table with a shared prefix. A free page (its content kept since it
    /// was freed) is taken off the free list.
    pub fn share(&mut self, pages: &[u32]) -> Vec<u32> {
        for &page in pages {
            if self.refs[page as usize] == 0 {
                let at = self
                    .free
                    .iter()
                    .position(|&p| p == page)
                    .expect("a free page is on the free list");
                self.free.remove(at);
            }
            self.refs[page as usize] += 1;
        }
        self.peak_used = self.peak_used.max(self.used_pages());
        pages.to_vec()
    }

    /// Drops `table`'s references (emptying it); returns the pages that became free.
    pub fn release(&mut self, table: &mut Vec<u32>) -> Vec<u32> {
        let mut freed = Vec::new();
        for page in table.drain(..) {
            let refs = &mut self.refs[page as usize];
            debug_assert!(*refs > 0, "releasing free page {page}");
            *refs -= 1;
            if *refs == 0 {
                self.free.push_back(page);
                freed.push(page);
            }
        }
        freed
    }

    /// Checks that the live block `tables` account for every reference: each page's count
    /// equals the tables listing it, and a page is on the free list (once) exactly when no
    /// table lists it. Any leak or double free breaks this.
    pub fn check_invariants<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a [u32]>,
    ) -> Result<(), String> {
        let mut expected = vec![0u32; self.num_pages()];
        for table in tables {
            for &page in table {
                let slot = expected
                    .get_mut(page as usize)
                    .ok_or(format!("page {page} out of range"))?;
                *slot += 1;
            }
        }
        let mut on_free_list = vec![false; self.num_pages()];
        for &page in &self.free {
            if std::mem::replace(&mut on_free_list[page as usize], true) {
                return Err(format!("page {page} is twice on the free list"));
            }
        }
        for (page, (&refs, &want)) in self.refs.iter().zip(&expected).enumerate() {
            if refs != want {
                return Err(format!(
                    "page {page} has {refs} references, tables hold {want}"
                ));
            }
            if (refs == 0) != on_free_list[page] {
                return Err(format!(
                    "page {page}: {refs} references, free list {}",
                    on_free_list[page]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_share_release_round_trip() {
        let mut blocks = BlockManager::new(4, 16);
        let mut a = Vec::new();
        assert!(blocks.grow(&mut a, 17));
        assert_eq!(a.len(), 2);
        assert!(blocks.grow(&mut a, 32), "still two pages");
        assert_eq!(a.len(), 2);
        let mut b = blocks.share(&a[..1]);
        assert!(blocks.grow(&mut b, 40));
        assert_eq!(b.len(), 3);
        assert_eq!(blocks.refs(a[0]), 2);
        blocks
            .check_invariants([a.as_slice(), b.as_slice()])
            .unwrap();
        assert!(!blocks.grow(&mut b, 64), "only 4 pages");
        assert_eq!(b.len(), 3, "a failed grow changes nothing");
        assert_eq!(blocks.peak_used(), 4);

        assert_eq!(
            (a.clone(), b.clone()),
            (vec![0, 1], vec![0, 2, 3]),
            "free list order"
        );
        assert_eq!(blocks.release(&mut a), vec![1], "page 0 is still held by b");
        assert_eq!(blocks.refs(0), 1);
        blocks.check_invariants([b.as_slice()]).unwrap();
        assert_eq!(blocks.release(&mut b), vec![0, 2, 3]);
        assert_eq!(blocks.free_pages(), 4);
        blocks.check_invariants([]).unwrap();
        // A freed page keeps its content until reused: sharing it takes it off the free list.
        let c = blocks.share(&[2]);
        assert_eq!((blocks.refs(2), blocks.free_pages()), (1, 3));
        blocks.check_invariants([c.as_slice()]).unwrap();
    }

    #[test]
    fn invariants_catch_a_leak_and_a_double_count() {
        let mut blocks = BlockManager::new(3, 4);
        let mut a = Vec::new();
        assert!(blocks.grow(&mut a, 5));
        assert!(
            blocks.check_invariants([]).is_err(),
            "a's pages leak without its table"
        );
        let b = blocks.share(&a);
        assert!(blocks.check_invariants([a.as_slice()]).is_err());
        blocks
            .check_invariants([a.as_slice(), b.as_slice()])
            .unwrap();
    }
}
