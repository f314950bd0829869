//! The model's features of every config of a space, computed once per search: per parameter,
//! its value's rank and power-of-two alignment; per [`Resource`] of the space (a compile
//! statistic), its value scaled to [0, 1]; per source of a [`Prior`], the config's rank on that
//! other device.

use super::{Prior, Resource, SearchSpace};

/// A feature table: `dims` features per config id, flattened.
pub(super) struct Features {
    table: Vec<f32>,
    dims: usize,
}

impl Features {
    pub fn new(space: &SearchSpace, prior: Option<&Prior>) -> Features {
        let columns: Vec<Column> = space
            .params()
            .iter()
            .enumerate()
            .flat_map(|(i, p)| Column::of(i, &p.values))
            .collect();
        let mut per_config: Vec<Vec<f32>> = space.resources().iter().filter_map(scaled).collect();
        per_config.extend(prior.map_or(Vec::new(), |p| p.rank_columns()));
        let dims = columns.len() + per_config.len();
        let mut table = Vec::with_capacity(space.len() * dims);
        for (id, point) in space.points().iter().enumerate() {
            table.extend(columns.iter().map(|c| c.table[usize::from(point[c.param])]));
            table.extend(per_config.iter().map(|s| s[id]));
        }
        Features { table, dims }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn row(&self, id: usize) -> &[f32] {
        &self.table[id * self.dims..(id + 1) * self.dims]
    }
}

/// One feature of a parameter: a function of its value index, as a table.
struct Column {
    param: usize,
    table: Vec<f32>,
}

impl Column {
    /// The features of a parameter: its value's rank, scaled to [0, 1], and its power-of-two
    /// alignment (trailing zero bits), because GPU kernels often care whether a size is a
    /// multiple of a warp or a bank count more than how large it is: 64 and 128 threads in y
    /// may be fast while 72 and 120 between them are slow. A parameter with one value gives none.
    fn of(param: usize, values: &[i64]) -> Vec<Column> {
        let len = values.len();
        if len < 2 {
            return Vec::new();
        }
        let rank = (0..len).map(|i| i as f32 / (len - 1) as f32).collect();
        let mut out = vec![Column { param, table: rank }];
        if values.iter().all(|&v| v > 0) {
            let zeros: Vec<u32> = values.iter().map(|v| v.trailing_zeros().min(16)).collect();
            let most = zeros.iter().copied().max().unwrap_or(0);
            if zeros.iter().any(|&z| z != most) {
                let table = zeros.iter().map(|&z| z as f32 / most as f32).collect();
                out.push(Column { param, table });
            }
        }
        out
    }
}

/// A resource's values scaled to [0, 1] over the space; None for one with a single value (it
/// tells the configs apart in nothing). The forest splits on order only, so a linear scale
/// loses nothing.
fn scaled(resource: &Resource) -> Option<Vec<f32>> {
    let values = &resource.values;
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (hi > lo).then(|| {
        values
            .iter()
            .map(|v| ((v - lo) / (hi - lo)) as f32)
            .collect()
    })
}
