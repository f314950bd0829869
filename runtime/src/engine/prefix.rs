//! The global prefix tree over the whole batch's prompts (BatchLLM), and the registry of
//! prefix pages whose K/V is in the cache right now.
//!
//! The tree is built once from every prompt, one node per full page of tokens (page
//! granularity is what the block tables can share). A request's *shared path* is its path
//! down to the deepest node another request also passes through; it never covers the
//! prompt's last token, which the request must compute itself to get its first logits.
//! The admission order walks the tree depth first, so requests sharing a prefix (at any
//! depth) are contiguous, and visits the more decode-heavy subtrees (higher
//! max_tokens / prompt length) first.

use std::collections::HashMap;

use super::plan::SeqId;
use super::request::Request;

#[derive(Default)]
struct Node {
    children: HashMap<Vec<u32>, usize>,
    /// Requests whose prompt passes through this node.
    users: usize,
    /// Requests whose shared path ends here.
    members: Vec<SeqId>,
}

pub struct PrefixTree {
    page_size: usize,
    nodes: Vec<Node>,
    /// Per request: the node ids of its shared path; node `paths[r][d]` is page `d`.
    paths: Vec<Vec<usize>>,
    order: Vec<SeqId>,
}

impl PrefixTree {
    pub fn new(requests: &[Request], page_size: usize) -> Self {
        let mut tree = PrefixTree {
            page_size,
            nodes: vec![Node::default()],
            paths: Vec::with_capacity(requests.len()),
            order: Vec::with_capacity(requests.len()),
        };
        for request in requests {
            let path = tree.insert(&request.prompt);
            tree.paths.push(path);
        }
        for (seq, path) in tree.paths.iter_mut().enumerate() {
            let shared = path.iter().rposition(|&n| tree.nodes[n].users >= 2);
            path.truncate(shared.map_or(0, |d| d + 1));
            let end = path.last().copied().unwrap_or(0);
            tree.nodes[end].members.push(seq);
        }
        let ratio: Vec<f64> = requests
            .iter()
            .map(|r| r.params.max_tokens as f64 / r.prompt.len().max(1) as f64)
            .collect();
        let mut best = vec![f64::NEG_INFINITY; tree.nodes.len()];
        tree.best_ratio(0, &ratio, &mut best);
        tree.visit(0, &ratio, &best);
        tree
    }

    /// Adds the full pages of `prompt` but the one holding its last token; returns its path.
    fn insert(&mut self, prompt: &[u32]) -> Vec<usize> {
        let pages = prompt.len().saturating_sub(1) / self.page_size;
        let mut node = 0;
        let mut path = Vec::with_capacity(pages);
        for page in prompt.chunks_exact(self.page_size).take(pages) {
            let next = self.nodes.len();
            node = *self.nodes[node]
                .children
                .entry(page.to_vec())
                .or_insert(next);
            if node == next {
                self.nodes.push(Node::default());
            }
            self.nodes[node].users += 1;
            path.push(node);
        }
        path
    }

    fn best_ratio(&self, node: usize, ratio: &[f64], best: &mut [f64]) -> f64 {
        let mut b = self.nodes[node]
            .members
            .iter()
            .map(|&r| ratio[r])
            .fold(f64::NEG_INFINITY, f64::max);
        for &child in self.nodes[node].children.values() {
            b = b.max(self.best_ratio(child, ratio, best));
        }
        best[node] = b;
        b
    }

    /// Appends the subtree's requests to `order`: members and child subtrees by decreasing
    /// (best) ratio, ties by request id.
    fn visit(&mut self, node: usize, ratio: &[f64], best: &[f64]) {
        enum Item {
            Member(SeqId),
            Child(usize),
        }
        let n = &self.nodes[node];
        let mut items: Vec<(f64, usize, Item)> = n
            .members
            .iter()
            .map(|&r| (ratio[r], r, Item::Member(r)))
            .collect();
        for &child in n
            .children
            .values()
            .filter(|&&c| best[c] > f64::NEG_INFINITY)
        {
            let first = self.first_member(child);
            items.push((best[child], first, Item::Child(child)));
        }
        items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, item) in items {
            match item {
                Item::Member(r) => self.order.push(r),
                Item::Child(c) => self.visit(c, ratio, best),
            }
        }
    }

    /// The lowest request id in a subtree (a deterministic tie-break between subtrees).
    fn first_member(&self, node: usize) -> usize {
        let n = &self.nodes[node];
        let below = n.children.values().map(|&c| self.first_member(c));
        n.members
            .iter()
            .copied()
            .chain(below)
            .min()
            .unwrap_or(usize::MAX)
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The node ids of request `seq`'s shared path (one per page).
    pub fn path(&self, seq: SeqId) -> &[usize] {
        &self.paths[seq]
    }

    /// Every request, sharers contiguous, decode-heavy first.
    pub fn order(&self) -> &[SeqId] {
        &self.order
    }

    /// Prompt tokens the batch need not compute if each shared page is computed once.
    pub fn potential_saving(&self) -> usize {
        let shared = self.nodes[1..].iter().filter(|n| n.users >= 2);
        shared.map(|n| (n.users - 1) * self.page_size).sum()
    }

    /// Nodes shared by two or more requests (the distinct shared pages).
    pub fn shared_pages(&self) -> usize {
        self.nodes[1..].iter().filter(|n| n.users >= 2).count()
    }
}

