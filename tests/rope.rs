//! T1 for RoPE: `rope_{f32,f16,bf16}` on the CPU interpreter over their whole tunable space
//! at the family's ragged check problems (exact: tolerance 0), hand-computed values of
//! Hugging Face's bf16 rounding order, the frequencies of the default, linear and Llama-3
//! scalings, the config parser's errors, the out-of-table marker, Q-only launches and the
//! layout contract.

use warpforge::dsl::{Buffer, Config, Device};
use warpforge::kernels::check::Problem;
use warpforge::kernels::rope::{
    launch_rope, reference, Rope, RopeConfig, RopeError, RopeScaling, RopeScalingConfig, RopeShape,
};
use warpforge::kernels::{find, Kernel};
use warpforge::prelude::{bf16, f16};

fn kernel(name: &str) -> Kernel {
    find(name).unwrap_or_else(|| panic!("{name} is not registered"))
}

/// Every config of every instance on every check problem, against the reference exactly.
#[test]
fn whole_space_of_every_instance_is_exact() {
    let device = Device::cpu();
    let mut runs = 0;
    for name in ["rope_f32", "rope_f16", "rope_bf16"] {
        let k = kernel(name);
        assert_eq!(k.tolerance(&k.problems()[0]), 0.0);
        for problem in k.problems() {
            for config in k.configs() {
                let report = k.check(&device, &config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report:?}",
                    problem.name
                );
                runs += 1;
            }
        }
    }
    println!("{runs} (instance, config, problem) runs exact");
}

/// bf16, one token at position 1, head dim 16 (θ_0 = 1 rad): x = e_0 rotates to
/// (bf16(cos 1), .., bf16(sin 1)) = (0.5390625, .., 0.83984375); at position 0 nothing moves.
#[test]
fn hugging_face_rounding_by_hand() {
    let device = Device::cpu();
    let rope = Rope::from_config(&RopeConfig::new(10000.0, 16)).unwrap();
    let mut x = vec![bf16::ZERO; 2 * 16];
    x[0] = bf16::ONE;
    x[16] = bf16::from_f32(1.5);
    x[16 + 8] = bf16::from_f32(-0.25);
    let mut q: Buffer<bf16> = device.upload(&x).unwrap();
    let mut k: Buffer<bf16> = device.upload(&[bf16::ZERO; 8]).unwrap();
    let positions = device.upload(&[1u32, 0]).unwrap();
    let table = device.upload(&rope.table(2)).unwrap();
    let shape = RopeShape {
        tokens: 2,
        q_heads: 1,
        k_heads: 0,
        head_dim: 16,
        rotary_dim: 16,
        table_rows: 2,
    };
    let config = Config::parse("BLOCK=64,UNITS=1").unwrap();
    launch_rope(
        &device,
        &config,
        (&mut q, &mut k),
        (&positions, &table),
        shape,
    )
    .unwrap();
    let out: Vec<f32> = device
        .download(&q)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    assert_eq!((out[0], out[8]), (0.5390625, 0.83984375));
    assert_eq!(
        &out[16..],
        &x[16..].iter().map(|v| v.to_f32()).collect::<Vec<_>>()[..]
    );
    // The reference agrees, and rounding to bf16 per op is visible: in f32 the same
    // rotation of e_0 gives cos 1 = 0.5403023.
    let f32_ref = reference::<f32>(&[1.0; 16], (1, 16, 16), &[1], &rope.inv_freq(), 2);
    assert_eq!(f32_ref[0], 1.0f64.cos() as f32 - 1.0f64.sin() as f32);
}

