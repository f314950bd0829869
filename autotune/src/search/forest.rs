//! A small random forest regressor: bagged regression trees with best splits on a random subset
//! of features. It is the surrogate of [`super::SurrogateSearch`]: axis-aligned splits on value
//! indices capture the thresholds and interactions of tuning spaces (a tile too large for the
//! block, a block too large for the occupancy) that a smooth model blurs.

use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::Rng;

/// Samples as rows of `dims` features, flattened.
pub(super) struct Samples<'a> {
    pub x: &'a [f32],
    pub dims: usize,
    pub y: &'a [f64],
}

impl Samples<'_> {
    fn feature(&self, row: usize, f: usize) -> f32 {
        self.x[row * self.dims + f]
    }
}

#[derive(Clone, Copy, Debug)]
enum Node {
    Leaf(f64),
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
}

#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn predict(&self, row: &[f32]) -> f64 {
        let mut at = 0;
        loop {
            match self.nodes[at] {
                Node::Leaf(v) => return v,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if row[feature] <= threshold {
                        left
                    } else {
                        right
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
pub(super) struct Forest {
    trees: Vec<Tree>,
}

impl Forest {
    /// Fits `trees` trees, each on a bootstrap resample of `data`.
    pub fn fit(data: &Samples, trees: usize, rng: &mut SmallRng) -> Forest {
        let n = data.y.len();
        let per_split = data.dims.div_ceil(2).max(1);
        let trees = (0..trees)
            .map(|_| {
                let mut rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
                let mut builder = Builder {
                    data,
                    per_split,
                    rng,
                    nodes: Vec::new(),
                };
                builder.grow(&mut rows);
                Tree {
                    nodes: builder.nodes,
                }
            })
            .collect();
        Forest { trees }
    }

    /// The mean and the spread (standard deviation) of the trees' predictions for `row`.
    pub fn predict(&self, row: &[f32]) -> (f64, f64) {
        let k = self.trees.len() as f64;
        let (mut sum, mut sq) = (0.0, 0.0);
        for t in &self.trees {
            let v = t.predict(row);
            sum += v;
            sq += v * v;
        }
        let mean = sum / k;
        (mean, (sq / k - mean * mean).max(0.0).sqrt())
    }
}

struct Builder<'a, 'r> {
    data: &'a Samples<'a>,
    per_split: usize,
    rng: &'r mut SmallRng,
    nodes: Vec<Node>,
}

/// A candidate split: feature, threshold, and the gain in the sum of squares it explains.
struct Cut {
    feature: usize,
    threshold: f32,
    at: usize,
    score: f64,
}

impl Builder<'_, '_> {
    /// Grows the subtree of `rows` (reordered in place) and returns its node index.
    fn grow(&mut self, rows: &mut [usize]) -> usize {
        let at = self.nodes.len();
        let mean = rows.iter().map(|&r| self.data.y[r]).sum::<f64>() / rows.len() as f64;
        self.nodes.push(Node::Leaf(mean));
        let Some(cut) = self.best_cut(rows) else {
            return at;
        };
        rows.sort_unstable_by(|&a, &b| {
            let (fa, fb) = (self.feature(a, cut.feature), self.feature(b, cut.feature));
            fa.total_cmp(&fb)
        });
        let (lo, hi) = rows.split_at_mut(cut.at);
        let left = self.grow(lo);
        let right = self.grow(hi);
        self.nodes[at] = Node::Split {
            feature: cut.feature,
            threshold: cut.threshold,
            left,
            right,
        };
        at
    }

    fn feature(&self, row: usize, f: usize) -> f32 {
        self.data.feature(row, f)
    }

    /// The best split over a random subset of features; None if no split separates the rows.
    fn best_cut(&mut self, rows: &mut [usize]) -> Option<Cut> {
        if rows.len() < 2 {
            return None;
        }
        let features = sample(self.rng, self.data.dims, self.per_split);
        let mut best: Option<Cut> = None;
        for f in features {
            if let Some(cut) = self.cut_on(rows, f) {
                if best.as_ref().is_none_or(|b| cut.score > b.score) {
                    best = Some(cut);
                }
            }
        }
        best
    }

    /// The best split of `rows` on feature `f`: maximises sum_l²/n_l + sum_r²/n_r, which is
    /// minimising the children's squared error.
    fn cut_on(&self, rows: &mut [usize], f: usize) -> Option<Cut> {
        rows.sort_unstable_by(|&a, &b| self.feature(a, f).total_cmp(&self.feature(b, f)));
        let y = self.data.y;
        let total: f64 = rows.iter().map(|&r| y[r]).sum();
        let n = rows.len();
        let base = total * total / n as f64;
        let mut left = 0.0;
        let mut best: Option<Cut> = None;
        for i in 1..n {
            left += y[rows[i - 1]];
            let (a, b) = (self.feature(rows[i - 1], f), self.feature(rows[i], f));
            if a == b {
                continue;
            }
            let right = total - left;
            let score = left * left / i as f64 + right * right / (n - i) as f64;
            if score > base + 1e-12 && best.as_ref().is_none_or(|c| score > c.score) {
                best = Some(Cut {
                    feature: f,
                    threshold: (a + b) / 2.0,
                    at: i,
                    score: score - base,
                });
            }
        }
        best
    }
}