/// Which tree nodes have their K/V intact in a page, and which sequence computed it. A page
/// stays listed after it is freed, until it is allocated again: a freed prefix page can still
/// be shared by a request of its group admitted later (as nano-vllm's prefix cache does).
#[derive(Default)]
pub struct PrefixCache {
    page_of: HashMap<usize, (u32, SeqId)>,
    node_of: HashMap<u32, usize>,
}

impl PrefixCache {
    /// The pages of the leading nodes of `path` (stops at the first one not cached), each
    /// with the sequence that computed it.
    pub fn lookup(&self, path: &[usize]) -> Vec<(u32, SeqId)> {
        path.iter()
            .map_while(|n| self.page_of.get(n).copied())
            .collect()
    }

    /// Records that `page` now holds node `node`'s K/V, computed by `seq` (first one wins).
    pub fn register(&mut self, node: usize, page: u32, seq: SeqId) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.page_of.entry(node) {
            e.insert((page, seq));
            self.node_of.insert(page, node);
        }
    }

    /// Forgets pages allocated afresh (their K/V is about to be overwritten).
    pub fn forget(&mut self, reused: &[u32]) {
        for page in reused {
            if let Some(node) = self.node_of.remove(page) {
                self.page_of.remove(&node);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.page_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SamplingParams;

    fn req(prompt: Vec<u32>, max_tokens: usize) -> Request {
        let params = SamplingParams {
            max_tokens,
            ..Default::default()
        };
        Request { prompt, params }
    }

    #[test]
    fn nested_prefixes_give_longest_shared_paths_and_contiguous_order() {
        // Pages of 2 tokens. A and B share 3 pages; C shares 1 page with them; D shares none.
        let a = req(vec![1, 2, 3, 4, 5, 6, 7, 8, 9], 4);
        let b = req(vec![1, 2, 3, 4, 5, 6, 9, 9, 9], 4);
        let d = req(vec![5, 5, 5, 5, 5], 100);
        let c = req(vec![1, 2, 8, 8, 8, 8], 60);
        let tree = PrefixTree::new(&[a, b, d, c], 2);
        assert_eq!(tree.path(0).len(), 3);
        assert_eq!(tree.path(1), tree.path(0));
        assert_eq!(tree.path(2).len(), 0);
        assert_eq!(tree.path(3), &tree.path(0)[..1]);
        // Savings: page 1 used by 3 (saves 2 pages), pages 2 and 3 by 2 (1 page each).
        assert_eq!(tree.potential_saving(), 4 * 2);
        assert_eq!(tree.shared_pages(), 3);
        // D (ratio 20) first, then the {A, B, C} subtree: C (ratio 10) before A, B (4/9).
        assert_eq!(tree.order(), &[2, 3, 0, 1]);
    }

    #[test]
    fn the_last_prompt_token_is_never_shared() {
        // Identical page-aligned prompts: only the first page is shareable.
        let p = vec![7, 7, 7, 7];
        let tree = PrefixTree::new(&[req(p.clone(), 1), req(p, 1)], 2);
        assert_eq!(tree.path(0).len(), 1);
        assert_eq!(tree.potential_saving(), 2);
    }

    #[test]
    fn the_prefix_cache_stops_at_the_first_missing_page() {
        let mut cache = PrefixCache::default();
        cache.register(4, 10, 0);
        cache.register(5, 11, 0);
        cache.register(4, 12, 1);
        assert_eq!(cache.lookup(&[4, 5, 6]), vec![(10, 0), (11, 0)]);
        cache.forget(&[10]);
        assert_eq!(cache.lookup(&[4, 5]), vec![]);
        cache.forget(&[11]);
        assert!(cache.is_empty());
    }
}
