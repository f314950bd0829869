// warpforge host harness: the 16- and 8-bit float types, conversions and math, written from
// IEEE 754 and the PTX ISA's `cvt` rules (round to nearest even; `.satfinite` for FP8;
// float→integer truncating and saturating, NaN → 0), independently of the interpreter.
// NaN results of conversions are canonical as CUDA's (f16/bf16 0x7fff); f32→FP8 gives
// S.1111.111 with the NaN's sign (0x7f/0xff), as PyTorch and the generated wrapper do.
#pragma once

namespace wf_host {

inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Round `m * 2^-shift` (shift >= 1) to nearest even.
inline uint64_t round_shift(uint64_t m, unsigned int shift) {
    if (shift >= 64) return 0;
    uint64_t q = m >> shift;
    uint64_t rem = m & ((uint64_t(1) << shift) - 1);
    uint64_t half = uint64_t(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q += 1;
    return q;
}

inline int msb(uint64_t x) {
    return 63 - __builtin_clzll(x);
}

// A binary format with `mbits` stored significand bits and exponent bias `bias`.
// Rounds the exact value sign * m * 2^e (m > 0) to nearest even; returns the magnitude's
// code with infinities as code `inf_code` (or, when `inf_code` is 0, no infinity: the
// caller saturates). Subnormals are handled.
inline uint32_t round_to_format(uint64_t m, int e, int mbits, int bias) {
    int p = msb(m) + e; // floor(log2(value))
    int qexp = p - mbits;
    int min_qexp = 1 - bias - mbits;
    if (qexp < min_qexp) qexp = min_qexp;
    int shift = qexp - e;
    uint64_t n;
    if (shift <= 0) {
        n = m << -shift;
    } else {
        n = round_shift(m, (unsigned int)shift);
    }
    if (n >> (mbits + 1)) { // the rounding carried into the next binade
        n >>= 1;
        qexp += 1;
    }
    if (n < (uint64_t(1) << mbits)) return (uint32_t)n; // subnormal (or zero)
    uint32_t field = (uint32_t)(qexp + mbits + bias);
    return (field << mbits) | (uint32_t)(n - (uint64_t(1) << mbits));
}

// A finite nonzero f32 as m * 2^e.
inline void f32_parts(uint32_t ax, uint64_t& m, int& e) {
    uint32_t field = ax >> 23;
    m = ax & 0x7fffffu;
    if (field == 0) {
        e = -149;
    } else {
        m |= 0x800000u;
        e = (int)field - 150;
    }
}

inline uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f), sign = x >> 16 & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fff;
    if (ax == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
    if (ax == 0) return (uint16_t)sign;
    uint64_t m;
    int e;
    f32_parts(ax, m, e);
    uint32_t code = round_to_format(m, e, 10, 15);
    if (code >= 0x7c00u) code = 0x7c00u; // overflow rounds to infinity
    return (uint16_t)(sign | code);
}

inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, field = h >> 10 & 0x1f, mant = h & 0x3ffu;
    if (field == 0x1f) return bits_f32(sign | 0x7f800000u | mant << 13);
    if (field == 0) return bits_f32(sign) + (sign ? -1.0f : 1.0f) * (float)mant * 0x1p-24f;
    return bits_f32(sign | (field + 112u) << 23 | mant << 13);
}

inline uint16_t f32_to_bf16(float f) {
    uint32_t x = f32_bits(f), sign = x >> 16 & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fff;
    if (ax == 0x7f800000u) return (uint16_t)(sign | 0x7f80u);
    if (ax == 0) return (uint16_t)sign;
    uint64_t m;
    int e;
    f32_parts(ax, m, e);
    uint32_t code = round_to_format(m, e, 7, 127);
    if (code >= 0x7f80u) code = 0x7f80u;
    return (uint16_t)(sign | code);
}

inline float bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