/// The frequencies: θ^(-2i/d) (10000^(-2/128) = 0.8659643), linear = default / factor, and
/// Llama 3.1's three bands (kept below wavelength 2048, ÷8 above 8192, blended between).
#[test]
fn frequencies_of_each_scaling() {
    let default = Rope::from_config(&RopeConfig::new(10000.0, 128))
        .unwrap()
        .inv_freq();
    assert_eq!(default.len(), 64);
    assert_eq!(default[0], 1.0);
    assert!((default[1] as f64 - 10000f64.powf(-2.0 / 128.0)).abs() <= 6e-8);
    let linear = Rope {
        scaling: RopeScaling::Linear { factor: 4.0 },
        ..Rope::from_config(&RopeConfig::new(10000.0, 128)).unwrap()
    };
    for (l, d) in linear.inv_freq().iter().zip(&default) {
        assert_eq!(*l, d / 4.0);
    }
    let plain = Rope::from_config(&RopeConfig::new(500000.0, 128))
        .unwrap()
        .inv_freq();
    let llama = Rope::llama3_1(128).inv_freq();
    let (mut kept, mut divided, mut blended) = (0, 0, 0);
    for (i, (&f, &p)) in llama.iter().zip(&plain).enumerate() {
        // Each default frequency is within 1 f32 ulp of the f64 formula.
        let exact = 500000f64.powf(-((2 * i) as f64) / 128.0);
        assert!(
            (p as f64 - exact).abs() <= exact * 1.2e-7,
            "{i}: {p} vs {exact}"
        );
        let wavelen = 2.0 * std::f64::consts::PI / p as f64;
        if wavelen < 2048.0 {
            assert_eq!(f, p);
            kept += 1;
        } else if wavelen > 8192.0 {
            assert_eq!(f, p / 8.0);
            divided += 1;
        } else {
            assert!(f < p && f > p / 8.0, "{i}: {f} not between {p}/8 and {p}");
            blended += 1;
        }
    }
    assert!(
        kept > 0 && divided > 0 && blended > 0,
        "{kept} {divided} {blended}"
    );
    println!("Llama 3.1 at d = 128: {kept} kept, {blended} blended, {divided} divided by 8");
}

/// The config parser: Llama 3.1's object, the legacy `type` key, partial rotary, and clear
/// errors for unsupported types and missing fields.
#[test]
fn rope_scaling_configs_and_their_errors() {
    let llama = RopeScalingConfig {
        rope_type: Some("llama3".into()),
        factor: Some(8.0),
        low_freq_factor: Some(1.0),
        high_freq_factor: Some(4.0),
        original_max_position_embeddings: Some(8192),
    };
    let config = RopeConfig {
        rope_scaling: Some(llama.clone()),
        ..RopeConfig::new(500000.0, 128)
    };
    assert_eq!(Rope::from_config(&config).unwrap(), Rope::llama3_1(128));
    let linear = RopeScalingConfig {
        rope_type: Some("linear".into()),
        factor: Some(2.0),
        ..Default::default()
    };
    assert_eq!(
        RopeScaling::from_config(Some(&linear)),
        Ok(RopeScaling::Linear { factor: 2.0 })
    );
    let partial = RopeConfig {
        partial_rotary_factor: 0.25,
        ..RopeConfig::new(10000.0, 128)
    };
    assert_eq!(Rope::from_config(&partial).unwrap().rotary_dim, 32);
    for name in ["yarn", "dynamic", "longrope"] {
        let c = RopeScalingConfig {
            rope_type: Some(name.into()),
            factor: Some(4.0),
            ..Default::default()
        };
        let err = RopeScaling::from_config(Some(&c)).unwrap_err();
        assert_eq!(err, RopeError::Unsupported(name.into()));
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("default, linear, llama3"),
            "{msg}"
        );
    }
    let missing = RopeScalingConfig {
        low_freq_factor: None,
        ..llama
    };
    let err = RopeScaling::from_config(Some(&missing)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rope_scaling of type `llama3` needs the field `low_freq_factor`"
    );
    let odd = RopeConfig::new(10000.0, 0);
    assert!(matches!(
        Rope::from_config(&odd),
        Err(RopeError::Invalid(_))
    ));
}

/// A position past the table marks that token's rotated dims NaN (pass-through dims and
/// other tokens untouched); K heads with `k_heads = 0` are never touched.
#[test]
fn positions_past_the_table_are_nan_and_q_only_leaves_k() {
    let device = Device::cpu();
    let rope = Rope::llama3_1(16);
    let (heads, d) = (2, 32);
    let x: Vec<f16> = (0..3 * heads * d)
        .map(|i| f16::from_f32(i as f32 / 64.0))
        .collect();
    let mut q = device.upload(&x).unwrap();
    let k0 = vec![f16::from_f32(7.0); 8];
    let mut k = device.upload(&k0).unwrap();
    let positions = [3u32, 9, 4];
    let pos = device.upload(&positions).unwrap();
    let table = device.upload(&rope.table(5)).unwrap();
    let shape = RopeShape {
        tokens: 3,
        q_heads: heads,
        k_heads: 0,
        head_dim: d,
        rotary_dim: 16,
        table_rows: 5,
    };
    let config = Config::parse("BLOCK=128,UNITS=4").unwrap();
    launch_rope(&device, &config, (&mut q, &mut k), (&pos, &table), shape).unwrap();
    let got: Vec<f32> = device
        .download(&q)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    let wide: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let want = reference::<f16>(&wide, (heads, d, 16), &positions, &rope.inv_freq(), 5);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let (t, dim) = (i / (heads * d), i % d);
        assert_eq!(g.is_nan(), t == 1 && dim < 16, "element {i}");
        assert!(g.is_nan() || g == w, "element {i}: {g} vs {w}");
    }
    assert_eq!(device.download(&k).unwrap(), k0);
}

