//! Bayesian optimisation with a Gaussian process whose kernel is additive over the parameters
//! and their pairs, with a product term: the model for spaces whose optimum is an interaction
//! of several parameters (CLBlast's GEMM: six parameters must be right at once).
//!
//! - *Encoding*: per parameter of two or more values, its value on a log2 scale (a linear one
//!   for parameters with a value ≤ 0 or only two values) mapped to [0, 1], and, where the
//!   values are not all powers of two, their power-of-two alignment (trailing zero bits over
//!   the most): 64 and 128 threads may be fast where 72 and 120 are not. The space's compile
//!   statistics, when it has them ([`Resource`]: registers, shared memory, occupancy), are
//!   columns too, scaled linearly.
//! - *Kernel*: per column a squared exponential `k_c` of length scale ℓ; the kernel is
//!   `(S1 + ½(S1² − S2)) / (d + d(d−1)/2)` (S1 = Σ k_c, S2 = Σ k_c²: every column and every
//!   pair of columns, each a kernel of its own), blended with the product of all `k_c` (a full
//!   interaction) at weight [`PRODUCT_WEIGHT`]. Its value at distance zero is 1, so the model's
//!   prior variance is 1 and its noise is relative.
//! - *Targets*: log time, failed configs above the slowest seen, then as normal scores of
//!   their ranks (outliers do not stretch the scale), standardized.
//! - *Fit*: ℓ and the noise are chosen from a grid ([`LENGTH_SCALES`] × [`NOISES`]) by the
//!   log marginal likelihood, at [`INITIAL`] evaluations and then every [`REFIT`], or a fifth
//!   of the evaluations when that is more (so long runs refit rarely); between fits the
//!   factor grows by a row per evaluation.
//! - *Acquisition*: the untried config of lowest `mean − KAPPA·sd` among [`POOL`] random
//!   untried configs (all of them in a smaller space); past [`FULL_POOL_UNTIL`] evaluations
//!   the pool shrinks with the square of the evaluations, which bounds a step's cost (a
//!   candidate's variance costs a triangular solve over every evaluation). Past
//!   [`MODEL_LIMIT`] evaluations the model is frozen: the remaining configs follow in the order
//!   of its bound over all of them.
//!
//! The first [`INITIAL`] evaluations are uniformly random. The constants are the same for every
//! space; they were chosen on the spaces of `shared/tuning-spaces` and
//! `shared/tuning-spaces-next` (docs/architecture.md has the measurements).

use std::sync::Arc;

use rand::rngs::SmallRng;

use super::{random_untried, seeded, History, Outcome, Prior, Resource, SearchSpace, Strategy};

/// Evaluations before the model steers (uniformly random ones).
const INITIAL: usize = 10;
/// Evaluations between fits, at least (and a fifth of the evaluations, once more).
const REFIT: usize = 10;
/// Length scales the fit chooses from (on the [0, 1] encoding).
const LENGTH_SCALES: [f64; 4] = [0.3, 0.45, 0.6, 0.9];
/// Noise variances (relative to the prior's) the fit chooses from.
const NOISES: [f64; 2] = [0.01, 0.05];
/// Weight of the all-column product kernel against the additive one.
const PRODUCT_WEIGHT: f64 = 0.5;
/// Weight of the standard deviation in the lower confidence bound.
const KAPPA: f64 = 4.0;
/// Random untried configs scored per proposal.
const POOL: usize = 4000;
/// Evaluations up to which the pool is whole; past them it shrinks as 1/n².
const FULL_POOL_UNTIL: usize = 100;
/// The fewest configs scored per proposal.
const MIN_POOL: usize = 64;
/// Evaluations the model is fitted to, at most: past them the remaining configs are proposed
/// in the order of the last model's bound (a GP's cost grows with the cube of its data, and
/// budgets beyond this are rare).
const MODEL_LIMIT: usize = 400;

/// The most distinct values of a compile statistic's column (its kernel table is their square).
const RESOURCE_LEVELS: usize = 256;
/// With a prior: the sources' fastest configs evaluated first.
const WARM_START: usize = 8;

/// The strategy (`gp`).
pub struct GpSearch {
    rng: SmallRng,
    prior: Option<Arc<Prior>>,
    /// The warm-start proposals from the prior not yet handed out, the next last.
    warm: Option<Vec<usize>>,
    encoding: Option<Encoding>,
    /// The factor of the fitted hyperparameters, grown by a row per evaluation.
    factor: Option<Cholesky>,
    /// The evaluations at the last fit.
    fitted_at: usize,
    /// Past [`MODEL_LIMIT`]: the untried configs by the last model's bound, the next last.
    frozen: Option<Vec<usize>>,
}

