//! Element-type parameters: `#[kernel(types(..))]` / `#[device(types(..))]` expand a generic
//! source into one kernel per combination; every instance runs on the interpreter bit-exact
//! against a host model, and compiles with NVRTC for sm_80 (skipped with a line when NVRTC
//! is absent, unless WARPFORGE_REQUIRE_NVRTC=1).

use warpforge::dsl::nvrtc::{self, Arch, CompileOptions};
use warpforge::dsl::{codegen, resolve, Element, Error, KernelDef};
use warpforge::prelude::*;
use warpforge::{device, kernel};

/// Widens four lanes of any float format to f32.
#[device(types(T = [f32, f16, bf16]))]
fn load4<T: Float>(v: Vec4<T>) -> Vec4<f32> {
    Vec4::new(v.x.to_f32(), v.y.to_f32(), v.z.to_f32(), v.w.to_f32())
}

/// Scales by `s`, saturates to the format's range and rounds to it.
#[device(types(Q = [F8E4M3, F8E5M2]))]
fn quantize4<Q: Fp8>(v: Vec4<f32>, s: f32) -> Vec4<Q> {
    let m = Q::max_finite();
    Vec4::new(
        Q::from_f32((v.x * s).min(m).max(-m)),
        Q::from_f32((v.y * s).min(m).max(-m)),
        Q::from_f32((v.z * s).min(m).max(-m)),
        Q::from_f32((v.w * s).min(m).max(-m)),
    )
}

/// Lane `LANE` of a vector, widened: a type argument and a const argument together.
#[device(types(T = [f32, f16, bf16]))]
fn lane<T: Float, const LANE: u32>(v: Vec4<T>) -> f32 {
    if LANE == 0 {
        v.x.to_f32()
    } else {
        v.w.to_f32()
    }
}

/// Quantizes `x` to FP8 and writes the dequantized round trip back in `T`.
#[kernel(block = (BLOCK), tune(BLOCK = [64, 128]), default(BLOCK = 64),
         types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2]))]
pub fn round_trip<T: Float, Q: Fp8, const BLOCK: u32>(
    x: &[Vec4<T>],
    q: &mut [Vec4<Q>],
    y: &mut [Vec4<T>],
    first: &mut [f32],
    s: f32,
) {
    let i = block_idx_x() * BLOCK + thread_idx_x();
    if i < x.len() {
        let v = quantize4::<Q>(load4::<T>(x[i]), s);
        q[i] = v;
        let inv = 1.0 / s;
        y[i] = Vec4::new(
            T::from_f32(v.x.to_f32() * inv),
            T::from_f32(v.y.to_f32() * inv),
            T::from_f32(v.z.to_f32() * inv),
            T::from_f32(v.w.to_f32() * inv),
        );
        first[i] = lane::<T, 0>(x[i]) + lane::<T, 3>(x[i]);
    }
}

/// A non-generic kernel may call an instance by its turbofish too.
#[kernel(block = (32), tune(UNUSED = [1]))]
fn widen_f16<const UNUSED: u32>(x: &[Vec4<f16>], y: &mut [Vec4<f32>]) {
    let i = block_idx_x() * 32 + thread_idx_x();
    if i < x.len() {
        y[i] = load4::<f16>(x[i]);
    }
}

type Launch<T, Q> = fn(
    &Device,
    &Config,
    LaunchDims,
    &Buffer<T>,
    &mut Buffer<Q>,
    &mut Buffer<T>,
    &mut Buffer<f32>,
    f32,
) -> Result<(), Error>;

const VECS: usize = 300;
const SCALE: f32 = 3.0;

/// Inputs spanning zero, subnormal FP8 values, the saturation edges and beyond.
fn inputs<T: FloatFormat>() -> Vec<T> {
    (0..VECS * 4)
        .map(|i| {
            let sign = if i % 3 == 0 { -1.0 } else { 1.0 };
            let magnitude = 2f32.powi((i % 48) as i32 - 24) * (1.0 + (i % 7) as f32 / 7.0);
            T::from_f32(sign * magnitude)
        })
        .collect()
}

fn bits<T: FloatFormat>(v: &[T]) -> Vec<u32> {
    v.iter().map(|x| x.to_f32().to_bits()).collect()
}

