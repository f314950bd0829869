//! The int4 GEMMs as library kernels: one description for the four instances
//! `int4_gemm_{oc,ic}_{f16,bf16}`.
//!
//! A problem is `[m, n, k, group, act_order, asym]`: `m` tokens, `n` output and `k` input
//! channels, `group` the group size (0: one group per channel), `act_order` 1 for a GPTQ
//! act-order `g_idx` (Oc only), `asym` 1 for random zero points (0: symmetric, zero 8).
//! Inputs: a random [`Int4Weight`] (codes, zeros, scales `j/256` for j in 1..32 — exact in
//! f16 and bf16) and activations uniform in [-1, 1) rounded to `T`, A's row padding NaN.

use super::host::{def_of, launch, permute_activations, reference, workspace_len, DeviceInt4};
use super::layout::{pack, Int4Float};
use super::{GroupDim, Int4Weight};
use crate::check::{Problem, Tolerance};
use crate::family::{download_f32, register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// Every instance: Oc first (its whole space is what the library tests cover), then Ic.
pub fn kernels() -> Vec<Kernel> {
    vec![
        instance::<f16>(GroupDim::Oc),
        instance::<bf16>(GroupDim::Oc),
        instance::<f16>(GroupDim::Ic),
        instance::<bf16>(GroupDim::Ic),
    ]
}

fn instance<T: Int4Float>(dim: GroupDim) -> Kernel {
    let groups = match dim {
        GroupDim::Oc => "per-OC groups (scale per k-group × column)",
        GroupDim::Ic => "per-IC groups, AdaDim (scale per k row × column group)",
    };
    register(Int4Gemm::<T> {
        dim,
        summary: Box::leak(
            format!(
                "int4 weight × {} activation GEMM (MARLIN-style: cp.async, lop3 dequant, \
                 mma.sync, split-K), {groups}",
                T::SCALAR
            )
            .into_boxed_str(),
        ),
        types: PhantomData,
    })
}

struct Int4Gemm<T> {
    dim: GroupDim,
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A problem's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// 0: one group per channel.
    pub group: usize,
    pub act_order: bool,
    pub asym: bool,
}

impl Shape {
    pub fn of(problem: &Problem) -> Shape {
        let d = &problem.dims;
        Shape {
            m: d[0],
            n: d[1],
            k: d[2],
            group: d[3],
            act_order: d[4] != 0,
            asym: d[5] != 0,
        }
    }

    pub fn problem(self) -> Problem {
        let group = match self.group {
            0 => "per-channel".to_string(),
            g => format!("g{g}"),
        };
        let flags = format!(
            "{}{}",
            if self.act_order { " act-order" } else { "" },
            if self.asym { " asym" } else { "" }
        );
        let dims = vec![
            self.m,
            self.n,
            self.k,
            self.group,
            self.act_order as usize,
            self.asym as usize,
        ];
        Problem::new(
            format!("{}x{}x{} {group}{flags}", self.m, self.n, self.k),
            dims,
        )
    }

    /// A's leading dimension: `k` rounded up to 8 (16-byte rows).
    pub fn lda(self) -> usize {
        self.k.div_ceil(8) * 8
    }
}

/// The problem's random weight (same dims, same weight).
pub fn random_weight(dim: GroupDim, s: Shape) -> Int4Weight {
    let mut rng = Lcg::for_dims(
        &[s.n, s.k, s.group, s.act_order as usize, s.asym as usize],
        41,
    );
    let whole = if dim == GroupDim::Oc { s.k } else { s.n };
    let group = if s.group == 0 {
        whole
    } else {
        s.group.min(whole)
    };
    let groups = whole.div_ceil(group);
    let params = if dim == GroupDim::Oc {
        groups * s.n
    } else {
        s.k * groups
    };
    let mut bits = || rng.next_u32();
    let codes = (0..s.k * s.n).map(|_| (bits() % 16) as u8).collect();
    let scales = (0..params)
        .map(|_| (1 + bits() % 31) as f32 / 256.0)
        .collect();
    let zeros = (0..params)
        .map(|_| if s.asym { (bits() % 16) as u8 } else { 8 })
        .collect();
    let g_idx = (s.act_order && dim == GroupDim::Oc).then(|| {
        // GPTQ act-order: a random channel order, groups formed along it.
        let mut order: Vec<usize> = (0..s.k).collect();
        for i in (1..s.k).rev() {
            order.swap(i, bits() as usize % (i + 1));
        }
        let mut g_idx = vec![0u32; s.k];
        for (j, &ch) in order.iter().enumerate() {
            g_idx[ch] = (j / group) as u32;
        }
        g_idx
    });
    Int4Weight {
        k: s.k,
        n: s.n,
        group,
        dim,
        codes,
        scales,
        zeros,
        g_idx,
    }
}

/// The problem's activations: `m` rows of [`Shape::lda`], uniform in [-1, 1) rounded to
/// `T`, NaN past `k` (a kernel reading the padding fails the check).
pub fn activations<T: Int4Float>(s: Shape) -> Vec<T> {
    let mut rng = Lcg::for_dims(&[s.m, s.k], 42);
    let lda = s.lda();
    (0..s.m * lda)
        .map(|e| match e % lda < s.k {
            true => T::from_f32(rng.float(1.0)),
            false => T::from_f32(f32::NAN),
        })
        .collect()
}

impl<T: Int4Float> LibraryKernel for Int4Gemm<T> {
    fn def(&self) -> &'static KernelDef {
        def_of(self.dim, T::SCALAR).expect("instances are registered for f16/bf16 only")
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// Ragged M (1, 7, 16, 33, 128), N and K not multiples of the tiles, group sizes 32, 64,
    /// 128 and per channel, symmetric and asymmetric zeros, act-order (Oc), a K long enough
    /// for several slices per split.
    fn problems(&self) -> Vec<Problem> {
        let oc = self.dim == GroupDim::Oc;
        let shape = |m, n, k, group, act_order: bool, asym| Shape {
            m,
            n,
            k,
            group,
            act_order: act_order && oc,
            asym,
        };
        vec![
            shape(1, 64, 64, 32, false, false),
            shape(7, 70, 100, 0, false, true),
            shape(16, 128, 256, 64, true, false),
            shape(33, 192, 96, 32, false, true),
            shape(128, 64, 128, 128, true, true),
            shape(2, 128, 1024, 128, false, false),
        ]
        .into_iter()
        .map(Shape::problem)
        .collect()
    }

    fn rank(&self) -> usize {
        6
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let d = &problem.dims;
        if d.len() != 6 {
            return Err(format!(
                "{} takes [m, n, k, group (0: per channel), act_order (0/1), asym (0/1)], got {d:?}",
                self.def().name
            ));
        }
        if d[..3].iter().any(|&x| x == 0 || x > u32::MAX as usize) {
            return Err(format!("m, n, k must be in 1..2^32, got {d:?}"));
        }
        if !d[3].is_multiple_of(16) {
            return Err(format!(
                "group {} must be a multiple of 16 or 0 (per channel)",
                d[3]
            ));
        }
        if d[4] > 1 || d[5] > 1 || (d[4] == 1 && self.dim == GroupDim::Ic) {
            return Err(format!(
                "act_order and asym are 0 or 1 (act_order only with per-OC groups), got {d:?}"
            ));
        }
        Ok(())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let s = Shape::of(problem);
        let w = random_weight(self.dim, s);
        let packed = pack::<T>(&w).expect("the problems' weights are packable");
        let a = device.upload(&activations::<T>(s))?;
        let permuted = match packed.perm {
            Some(_) => Some(device.zeros::<T>(a.len())?),
            None => None,
        };
        Ok(Box::new(Operands::<T> {
            shape: s,
            weight: DeviceInt4::upload(device, packed)?,
            a,
            permuted,
            c: device.zeros(s.m * s.n)?,
            workspace: device.zeros(1)?,
        }))
    }

    /// `A · W_T` in f64 (W dequantized exactly and rounded once to `T`, as the kernel's
    /// registers hold it), rounded to `T`.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let s = Shape::of(problem);
        let w = random_weight(self.dim, s);
        let c = reference::<T>(&w, &activations::<T>(s), s.m, s.lda());
        c.into_iter().map(|x| T::from_f32(x).to_f32()).collect()
    }

    /// One rounding of `T` (the f32 sum may sit on the other side of a rounding boundary
    /// than the exact one: 1 ulp, ≤ 2^-10 relative for f16, 2^-7 for bf16) plus the f32
    /// accumulation: terms |a·w| < 2, partial sums of ≤ k of them in f32 (the MMA's and
    /// the split-K adds), observed far below 2^-14 relative to max(1, |C|) at these
    /// sizes. Stricter per element than MARLIN's mean|C − C_ref| / mean|C_ref| < 1e-3
    /// (which `tests/int4_gemm.rs` checks too).
    fn tolerance(&self, _problem: &Problem) -> f64 {
        ulp::<T>() + 2f64.powi(-14)
    }

    /// Splits and warps over K change the f32 summation order: one rounding of `T` apart.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    /// Codes `k_pad·n_pad/2`, scales (and zeros) `2·k·n/group`, A `2·m·k`, C `2·m·n`.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let s = Shape::of(problem);
        let (k_pad, n_pad) = (s.k.div_ceil(16) * 16, s.n.div_ceil(64) * 64);
        let whole = if self.dim == GroupDim::Oc { s.k } else { s.n };
        let group = if s.group == 0 {
            whole
        } else {
            s.group.min(whole)
        };
        let params = k_pad * n_pad / group.min(whole) * 2 * (1 + s.asym as usize);
        Some((k_pad * n_pad / 2 + params + 2 * s.m * s.k + 2 * s.m * s.n) as u64)
    }

    /// A model's linear layers at each batch size, symmetric group-128 weights (GPTQ's
    /// usual), for the bf16 instances.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        let mut out: Vec<Problem> = Vec::new();
        for &m in tokens {
            for (_, n, k) in model.linears() {
                let p = Shape {
                    m,
                    n,
                    k,
                    group: 128,
                    act_order: false,
                    asym: false,
                }
                .problem();
                if !out.iter().any(|q| q.dims == p.dims) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// 1 ulp of `T` at 1.0: 2^-10 (f16) or 2^-7 (bf16).
fn ulp<T: Int4Float>() -> f64 {
    let one = T::from_f32(1.0);
    let next = T::from_bits(one.to_bits() + 1);
    (next.to_f32() - 1.0) as f64
}

struct Operands<T: Int4Float> {
    shape: Shape,
    weight: DeviceInt4,
    a: Buffer<T>,
    /// A with act-order's column permutation applied (on the device, each launch).
    permuted: Option<Buffer<T>>,
    c: Buffer<T>,
    workspace: Buffer<f32>,
}

impl<T: Int4Float> Case for Operands<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let s = self.shape;
        let need = workspace_len(config, s.m, &self.weight.packed).max(1);
        if self.workspace.len() < need {
            self.workspace = device.zeros(need)?;
        }
        let (rows, lda) = (s.m as u32, s.lda() as u32);
        let a = match (&mut self.permuted, &self.weight.perm) {
            (Some(out), Some(perm)) => {
                permute_activations(device, &self.a, perm, out, rows, lda)?;
                &*out
            }
            _ => &self.a,
        };
        launch(
            device,
            config,
            &self.weight,
            a,
            lda,
            rows,
            &mut self.c,
            &mut self.workspace,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        download_f32(device, &self.c)
    }
}