impl GpSearch {
    pub fn new(seed: u64) -> GpSearch {
        GpSearch::with_prior(seed, None)
    }

    /// A search that first evaluates the fastest configs of `prior`'s sources (the same
    /// kernel on other devices), round-robin by rank, when given.
    pub fn with_prior(seed: u64, prior: Option<Arc<Prior>>) -> GpSearch {
        GpSearch {
            rng: seeded(seed),
            prior,
            warm: None,
            encoding: None,
            factor: None,
            fitted_at: 0,
            frozen: None,
        }
    }
}

impl Strategy for GpSearch {
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        let prior = self.prior.as_deref();
        let warm = self.warm.get_or_insert_with(|| {
            let mut first = prior.map_or(Vec::new(), |p| p.round_robin(WARM_START));
            first.reverse();
            first
        });
        while let Some(id) = warm.pop() {
            if !history.tried(id) {
                return Some(id);
            }
        }
        let encoding = self.encoding.get_or_insert_with(|| Encoding::new(space));
        let modelled = history.len() >= INITIAL && !encoding.columns.is_empty();
        let (factor, fitted_at) = (&mut self.factor, &mut self.fitted_at);
        let pick = if !modelled {
            None
        } else if history.len() >= MODEL_LIMIT {
            let order = self.frozen.get_or_insert_with(|| {
                let mut all = ranked(encoding, factor, fitted_at, history, None);
                all.reverse();
                all
            });
            std::iter::from_fn(|| order.pop()).find(|&id| !history.tried(id))
        } else {
            let pool = Some((pool_size(history.len()), &mut self.rng));
            ranked(encoding, factor, fitted_at, history, pool)
                .first()
                .copied()
        };
        // Before the model, or where it cannot be factored: uniformly random.
        pick.or_else(|| random_untried(history, &mut self.rng))
    }

    fn describe(&self) -> Option<String> {
        self.said()
    }
}

/// Untried configs by the model's lower bound, lowest first: a random pool of the given size
/// (drawn with the given generator), or all of them without one; refits the hyperparameters
/// when due. Empty if the kernel matrix is not positive definite.
fn ranked(
    encoding: &Encoding,
    factor: &mut Option<Cholesky>,
    fitted_at: &mut usize,
    history: &History,
    pool: Option<(usize, &mut SmallRng)>,
) -> Vec<usize> {
    let tried: Vec<usize> = history.trials().iter().map(|t| t.0).collect();
    let z = normal_scores(&log_targets(history));
    let n = tried.len();
    if factor.is_none() || n - *fitted_at >= REFIT.max(*fitted_at / 5) {
        let (ls, noise) = encoding.fit(&tried, &z);
        *factor = Cholesky::new(encoding, ls, noise, &tried);
        *fitted_at = n;
    }
    let Some(current) = factor.as_mut() else {
        return Vec::new();
    };
    if current.extend(encoding, &tried).is_none() {
        // Reordered history: the same hyperparameters, factored anew.
        *factor = Cholesky::new(encoding, current.ls, current.noise, &tried);
    }
    let Some(current) = factor.as_ref() else {
        return Vec::new();
    };
    let model = Model::new(encoding, current, &tried, &z);
    let candidates = match pool {
        Some((size, rng)) => untried_pool(history, size, rng),
        None => (0..history.outcomes.len())
            .filter(|&id| !history.tried(id))
            .collect(),
    };
    let mut scored: Vec<(usize, f64)> = candidates
        .into_iter()
        .map(|id| (id, model.lower_bound(id)))
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    scored.into_iter().map(|(id, _)| id).collect()
}

impl GpSearch {
    /// What the search takes from its prior, for the user.
    fn said(&self) -> Option<String> {
        let prior = self.prior.as_ref()?;
        let names: Vec<&str> = prior.sources().iter().map(|s| s.name.as_str()).collect();
        Some(format!(
            "transfer from {} other device(s) ({}): their fastest configs first",
            names.len(),
            names.join(", ")
        ))
    }
}

/// Configs scored per proposal after `n` evaluations.
fn pool_size(n: usize) -> usize {
    if n <= FULL_POOL_UNTIL {
        return POOL;
    }
    let shrink = (FULL_POOL_UNTIL as f64 / n as f64).powi(2);
    ((POOL as f64 * shrink) as usize).max(MIN_POOL)
}

