//! The optimizers as library kernels: one description, [`Optim`], for the three LAMB stages
//! and AdamW. A problem's dims are the lengths of its tensors (tensor `k` is a bias/norm
//! weight, excluded from decay and adaptation, when `k % 3 == 2`); a LAMB case runs the
//! whole step with the checked kernel at the given config and the other two stages at their
//! defaults. The output is `w`, then `m`, then `v` after one step (step 3, a state with
//! non-zero moments); a zero weight tensor and a zero gradient tensor hit τ's edge cases.

use super::host::{
    adamw_reference, chunk_elems, lamb_reference, launch_adamw, launch_lamb, DeviceTables,
    HostState, Hyper, LambPlan, LambScratch, ParamTable, State,
};
use super::{adamw_step, lamb_apply, lamb_trust, lamb_update};
use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::collections::HashMap;
use warpforge_dsl::{Config, Device, Error, KernelDef};

/// LAMB's three stages, AdamW, then the clipping kernels.
pub fn kernels() -> Vec<Kernel> {
    [
        Kind::LambUpdate,
        Kind::LambTrust,
        Kind::LambApply,
        Kind::AdamW,
    ]
    .into_iter()
    .map(|kind| register(Optim { kind }))
    .chain(super::clip::kernels())
    .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LambUpdate,
    LambTrust,
    LambApply,
    AdamW,
}

struct Optim {
    kind: Kind,
}

/// The step every case takes.
fn hyper() -> Hyper {
    Hyper::lamb(0.01, 3)
}

/// The layout of a problem: tensor `k` excluded when `k % 3 == 2`.
fn table(problem: &Problem) -> ParamTable {
    let lens: Vec<(usize, bool)> = problem
        .dims
        .iter()
        .enumerate()
        .map(|(k, &len)| (len, k % 3 != 2))
        .collect();
    ParamTable::new(&lens).expect("check problems are small")
}

/// `w` in [−1, 1) (tensor 1 all zero), `g` in [−1, 1) (tensor 3 all zero), `m` in
/// [−0.1, 0.1), `v` in [0, 0.01).
fn inputs(problem: &Problem, table: &ParamTable) -> HostState {
    let mut rng = Lcg::for_dims(&problem.dims, 41);
    let mut gen =
        |zero: usize, r: f32| table.fill(|k, _| if k == zero { 0.0 } else { rng.float(r) });
    let w = gen(1, 1.0);
    let grad = gen(3, 1.0);
    let m = gen(usize::MAX, 0.1);
    let v: Vec<f32> = gen(usize::MAX, 0.01).iter().map(|x| x.abs()).collect();
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect();
    HostState {
        w: wide(&w),
        grad: wide(&grad),
        m: wide(&m),
        v: wide(&v),
    }
}

