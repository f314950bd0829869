//! `rope_{f32,f16,bf16}` and `rope_bwd_{f32,f16,bf16}` as library kernels (one description,
//! the direction a field).
//!
//! A problem encodes a packed batch: `[q_heads, k_heads, head_dim, rotary_dim, scaling,
//! start, sequences, lens..]` (`scaling` 0 = default θ = 10000, 1 = linear ×4, 2 = Llama 3
//! (θ = 500000, factor 8, low 1, high 4, original 8192); sequence `b`'s positions run
//! `b·start .. b·start + len_b`, so prompts restart, and a nonzero `start` puts later
//! prompts at long positions). The output compared is Q, then K, rotated, as f32s; the table
//! covers exactly the positions used. The backward rotates the same inputs, read as dQ
//! and dK, by −θ.

use super::backward::{launch_rope_bwd, reference_bwd};
use super::host::{launch_rope, reference, RopeFloat, RopeShape};
use super::scaling::{Rope, RopeScaling};
use crate::check::Problem;
use crate::family::{download_f32, register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// `rope_f32`, `rope_f16`, `rope_bf16`, then `rope_bwd_{f32,f16,bf16}`.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for backward in [false, true] {
        out.push(register(RopeKernel::<f32>(backward, PhantomData)));
        out.push(register(RopeKernel::<f16>(backward, PhantomData)));
        out.push(register(RopeKernel::<bf16>(backward, PhantomData)));
    }
    out
}

/// The forward (`false`) or backward (`true`) instance for `T`.
struct RopeKernel<T>(bool, PhantomData<fn() -> T>);

/// A decoded problem.
pub(crate) struct RopeProblem {
    pub shape: RopeShape,
    pub rope: Rope,
    pub positions: Vec<u32>,
}

/// The RoPE of scaling code `code` at `rotary_dim` (see the module doc).
pub(crate) fn test_rope(code: usize, rotary_dim: usize) -> Rope {
    let plain = |scaling| Rope {
        theta: 10000.0,
        rotary_dim,
        scaling,
    };
    match code {
        0 => plain(RopeScaling::Default),
        1 => plain(RopeScaling::Linear { factor: 4.0 }),
        _ => Rope::llama3_1(rotary_dim),
    }
}

pub(crate) fn encode(
    (q_heads, k_heads, head_dim, rotary_dim): (usize, usize, usize, usize),
    (scaling, start): (usize, usize),
    lens: &[usize],
) -> Problem {
    let name =
        format!("h{q_heads}/{k_heads}-d{head_dim}-r{rotary_dim}-s{scaling}-p{start}-{lens:?}")
            .replace(' ', "");
    let mut dims = vec![
        q_heads,
        k_heads,
        head_dim,
        rotary_dim,
        scaling,
        start,
        lens.len(),
    ];
    dims.extend(lens);
    Problem::new(name, dims)
}

pub(crate) fn decode(problem: &Problem) -> Result<RopeProblem, String> {
    let d = &problem.dims;
    if d.len() < 7 || d.len() != 7 + d[6] {
        return Err(format!(
            "a RoPE problem is [q_heads, k_heads, head_dim, rotary_dim, scaling, start, \
             sequences, lens..], got {d:?}"
        ));
    }
    if d[4] > 2 {
        return Err(format!("scaling code {} is not 0, 1 or 2", d[4]));
    }
    let lens = d[7..].to_vec();
    let positions: Vec<u32> = lens
        .iter()
        .enumerate()
        .flat_map(|(b, &n)| (0..n).map(move |i| (b * d[5] + i) as u32))
        .collect();
    let shape = RopeShape {
        tokens: positions.len(),
        q_heads: d[0],
        k_heads: d[1],
        head_dim: d[2],
        rotary_dim: d[3],
        table_rows: positions.iter().map(|&p| p as usize + 1).max().unwrap_or(1),
    };
    shape.check()?;
    Ok(RopeProblem {
        shape,
        rope: test_rope(d[4], d[3]),
        positions,
    })
}

/// Q and K (`[tokens, heads, head_dim]`), uniform in [-2, 2) rounded to T.
fn inputs<T: RopeFloat>(problem: &Problem, p: &RopeProblem) -> (Vec<T>, Vec<T>) {
    let s = &p.shape;
    let mut rng = Lcg::for_dims(&problem.dims, 11);
    let mut gen = |heads: usize| -> Vec<T> {
        (0..s.tokens * heads * s.head_dim)
            .map(|_| T::from_f32(rng.float(2.0)))
            .collect()
    };
    let q = gen(s.q_heads);
    let k = gen(s.k_heads);
    (q, k)
}