/// Up to `size` distinct untried ids, uniformly; every untried id when there are not more.
fn untried_pool(history: &History, size: usize, rng: &mut SmallRng) -> Vec<usize> {
    let untried = history.outcomes.len() - history.len();
    if untried <= size.saturating_mul(2) {
        let all: Vec<usize> = (0..history.outcomes.len())
            .filter(|&id| !history.tried(id))
            .collect();
        if all.len() <= size {
            return all;
        }
        let picked = rand::seq::index::sample(rng, all.len(), size);
        return picked.into_iter().map(|i| all[i]).collect();
    }
    let mut seen = std::collections::HashSet::with_capacity(size);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let id = rand::Rng::random_range(rng, 0..history.outcomes.len());
        if !history.tried(id) && seen.insert(id) {
            out.push(id);
        }
    }
    out
}

/// Log time per evaluation, in history order; a failure counts as slower than the slowest
/// (by half the spread seen, at least 0.1), all zero when nothing ran.
fn log_targets(history: &History) -> Vec<f64> {
    let logs: Vec<Option<f64>> = history
        .trials()
        .iter()
        .map(|(_, o)| match o {
            Outcome::Time(t) => Some(t.ln()),
            Outcome::Failed => None,
        })
        .collect();
    let known = logs.iter().flatten();
    let worst = known.clone().copied().fold(f64::NEG_INFINITY, f64::max);
    let best = known.copied().fold(f64::INFINITY, f64::min);
    if !worst.is_finite() {
        return vec![0.0; logs.len()];
    }
    let failed = worst + 0.5 * (worst - best).max(0.1);
    logs.iter().map(|l| l.unwrap_or(failed)).collect()
}

/// The values replaced by the normal quantiles of their ranks (ties share their mean rank),
/// then standardized to mean 0 and deviation 1.
fn normal_scores(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean_rank;
        }
        i = j + 1;
    }
    let scores: Vec<f64> = ranks
        .iter()
        .map(|r| normal_quantile((r - 0.5) / n as f64))
        .collect();
    let mean = scores.iter().sum::<f64>() / n as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
    let sd = var.sqrt() + 1e-9;
    scores.iter().map(|s| (s - mean) / sd).collect()
}

/// The standard normal distribution's quantile function (Acklam's rational approximation,
/// relative error below 1.2e-9; ample for ranking).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The configs as kernel inputs: per column, each config's value index, and per length scale
/// the column's kernel between every two of its values.
struct Encoding {
    columns: Vec<Column>,
}

struct Column {
    /// Per config id, the index into `values`.
    code: Vec<u16>,
    /// Per length scale of [`LENGTH_SCALES`], `k(a, b)` at `a * len + b`.
    tables: Vec<Vec<f64>>,
    len: usize,
}

impl Encoding {
    fn new(space: &SearchSpace) -> Encoding {
        let mut columns = Vec::new();
        for (p, param) in space.params().iter().enumerate() {
            if param.values.len() < 2 {
                continue;
            }
            let code: Vec<u16> = space.points().iter().map(|pt| pt[p]).collect();
            columns.push(Column::new(code.clone(), &scaled_values(&param.values)));
            if let Some(alignment) = alignment(&param.values) {
                columns.push(Column::new(code, &alignment));
            }
        }
        columns.extend(space.resources().iter().filter_map(Column::of_resource));
        Encoding { columns }
    }

    /// The kernel between configs `a` and `b` at length scale index `ls`.
    fn k(&self, ls: usize, a: usize, b: usize) -> f64 {
        let (mut s1, mut s2, mut product) = (0.0, 0.0, 1.0);
        for c in &self.columns {
            let k = c.tables[ls][usize::from(c.code[a]) * c.len + usize::from(c.code[b])];
            s1 += k;
            s2 += k * k;
            product *= k;
        }
        let d = self.columns.len() as f64;
        let additive = (s1 + 0.5 * (s1 * s1 - s2)) / (d + d * (d - 1.0) / 2.0);
        (additive + PRODUCT_WEIGHT * product) / (1.0 + PRODUCT_WEIGHT)
    }

    /// The (length scale index, noise) of the grid with the highest marginal likelihood.
    fn fit(&self, tried: &[usize], z: &[f64]) -> (usize, f64) {
        let mut best = (0, NOISES[0], f64::INFINITY);
        for ls in 0..LENGTH_SCALES.len() {
            for &noise in &NOISES {
                let nlml = Cholesky::new(self, ls, noise, tried)
                    .map_or(f64::INFINITY, |c| c.negative_log_likelihood(z));
                if nlml < best.2 {
                    best = (ls, noise, nlml);
                }
            }
        }
        (best.0, best.1)
    }
}