impl LibraryKernel for Optim {
    fn def(&self) -> &'static KernelDef {
        match self.kind {
            Kind::LambUpdate => lamb_update::def(),
            Kind::LambTrust => lamb_trust::def(),
            Kind::LambApply => lamb_apply::def(),
            Kind::AdamW => adamw_step::def(),
        }
    }

    fn summary(&self) -> &'static str {
        match self.kind {
            Kind::LambUpdate => {
                "LAMB stage 1: Adam moments, update direction, per-chunk norms (multi-tensor)"
            }
            Kind::LambTrust => "LAMB stage 2: per-tensor trust ratio ‖w‖/‖u‖ from the chunk norms",
            Kind::LambApply => "LAMB stage 3: w −= lr·τ·u (multi-tensor)",
            Kind::AdamW => "AdamW step, f32 moments, multi-tensor with per-tensor decay flags",
        }
    }

    /// One element, ragged lengths, an excluded tensor, a zero-weight and a zero-gradient
    /// tensor, and a tensor longer than the largest chunk (8192).
    fn problems(&self) -> Vec<Problem> {
        let lists: [&[usize]; 4] = [&[1], &[7, 3, 5], &[64, 13, 2500, 8, 700], &[9001, 40, 6]];
        lists
            .iter()
            .map(|dims| {
                let name = dims
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("+");
                Problem::new(name, dims.to_vec())
            })
            .collect()
    }

    fn rank(&self) -> usize {
        1
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        if problem.dims.is_empty() || problem.dims.contains(&0) {
            return Err(format!(
                "{} takes the tensor lengths (at least one, each positive), got {:?}",
                self.def().name,
                problem.dims
            ));
        }
        let lens: Vec<(usize, bool)> = problem.dims.iter().map(|&d| (d, true)).collect();
        ParamTable::new(&lens)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let table = table(problem);
        let start = inputs(problem, &table);
        let state = upload(device, &start)?;
        Ok(Box::new(OptimCase {
            kind: self.kind,
            table,
            start,
            state,
            tables: HashMap::new(),
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let table = table(problem);
        let mut s = inputs(problem, &table);
        match self.kind {
            Kind::AdamW => adamw_reference(&table, &mut s, &hyper()),
            _ => {
                lamb_reference(&table, &mut s, &hyper());
            }
        }
        [s.w, s.m, s.v].concat().iter().map(|&x| x as f32).collect()
    }

    /// Relative to max(1, |expected|), u = 2^-24: each element's update is a dozen f32
    /// operations (`sqrt`, two divisions, the moments' products and sums): 32 u. LAMB's
    /// norms add a tensor's `len` squares (a thread sums `VECS·4`, then shuffle, shared
    /// and chunk trees): `(len/64 + 64)·u` relative on τ, which moves `w` by that times
    /// `lr·τ·|u| ≤ |w|`-sized steps.
    fn tolerance(&self, problem: &Problem) -> f64 {
        let u = f64::from(f32::EPSILON) / 2.0;
        let longest = problem.dims.iter().copied().max().unwrap_or(1) as f64;
        match self.kind {
            Kind::AdamW => 32.0 * u,
            _ => (longest / 64.0 + 96.0) * u,
        }
    }

    /// LAMB configs change the order of the norms' sums; AdamW's elements are independent.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        match self.kind {
            Kind::AdamW => Tolerance::EXACT,
            _ => {
                let t = 2.0 * self.tolerance(problem);
                Tolerance { rel: t, abs: t }
            }
        }
    }

    /// Per parameter: AdamW 28 bytes, LAMB 40 (see [`super`]); the stage alone otherwise.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let n: usize = problem.dims.iter().map(|d| d.div_ceil(4) * 4).sum();
        let per = match self.kind {
            Kind::AdamW => 28,
            Kind::LambUpdate => 28,
            Kind::LambTrust => 0,
            Kind::LambApply => 12,
        };
        Some((n * per) as u64)
    }

    /// One decoder layer's tensors (the matrices, then the two norm weights, excluded).
    fn model_problems(&self, model: &ModelShape, _tokens: &[usize]) -> Vec<Problem> {
        let (h, q, kv, i) = (
            model.hidden,
            model.q_width(),
            model.kv_width(),
            model.intermediate,
        );
        let dims = vec![q * h, kv * h, kv * h, h * q, i * h, i * h, h * i, h, h];
        vec![Problem::new("layer", dims)]
    }

    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        vec![problem.dims.len(), problem.dims.iter().sum()]
    }
}

fn upload(device: &Device, s: &HostState) -> Result<State, Error> {
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    Ok(State {
        w: device.upload(&narrow(&s.w))?,
        grad: device.upload(&narrow(&s.grad))?,
        m: device.upload(&narrow(&s.m))?,
        v: device.upload(&narrow(&s.v))?,
    })
}

struct OptimCase {
    kind: Kind,
    table: ParamTable,
    start: HostState,
    state: State,
    /// Device tables by chunk size, built once per size.
    tables: HashMap<usize, DeviceTables>,
}

impl OptimCase {
    fn ensure_tables(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let size = chunk_elems(config);
        if !self.tables.contains_key(&size) {
            let t = DeviceTables::upload(device, &self.table, config)?;
            self.tables.insert(size, t);
        }
        Ok(())
    }
}

impl Case for OptimCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        if self.kind == Kind::AdamW {
            self.ensure_tables(device, config)?;
            let tables = &self.tables[&chunk_elems(config)];
            return launch_adamw(device, config, &mut self.state, tables, &hyper());
        }
        let pick = |kind: Kind, def: fn() -> &'static KernelDef| {
            if kind == self.kind {
                config.clone()
            } else {
                def().space.default_config()
            }
        };
        let update = pick(Kind::LambUpdate, lamb_update::def);
        let trust = pick(Kind::LambTrust, lamb_trust::def);
        let apply = pick(Kind::LambApply, lamb_apply::def);
        self.ensure_tables(device, &update)?;
        self.ensure_tables(device, &apply)?;
        let update_tables = &self.tables[&chunk_elems(&update)];
        let mut scratch = LambScratch::new(device, update_tables)?;
        let plan = LambPlan {
            update: (&update, update_tables),
            trust: &trust,
            apply: (&apply, &self.tables[&chunk_elems(&apply)]),
        };
        launch_lamb(device, &plan, &mut self.state, &mut scratch, &hyper())
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = device.download(&self.state.w)?;
        out.extend(device.download(&self.state.m)?);
        out.extend(device.download(&self.state.v)?);
        Ok(out)
    }

    /// The step updates weights and moments (and LAMB the gradient) in place.
    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.state = upload(device, &self.start)?;
        Ok(())
    }
}
