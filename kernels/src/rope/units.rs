//! Eight-element units of a row read and written as 128-bit words: the data-movement pieces
//! the RoPE and prepacking kernels share.
//!
//! A kernel takes its `T` tensors as bit views `&[Vec4<u32>]` (16-byte words; the backend
//! lets a `Buffer<T>` of any element of at most 4 bytes be passed so), so every access is
//! one 128-bit load or store (`LDG.E.128` / `STG.E.128`). Unit `u` is elements `8u..8u+8`:
//! one word for f16/bf16, two for f32. Each type has its own hand-written instance
//! (`load8_f16`, ...); a generic kernel's `load8::<T>(..)` calls the instance of its `T`.
//! Values travel widened to f32 in a caller's 8-element local array (registers once
//! unrolled); narrowing rounds to nearest even.

use warpforge_dsl::prelude::*;
use warpforge_macros::device;

/// Unit `u` of `x` (f32: words `2u`, `2u + 1`) into `out[0..8]`.
#[device]
pub fn load8_f32(x: &[Vec4<u32>], u: u32, out: &mut [f32]) {
    let a = x[2 * u];
    let b = x[2 * u + 1];
    out[0] = f32::from_bits(a.x);
    out[1] = f32::from_bits(a.y);
    out[2] = f32::from_bits(a.z);
    out[3] = f32::from_bits(a.w);
    out[4] = f32::from_bits(b.x);
    out[5] = f32::from_bits(b.y);
    out[6] = f32::from_bits(b.z);
    out[7] = f32::from_bits(b.w);
}

/// Unit `u` of `x` (f16: word `u`, low half first) widened into `out[0..8]`.
#[device]
pub fn load8_f16(x: &[Vec4<u32>], u: u32, out: &mut [f32]) {
    let w = x[u];
    let p0 = unpack_f16x2(w.x);
    let p1 = unpack_f16x2(w.y);
    let p2 = unpack_f16x2(w.z);
    let p3 = unpack_f16x2(w.w);
    out[0] = p0.x.to_f32();
    out[1] = p0.y.to_f32();
    out[2] = p1.x.to_f32();
    out[3] = p1.y.to_f32();
    out[4] = p2.x.to_f32();
    out[5] = p2.y.to_f32();
    out[6] = p3.x.to_f32();
    out[7] = p3.y.to_f32();
}

/// Unit `u` of `x` (bf16: word `u`, low half first) widened into `out[0..8]`.
#[device]
pub fn load8_bf16(x: &[Vec4<u32>], u: u32, out: &mut [f32]) {
    let w = x[u];
    let p0 = unpack_bf16x2(w.x);
    let p1 = unpack_bf16x2(w.y);
    let p2 = unpack_bf16x2(w.z);
    let p3 = unpack_bf16x2(w.w);
    out[0] = p0.x.to_f32();
    out[1] = p0.y.to_f32();
    out[2] = p1.x.to_f32();
    out[3] = p1.y.to_f32();
    out[4] = p2.x.to_f32();
    out[5] = p2.y.to_f32();
    out[6] = p3.x.to_f32();
    out[7] = p3.y.to_f32();
}

/// `v[0..8]` stored as unit `u` of `y` (f32: words `2u`, `2u + 1`).
#[device]
pub fn store8_f32(y: &mut [Vec4<u32>], u: u32, v: &[f32]) {
    y[2 * u] = Vec4::new(
        v[0].to_bits(),
        v[1].to_bits(),
        v[2].to_bits(),
        v[3].to_bits(),
    );
    y[2 * u + 1] = Vec4::new(
        v[4].to_bits(),
        v[5].to_bits(),
        v[6].to_bits(),
        v[7].to_bits(),
    );
}

/// `v[0..8]` rounded to f16 and stored as unit `u` of `y`.
#[device]
pub fn store8_f16(y: &mut [Vec4<u32>], u: u32, v: &[f32]) {
    y[u] = Vec4::new(
        pack_f16x2(f16::from_f32(v[0]), f16::from_f32(v[1])),
        pack_f16x2(f16::from_f32(v[2]), f16::from_f32(v[3])),
        pack_f16x2(f16::from_f32(v[4]), f16::from_f32(v[5])),
        pack_f16x2(f16::from_f32(v[6]), f16::from_f32(v[7])),
    );
}

/// `v[0..8]` rounded to bf16 and stored as unit `u` of `y`.
#[device]
pub fn store8_bf16(y: &mut [Vec4<u32>], u: u32, v: &[f32]) {
    y[u] = Vec4::new(
        pack_bf16x2(bf16::from_f32(v[0]), bf16::from_f32(v[1])),
        pack_bf16x2(bf16::from_f32(v[2]), bf16::from_f32(v[3])),
        pack_bf16x2(bf16::from_f32(v[4]), bf16::from_f32(v[5])),
        pack_bf16x2(bf16::from_f32(v[6]), bf16::from_f32(v[7])),
    );
}

/// Unit `su` of `src` copied bit for bit to unit `du` of `dst` (f32: two words).
#[device]
pub fn copy8_f32(src: &[Vec4<u32>], su: u32, dst: &mut [Vec4<u32>], du: u32) {
    dst[2 * du] = src[2 * su];
    dst[2 * du + 1] = src[2 * su + 1];
}

/// Unit `su` of `src` copied bit for bit to unit `du` of `dst` (f16: one word).
#[device]
pub fn copy8_f16(src: &[Vec4<u32>], su: u32, dst: &mut [Vec4<u32>], du: u32) {
    dst[du] = src[su];
}

/// Unit `su` of `src` copied bit for bit to unit `du` of `dst` (bf16: one word).
#[device]
pub fn copy8_bf16(src: &[Vec4<u32>], su: u32, dst: &mut [Vec4<u32>], du: u32) {
    dst[du] = src[su];
}