impl Column {
    /// A compile statistic's column: its distinct values (at most [`RESOURCE_LEVELS`], by
    /// quantile where there are more) scaled linearly to [0, 1]; None for a constant one.
    fn of_resource(resource: &Resource) -> Option<Column> {
        let mut distinct = resource.values.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if distinct.len() < 2 {
            return None;
        }
        if distinct.len() > RESOURCE_LEVELS {
            let last = distinct.len() - 1;
            distinct = (0..RESOURCE_LEVELS)
                .map(|i| distinct[i * last / (RESOURCE_LEVELS - 1)])
                .collect();
        }
        let code = resource
            .values
            .iter()
            .map(|v| {
                let i = distinct.partition_point(|d| d < v);
                i.min(distinct.len() - 1) as u16
            })
            .collect();
        let (lo, hi) = (distinct[0], distinct[distinct.len() - 1]);
        let scaled: Vec<f64> = distinct.iter().map(|d| (d - lo) / (hi - lo)).collect();
        Some(Column::new(code, &scaled))
    }

    fn new(code: Vec<u16>, values: &[f64]) -> Column {
        let len = values.len();
        let tables = LENGTH_SCALES
            .iter()
            .map(|ls| {
                let mut t = vec![0.0; len * len];
                for a in 0..len {
                    for b in 0..len {
                        t[a * len + b] = (-0.5 * ((values[a] - values[b]) / ls).powi(2)).exp();
                    }
                }
                t
            })
            .collect();
        Column { code, tables, len }
    }
}

/// A parameter's values mapped to [0, 1]: on a log2 scale when all are positive and there are
/// more than two, else linearly.
fn scaled_values(values: &[i64]) -> Vec<f64> {
    let log = values.len() > 2 && values.iter().all(|&v| v > 0);
    let f: Vec<f64> = values
        .iter()
        .map(|&v| if log { (v as f64).log2() } else { v as f64 })
        .collect();
    let lo = f.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    f.iter().map(|v| (v - lo) / span).collect()
}

/// Trailing zero bits over the most, for positive values not all powers of two whose
/// alignments differ; None otherwise.
fn alignment(values: &[i64]) -> Option<Vec<f64>> {
    if values.iter().any(|&v| v <= 0) || values.iter().all(|&v| v.count_ones() == 1) {
        return None;
    }
    let zeros: Vec<u32> = values.iter().map(|v| v.trailing_zeros().min(16)).collect();
    let most = zeros.iter().copied().max()?;
    let least = zeros.iter().copied().min()?;
    (most > least).then(|| {
        zeros
            .iter()
            .map(|&z| f64::from(z) / f64::from(most))
            .collect()
    })
}

/// The lower-triangular Cholesky factor of `K + noise·I` over a growing list of configs,
/// rows packed (row `i` starts at `i(i+1)/2`), so that a new evaluation adds one row.
struct Cholesky {
    l: Vec<f64>,
    /// The configs factored, in row order.
    ids: Vec<usize>,
    n: usize,
    ls: usize,
    noise: f64,
}

impl Cholesky {
    /// The factor over `tried`, or None if the matrix is not positive definite.
    fn new(encoding: &Encoding, ls: usize, noise: f64, tried: &[usize]) -> Option<Cholesky> {
        let mut c = Cholesky {
            l: Vec::new(),
            ids: Vec::new(),
            n: 0,
            ls,
            noise,
        };
        c.extend(encoding, tried)?;
        Some(c)
    }

    /// Adds the rows of `tried[self.n..]`; None if the matrix is not positive definite or
    /// `tried` does not start with the configs factored (a driver that lists the history in
    /// another order than it grew), which needs a new factor.
    fn extend(&mut self, encoding: &Encoding, tried: &[usize]) -> Option<()> {
        if !tried.starts_with(&self.ids) {
            return None;
        }
        for i in self.n..tried.len() {
            let mut row: Vec<f64> = tried[..i]
                .iter()
                .map(|&t| encoding.k(self.ls, t, tried[i]))
                .collect();
            self.forward(&mut row);
            let diagonal = 1.0 + self.noise - dot(&row, &row);
            if diagonal <= 0.0 {
                return None;
            }
            self.l.extend(row);
            self.l.push(diagonal.sqrt());
            self.ids.push(tried[i]);
            self.n += 1;
        }
        Some(())
    }