impl<T: RopeFloat> LibraryKernel for RopeKernel<T> {
    fn def(&self) -> &'static KernelDef {
        if self.0 {
            (T::ROPE_BWD)()
        } else {
            (T::ROPE)()
        }
    }

    fn summary(&self) -> &'static str {
        if self.0 {
            "RoPE backward in place on packed dQ and dK (rotation by −θ, autograd's T roundings; the forward's table and scalings)"
        } else {
            "RoPE in place on packed Q and K (HF rotate-half, default/linear/Llama-3 frequencies, partial rotary; 128-bit units)"
        }
    }

    /// Ragged batches (lengths 1, odd, an empty prompt), GQA, partial rotary, Q only,
    /// long positions (Llama-3's three bands), and head dims 64, 80 and 128.
    fn problems(&self) -> Vec<Problem> {
        vec![
            encode((2, 1, 64, 64), (0, 0), &[1, 7, 0, 12]),
            encode((4, 2, 128, 128), (2, 3000), &[5, 33]),
            encode((3, 1, 80, 32), (1, 17), &[9, 2]),
            encode((1, 0, 64, 64), (2, 9000), &[3, 1]),
        ]
    }

    fn rank(&self) -> usize {
        7
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        decode(problem).map(|_| ())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let def = self.def();
        let p = decode(problem).map_err(|m| super::host::shape_error(def, "problem", m))?;
        let (q, k) = inputs::<T>(problem, &p);
        // K's buffer must hold whole 16-byte words even when there are no K heads.
        let k = if k.is_empty() {
            vec![T::from_f32(0.0); 8]
        } else {
            k
        };
        Ok(Box::new(RopeCase::<T> {
            backward: self.0,
            shape: p.shape,
            q0: q.clone(),
            k0: k.clone(),
            q: device.upload(&q)?,
            k: device.upload(&k)?,
            positions: device.upload(&p.positions)?,
            table: device.upload(&p.rope.table(p.shape.table_rows))?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let Ok(p) = decode(problem) else {
            return Vec::new();
        };
        let (q, k) = inputs::<T>(problem, &p);
        let s = p.shape;
        let inv = p.rope.inv_freq();
        let widen = |v: &[T]| v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
        let rotate = if self.0 {
            reference_bwd::<T>
        } else {
            reference::<T>
        };
        let mut out = rotate(
            &widen(&q),
            (s.q_heads, s.head_dim, s.rotary_dim),
            &p.positions,
            &inv,
            s.table_rows,
        );
        out.extend(rotate(
            &widen(&k),
            (s.k_heads, s.head_dim, s.rotary_dim),
            &p.positions,
            &inv,
            s.table_rows,
        ));
        out
    }

    /// 2·(q_heads + k_heads)·rotary_dim·sizeof(T) per token plus the positions and the
    /// table rows read (as the module doc counts them).
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let p = decode(problem).ok()?;
        let s = p.shape;
        let size = T::SCALAR.size_bytes();
        let per_token = 2 * (s.q_heads + s.k_heads) * s.rotary_dim * size + 4 * s.rotary_dim + 4;
        Some((s.tokens * per_token) as u64)
    }

    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        match decode(problem) {
            Ok(p) => vec![
                p.shape.q_heads,
                p.shape.k_heads,
                p.shape.head_dim,
                p.shape.tokens,
            ],
            Err(_) => problem.dims.clone(),
        }
    }

    /// A Llama-3 model's Q and K at each token count (bf16 instances; Q and K in one
    /// launch); the backward rotates dQ and dK at the same shapes.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        let d = model.head_dim;
        tokens
            .iter()
            .map(|&m| encode((model.heads, model.kv_heads, d, d), (2, 0), &[m]))
            .collect()
    }
}

struct RopeCase<T: RopeFloat> {
    backward: bool,
    shape: RopeShape,
    q0: Vec<T>,
    k0: Vec<T>,
    q: Buffer<T>,
    k: Buffer<T>,
    positions: Buffer<u32>,
    table: Buffer<f32>,
}

impl<T: RopeFloat> Case for RopeCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let launch = if self.backward {
            launch_rope_bwd::<T>
        } else {
            launch_rope::<T>
        };
        launch(
            device,
            config,
            (&mut self.q, &mut self.k),
            (&self.positions, &self.table),
            self.shape,
        )
    }

    /// Q then K (without the placeholder K of a Q-only problem).
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = download_f32(device, &self.q)?;
        if self.shape.k_heads > 0 {
            out.extend(download_f32(device, &self.k)?);
        }
        Ok(out)
    }

    /// In place: each launch rotates what the previous one wrote.
    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.q = device.upload(&self.q0)?;
        self.k = device.upload(&self.k0)?;
        Ok(())
    }
}