/// Runs one instance for every config on the interpreter and compares with the host model.
fn check<T: FloatFormat + Element, Q: FloatFormat + Element>(
    name: &str,
    def: fn() -> &'static KernelDef,
    launch: Launch<T, Q>,
) {
    let device = Device::cpu();
    let host_x = inputs::<T>();
    let m = Q::max_finite();
    let want_q: Vec<Q> = host_x
        .iter()
        .map(|x| Q::from_f32((x.to_f32() * SCALE).min(m).max(-m)))
        .collect();
    let want_y: Vec<T> = want_q
        .iter()
        .map(|q| T::from_f32(q.to_f32() * (1.0 / SCALE)))
        .collect();
    let want_first: Vec<f32> = host_x
        .chunks(4)
        .map(|v| v[0].to_f32() + v[3].to_f32())
        .collect();
    let x = device.upload(&host_x).unwrap();
    for config in def().space.configs() {
        let block = config.get("BLOCK").unwrap() as u32;
        let dims = LaunchDims::linear((VECS as u32).div_ceil(block), block);
        let mut q = device.zeros::<Q>(VECS * 4).unwrap();
        let mut y = device.zeros::<T>(VECS * 4).unwrap();
        let mut first = device.zeros::<f32>(VECS).unwrap();
        launch(
            &device, &config, dims, &x, &mut q, &mut y, &mut first, SCALE,
        )
        .unwrap();
        let at = format!("{name} {config}");
        assert_eq!(
            bits(&device.download(&q).unwrap()),
            bits(&want_q),
            "q of {at}"
        );
        assert_eq!(
            bits(&device.download(&y).unwrap()),
            bits(&want_y),
            "y of {at}"
        );
        assert_eq!(
            device.download(&first).unwrap(),
            want_first,
            "first of {at}"
        );
    }
}

/// Every instance: (name, surface IR).
type DefFn = fn() -> &'static KernelDef;

fn instances() -> Vec<(&'static str, DefFn)> {
    vec![
        ("round_trip_f32_e4m3", round_trip_f32_e4m3::def),
        ("round_trip_f32_e5m2", round_trip_f32_e5m2::def),
        ("round_trip_f16_e4m3", round_trip_f16_e4m3::def),
        ("round_trip_f16_e5m2", round_trip_f16_e5m2::def),
        ("round_trip_bf16_e4m3", round_trip_bf16_e4m3::def),
        ("round_trip_bf16_e5m2", round_trip_bf16_e5m2::def),
    ]
}

#[test]
fn every_instance_matches_the_host_model_bit_exact() {
    check::<f32, F8E4M3>(
        "f32_e4m3",
        round_trip_f32_e4m3::def,
        round_trip_f32_e4m3::launch,
    );
    check::<f32, F8E5M2>(
        "f32_e5m2",
        round_trip_f32_e5m2::def,
        round_trip_f32_e5m2::launch,
    );
    check::<f16, F8E4M3>(
        "f16_e4m3",
        round_trip_f16_e4m3::def,
        round_trip_f16_e4m3::launch,
    );
    check::<f16, F8E5M2>(
        "f16_e5m2",
        round_trip_f16_e5m2::def,
        round_trip_f16_e5m2::launch,
    );
    check::<bf16, F8E4M3>(
        "bf16_e4m3",
        round_trip_bf16_e4m3::def,
        round_trip_bf16_e4m3::launch,
    );
    check::<bf16, F8E5M2>(
        "bf16_e5m2",
        round_trip_bf16_e5m2::def,
        round_trip_bf16_e5m2::launch,
    );
}

#[test]
fn instances_are_ordinary_kernels_named_by_their_types() {
    for (name, def) in instances() {
        let def = def();
        assert_eq!(def.name, name);
        assert_eq!(
            def.space.configs().len(),
            2,
            "{name}: the tune space is kept"
        );
        let consts: Vec<&str> = def.consts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(consts, ["BLOCK"], "{name}: only the const generics remain");
    }
    // The generic device fns became one device fn per type.
    assert_eq!(load4_bf16::def().name, "load4_bf16");
    assert_eq!(quantize4_e5m2::def().name, "quantize4_e5m2");
    assert_eq!(lane_f16::def().consts.len(), 1);
}

#[test]
fn a_plain_kernel_calls_a_generic_device_fn_by_turbofish() {
    let device = Device::cpu();
    let data: Vec<f16> = (0..64)
        .map(|i| f16::from_f32(i as f32 * 0.25 - 3.0))
        .collect();
    let x = device.upload(&data).unwrap();
    let mut y = device.zeros::<f32>(64).unwrap();
    let config = widen_f16::default_config();
    widen_f16::launch(&device, &config, LaunchDims::linear(1, 32), &x, &mut y).unwrap();
    let want: Vec<f32> = data.iter().map(|h| h.to_f32()).collect();
    assert_eq!(device.download(&y).unwrap(), want);
}

#[test]
fn every_instance_compiles_with_nvrtc_for_sm80() {
    if let Err(e) = nvrtc::version() {
        if std::env::var_os("WARPFORGE_REQUIRE_NVRTC").is_some() {
            panic!("NVRTC is required here (WARPFORGE_REQUIRE_NVRTC is set): {e}");
        }
        eprintln!("SKIPPED: NVRTC not found, generic instances not compiled: {e}");
        return;
    }
    let mut compiled = 0;
    for (name, def) in instances() {
        for config in def().space.configs() {
            let typed = resolve::specialize(def(), &config).unwrap();
            let source = codegen::cuda_source(&typed);
            nvrtc::compile(&source, Arch::SM80, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{name} {config}: {e}\n{source}"));
            compiled += 1;
        }
    }
    assert_eq!(compiled, 12);
}