// An integer (magnitude and sign) rounded once to f16 (mbits 10) or bf16 (mbits 7).
inline uint16_t int_to_half_format(uint64_t mag, bool negative, int mbits, int bias) {
    if (mag == 0) return 0;
    uint32_t inf = (uint32_t)((2 * bias + 1) << mbits);
    uint32_t code = round_to_format(mag, 0, mbits, bias);
    if (code >= inf) code = inf;
    return (uint16_t)((negative ? 0x8000u : 0u) | code);
}

inline uint64_t magnitude(long long v) {
    return v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
}

// OCP FP8 (E4M3: bias 7, no infinity, NaN S.1111.111, max 448 = 0x7e; E5M2: bias 15, IEEE
// infinities and NaNs, max 57344 = 0x7b), from f32 by `cvt.rn.satfinite`.
inline uint8_t f32_to_fp8(float f, bool e4m3) {
    uint32_t x = f32_bits(f), sign = x >> 24 & 0x80u, ax = x & 0x7fffffffu;
    uint32_t max_code = e4m3 ? 0x7eu : 0x7bu;
    if (ax > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (ax == 0x7f800000u) return (uint8_t)(sign | max_code);
    if (ax == 0) return (uint8_t)sign;
    uint64_t m;
    int e;
    f32_parts(ax, m, e);
    uint32_t code = e4m3 ? round_to_format(m, e, 3, 7) : round_to_format(m, e, 2, 15);
    if (code > max_code) code = max_code;
    return (uint8_t)(sign | code);
}

// FP8 → f16 bits, exact (every FP8 value is an f16 value).
inline uint16_t fp8_to_f16(uint8_t x, bool e4m3) {
    uint32_t sign = (uint32_t)(x & 0x80u) << 8;
    if (!e4m3) {
        uint16_t h = (uint16_t)(x << 8);
        if ((h & 0x7fffu) > 0x7c00u) h |= 0x0200u; // NaN: quiet
        return h;
    }
    uint32_t field = x >> 3 & 0xf, mant = x & 7u;
    if ((x & 0x7fu) == 0x7fu) return 0x7fff;
    if (field == 0) {
        if (mant == 0) return (uint16_t)sign;
        // mant * 2^-9: normalize into f16 (its exponent range covers it).
        int p = msb(mant);
        uint32_t hfield = (uint32_t)(p - 9 + 15);
        uint32_t hmant = (mant << (10 - p)) & 0x3ffu;
        return (uint16_t)(sign | hfield << 10 | hmant);
    }
    return (uint16_t)(sign | (field - 7 + 15) << 10 | mant << 7);
}

} // namespace wf_host

// --- the CUDA types and functions the generated code names ---

struct __half_raw {
    unsigned short x;
};
struct __half {
    unsigned short __x;
    __half() = default;
    __half(__half_raw r) : __x(r.x) {}
};
struct __nv_bfloat16 {
    unsigned short __x;
};
typedef unsigned char __nv_fp8_storage_t;
enum __nv_saturation_t { __NV_NOSAT, __NV_SATFINITE };
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };

inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 h; h.__x = u; return h; }