    fn row(&self, i: usize) -> &[f64] {
        let start = i * (i + 1) / 2;
        &self.l[start..=start + i]
    }

    /// Solves L x = b in place (b's length is the factor's size).
    fn forward(&self, b: &mut [f64]) {
        for i in 0..b.len() {
            let row = self.row(i);
            b[i] = (b[i] - dot(&row[..i], &b[..i])) / row[i];
        }
    }

    /// Solves Lᵀ x = b in place.
    fn backward(&self, b: &mut [f64]) {
        for i in (0..self.n).rev() {
            b[i] /= self.row(i)[i];
            let bi = b[i];
            for (j, lij) in self.row(i)[..i].iter().enumerate() {
                b[j] -= lij * bi;
            }
        }
    }

    /// (K + noise·I)⁻¹ z.
    fn solve(&self, z: &[f64]) -> Vec<f64> {
        let mut x = z.to_vec();
        self.forward(&mut x);
        self.backward(&mut x);
        x
    }

    /// The negative log marginal likelihood of `z`, with the signal variance profiled out
    /// (set to its maximum-likelihood value), up to a constant.
    fn negative_log_likelihood(&self, z: &[f64]) -> f64 {
        let alpha = self.solve(z);
        let n = self.n as f64;
        let signal = dot(z, &alpha) / n;
        let log_det: f64 = (0..self.n).map(|i| self.row(i)[i].ln()).sum();
        0.5 * n * signal.max(1e-300).ln() + log_det
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The fitted model: the factor and the weights of the tried configs.
struct Model<'a> {
    encoding: &'a Encoding,
    tried: &'a [usize],
    cholesky: &'a Cholesky,
    alpha: Vec<f64>,
}

impl<'a> Model<'a> {
    fn new(
        encoding: &'a Encoding,
        cholesky: &'a Cholesky,
        tried: &'a [usize],
        z: &[f64],
    ) -> Model<'a> {
        Model {
            encoding,
            tried,
            cholesky,
            alpha: cholesky.solve(z),
        }
    }

    /// `mean − KAPPA·sd` of config `id`.
    fn lower_bound(&self, id: usize) -> f64 {
        let ls = self.cholesky.ls;
        let mut k: Vec<f64> = self
            .tried
            .iter()
            .map(|&t| self.encoding.k(ls, t, id))
            .collect();
        let mean = dot(&k, &self.alpha);
        self.cholesky.forward(&mut k);
        let var = (1.0 - dot(&k, &k)).max(1e-12);
        mean - KAPPA * var.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_the_table() {
        for (p, q) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (0.01, -2.326_347_874),
            (0.001, -3.090_232_306),
            (0.2, -0.841_621_234),
        ] {
            assert!(
                (normal_quantile(p) - q).abs() < 1e-6,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn normal_scores_share_ties_and_are_standardized() {
        let z = normal_scores(&[3.0, 1.0, 2.0, 2.0]);
        assert!(z[1] < z[2] && z[2] == z[3] && z[3] < z[0], "{z:?}");
        let mean: f64 = z.iter().sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12);
    }

    #[test]
    fn the_kernel_is_one_at_zero_distance_and_falls_with_it() {
        use super::super::SearchParam;
        let params = vec![
            SearchParam {
                name: "a".into(),
                values: vec![1, 2, 4, 8],
            },
            SearchParam {
                name: "b".into(),
                values: vec![16, 24, 32],
            },
        ];
        let points = (0..4u16).flat_map(|a| (0..3u16).map(move |b| vec![a, b].into_boxed_slice()));
        let space = SearchSpace::new(params, points).unwrap();
        let e = Encoding::new(&space);
        assert_eq!(
            e.columns.len(),
            3,
            "a, b, and b's alignment (24 is not a power of two)"
        );
        for ls in 0..LENGTH_SCALES.len() {
            assert!((e.k(ls, 5, 5) - 1.0).abs() < 1e-12);
            let near = e.k(ls, 0, 3); // a 1 → 2
            let far = e.k(ls, 0, 9); // a 1 → 8
            assert!(far < near && near < 1.0, "{far} {near}");
        }
    }

    #[test]
    fn the_pool_shrinks_past_a_hundred_evaluations() {
        assert_eq!(pool_size(50), POOL);
        assert_eq!(pool_size(200), POOL / 4);
        assert_eq!(pool_size(100_000), MIN_POOL);
    }
}