/// Shapes outside the layout contract are refused with a message, before any launch.
#[test]
fn bad_shapes_are_errors() {
    let device = Device::cpu();
    let mut q = device.upload(&[bf16::ZERO; 64]).unwrap();
    let mut k = device.upload(&[bf16::ZERO; 64]).unwrap();
    let pos = device.upload(&[0u32]).unwrap();
    let table = device.upload(&[0f32; 24]).unwrap();
    let shape = RopeShape {
        tokens: 1,
        q_heads: 1,
        k_heads: 1,
        head_dim: 64,
        rotary_dim: 24,
        table_rows: 1,
    };
    let config = Config::new();
    let err = launch_rope(&device, &config, (&mut q, &mut k), (&pos, &table), shape)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of 16"), "{err}");
    let shape = RopeShape {
        rotary_dim: 64,
        table_rows: 2,
        ..shape
    };
    let err = launch_rope(&device, &config, (&mut q, &mut k), (&pos, &table), shape)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cos_sin"), "{err}");
}

/// Problems a user gives are validated (the encoding, and the layout contract).
#[test]
fn problem_validation() {
    let k = kernel("rope_bf16");
    assert!(k
        .validate(&Problem::new("bad", vec![1, 1, 64, 64, 0, 0, 2, 3]))
        .is_err());
    assert!(k
        .validate(&Problem::new("r8", vec![1, 1, 64, 8, 0, 0, 1, 3]))
        .is_err());
    assert!(k
        .validate(&Problem::new("ok", vec![1, 1, 64, 64, 2, 0, 2, 3, 0]))
        .is_ok());
}

/// The exact check can fail: the kernel's output at shifted positions, or the f16 rounding
/// order replaced by one rounding at the end, differs from the reference.
#[test]
fn a_wrong_position_or_rounding_order_is_caught() {
    let device = Device::cpu();
    let rope = Rope::llama3_1(64);
    let x: Vec<f16> = (0..4 * 64)
        .map(|i| f16::from_f32(((i * 37) % 29) as f32 / 7.0 - 2.0))
        .collect();
    let wide: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let positions = [0u32, 1, 2, 3];
    let want = reference::<f16>(&wide, (1, 64, 64), &positions, &rope.inv_freq(), 5);
    let mut q = device.upload(&x).unwrap();
    let mut k = device.upload(&[f16::ZERO; 8]).unwrap();
    let shifted = device.upload(&[1u32, 2, 3, 4]).unwrap();
    let table = device.upload(&rope.table(5)).unwrap();
    let shape = RopeShape {
        tokens: 4,
        q_heads: 1,
        k_heads: 0,
        head_dim: 64,
        rotary_dim: 64,
        table_rows: 5,
    };
    let config = Config::parse("BLOCK=64,UNITS=1").unwrap();
    launch_rope(
        &device,
        &config,
        (&mut q, &mut k),
        (&shifted, &table),
        shape,
    )
    .unwrap();
    let got: Vec<f32> = device
        .download(&q)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    assert!(got.iter().zip(&want).filter(|(g, w)| g != w).count() > 100);
    // One rounding at the end (f32 arithmetic) instead of HF's per-op f16 roundings.
    let once = reference::<f32>(&wide, (1, 64, 64), &positions, &rope.inv_freq(), 5);
    let once: Vec<f32> = once.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    let differ = once.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert!(
        differ > 0,
        "the rounding order is not visible on these inputs"
    );
    println!(
        "{differ} of {} values differ between HF's order and one rounding",
        want.len()
    );
}