inline float __half2float(__half h) { return wf_host::f16_to_f32(h.__x); }
inline __half __float2half_rn(float f) { return __ushort_as_half(wf_host::f32_to_f16(f)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return wf_host::bf16_to_f32(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __ushort_as_bfloat16(wf_host::f32_to_bf16(f)); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

inline __half __int2half_rn(int v) { return __ushort_as_half(wf_host::int_to_half_format(wf_host::magnitude(v), v < 0, 10, 15)); }
inline __half __uint2half_rn(unsigned int v) { return __ushort_as_half(wf_host::int_to_half_format(v, false, 10, 15)); }
inline __half __ll2half_rn(long long v) { return __ushort_as_half(wf_host::int_to_half_format(wf_host::magnitude(v), v < 0, 10, 15)); }
inline __half __ull2half_rn(unsigned long long v) { return __ushort_as_half(wf_host::int_to_half_format(v, false, 10, 15)); }
inline __nv_bfloat16 __int2bfloat16_rn(int v) { return __ushort_as_bfloat16(wf_host::int_to_half_format(wf_host::magnitude(v), v < 0, 7, 127)); }
inline __nv_bfloat16 __uint2bfloat16_rn(unsigned int v) { return __ushort_as_bfloat16(wf_host::int_to_half_format(v, false, 7, 127)); }
inline __nv_bfloat16 __ll2bfloat16_rn(long long v) { return __ushort_as_bfloat16(wf_host::int_to_half_format(wf_host::magnitude(v), v < 0, 7, 127)); }
inline __nv_bfloat16 __ull2bfloat16_rn(unsigned long long v) { return __ushort_as_bfloat16(wf_host::int_to_half_format(v, false, 7, 127)); }

inline __half_raw __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t x, __nv_fp8_interpretation_t kind) {
    return __half_raw{wf_host::fp8_to_f16(x, kind == __NV_E4M3)};
}

inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float f, __nv_saturation_t sat, __nv_fp8_interpretation_t kind) {
    if (sat != __NV_SATFINITE) abort(); // the generator only asks for satfinite
    return wf_host::f32_to_fp8(f, kind == __NV_E4M3);
}

inline unsigned int __float_as_uint(float f) { return wf_host::f32_bits(f); }
inline int __float_as_int(float f) { return (int)wf_host::f32_bits(f); }
inline float __uint_as_float(unsigned int u) { return wf_host::bits_f32(u); }
inline float __int_as_float(int i) { return wf_host::bits_f32((unsigned int)i); }

// cvt.rzi.{s32,u32,s64,u64}.f32: truncate, saturate, NaN → 0.
inline int __float2int_rz(float x) {
    if (x != x) return 0;
    if (x >= 0x1p31f) return 2147483647;
    if (x <= -0x1p31f) return -2147483647 - 1;
    return (int)x;
}
inline unsigned int __float2uint_rz(float x) {
    if (!(x > -1.0f)) return 0;
    if (x >= 0x1p32f) return 4294967295u;
    return (unsigned int)x;
}
inline long long __float2ll_rz(float x) {
    if (x != x) return 0;
    if (x >= 0x1p63f) return 9223372036854775807ll;
    if (x <= -0x1p63f) return -9223372036854775807ll - 1;
    return (long long)x;
}
inline unsigned long long __float2ull_rz(float x) {
    if (!(x > -1.0f)) return 0;
    if (x >= 0x1p64f) return 18446744073709551615ull;
    return (unsigned long long)x;
}

// Integer min/max (CUDA's overloads).
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

namespace wf_host {
// min.f32 / max.f32 (PTX ISA): a NaN operand loses to a number, two NaNs give the canonical
// NaN, and -0 orders below +0.
inline float min_f32(float a, float b) {
    if (a != a && b != b) return bits_f32(0x7fffffffu);
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return bits_f32(f32_bits(a) | f32_bits(b));
    return a < b ? a : b;
}
inline float max_f32(float a, float b) {
    if (a != a && b != b) return bits_f32(0x7fffffffu);
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return bits_f32(f32_bits(a) & f32_bits(b));
    return a > b ? a : b;
}
// rsqrtf: the interpreter's documented model, 1 / sqrt(x) rounded twice.
inline float rsqrt_f32(float x) { return 1.0f / sqrtf(x); }
} // namespace wf_host

// glibc declares fminf/fmaxf with IEEE minNum semantics (signed zeros unordered); the GPU's
// order -0 below +0. Replace them, and supply rsqrtf, which libm lacks.
#define fminf(a, b) ::wf_host::min_f32((a), (b))
#define fmaxf(a, b) ::wf_host::max_f32((a), (b))
#define rsqrtf(x) ::wf_host::rsqrt_f32((x))
