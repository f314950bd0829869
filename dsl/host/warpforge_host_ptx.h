// warpforge host harness: the inline PTX that the generated helpers wrap, written from the
// PTX ISA (not from the interpreter). The generated helpers call these under WARPFORGE_HOST
// with the operands in the order of their `asm` strings.
// - mma.sync m16n8k16 (f16/bf16 → f32, f16 → f16) and m16n8k32 (e4m3/e5m2 → f32): fragment
//   layouts of "Matrix Fragments for mma.m16n8k16 with floating point type" and "... for
//   mma.m16n8k32"; groupID g = lane >> 2, threadID_in_group t = lane % 4. The ISA leaves the
//   accumulation order and rounding unspecified; here the exact products are summed in
//   double (compensated) and rounded once.
// - ldmatrix.m8n8.x{1,2,4}[.trans]: lanes 8m..8m+7 address the rows of matrix m; register m
//   of lane l holds row l/4, columns 2(l%4), 2(l%4)+1 (transposed: rows 2(l%4), 2(l%4)+1 of
//   column l/4).
// - cp.async: each thread's copies wait in a queue; commit_group closes a group; wait_group N
//   performs every copy except those of the newest N groups (so data lands at the wait).
// - lop3, prmt (default mode), ex2.approx.f32 (the interpreter's documented model: 2^x
//   correctly rounded), and the packed f16x2/bf16x2 arithmetic (each lane rounded once to
//   nearest even; NaN results canonical; min/max order -0 below +0, a NaN loses).
#pragma once

namespace wf_host {
namespace ptx {

inline uint32_t lop3_b32(uint32_t a, uint32_t b, uint32_t c, uint32_t lut) {
    uint32_t d = 0;
    for (int i = 0; i < 32; ++i) {
        uint32_t index = (a >> i & 1u) << 2 | (b >> i & 1u) << 1 | (c >> i & 1u);
        d |= (lut >> index & 1u) << i;
    }
    return d;
}

inline uint32_t prmt_b32(uint32_t a, uint32_t b, uint32_t c) {
    uint8_t bytes[8];
    for (int i = 0; i < 4; ++i) {
        bytes[i] = (uint8_t)(a >> (8 * i));
        bytes[4 + i] = (uint8_t)(b >> (8 * i));
    }
    uint32_t d = 0;
    for (int i = 0; i < 4; ++i) {
        uint32_t sel = c >> (4 * i) & 0xfu;
        uint8_t byte = bytes[sel & 7u];
        if (sel & 8u) byte = (byte & 0x80u) ? 0xff : 0x00;
        d |= (uint32_t)byte << (8 * i);
    }
    return d;
}

inline float ex2_approx_f32(float x) {
    return (float)exp2((double)x);
}

// --- packed 16-bit pairs ---

inline double half_value(uint16_t h, bool bf16) {
    return bf16 ? (double)bf16_to_f32(h) : (double)f16_to_f32(h);
}

// A finite double rounded once to f16 / bf16 (nearest even); canonical NaN.
inline uint16_t round_double(double v, bool bf16) {
    if (v != v) return 0x7fff;
    uint64_t u;
    memcpy(&u, &v, 8);
    uint32_t sign = (uint32_t)(u >> 48) & 0x8000u;
    uint32_t inf = bf16 ? 0x7f80u : 0x7c00u;
    uint64_t au = u & 0x7fffffffffffffffull;
    if (au == 0x7ff0000000000000ull) return (uint16_t)(sign | inf);
    if (au == 0) return (uint16_t)sign;
    uint64_t m = au & 0xfffffffffffffull;
    int field = (int)(au >> 52);
    int e;
    if (field == 0) {
        e = -1074;
    } else {
        m |= 1ull << 52;
        e = field - 1075;
    }
    uint32_t code = bf16 ? round_to_format(m, e, 7, 127) : round_to_format(m, e, 10, 15);
    if (code >= inf) code = inf;
    return (uint16_t)(sign | code);
}

// x + y, both exact doubles, as a double that rounds to any narrower format as x + y would:
// round to odd (53 bits ≥ 2 · 11 + 2).
inline double sum_to_odd(double x, double y) {
    double s = x + y;
    if (s != s || s - s != 0) return s;
    double bb = s - x;
    double err = (x - (s - bb)) + (y - bb);
    if (err == 0) return s;
    double trunc = ((s > 0) == (err < 0)) ? nextafter(s, 0.0) : s;
    uint64_t u;
    memcpy(&u, &trunc, 8);
    u |= 1;
    memcpy(&trunc, &u, 8);
    return trunc;
}

enum class Op2 { Add, Sub, Mul, Fma, Min, Max };

inline uint16_t lane2(Op2 op, bool bf16, uint16_t a, uint16_t b, uint16_t c) {
    double x = half_value(a, bf16), y = half_value(b, bf16), z = half_value(c, bf16);
    switch (op) {
    case Op2::Add: return round_double(x + y, bf16); // exact in double
    case Op2::Sub: return round_double(x - y, bf16);
    case Op2::Mul: return round_double(x * y, bf16);
    case Op2::Fma: return round_double(sum_to_odd(x * y, z), bf16);
    default: break;
    }
    bool max = op == Op2::Max;
    if (x != x && y != y) return 0x7fff;
    if (x != x) return b;
    if (y != y) return a;
    if (x == y) return max ? (uint16_t)(a & b) : (uint16_t)(a | b); // signed zeros
    return (x > y) == max ? a : b;
}

inline uint32_t pair(Op2 op, bool bf16, uint32_t a, uint32_t b, uint32_t c) {
    uint32_t lo = lane2(op, bf16, (uint16_t)a, (uint16_t)b, (uint16_t)c);
    uint32_t hi = lane2(op, bf16, (uint16_t)(a >> 16), (uint16_t)(b >> 16), (uint16_t)(c >> 16));
    return lo | hi << 16;
}

inline uint32_t add_rn_f16x2(uint32_t a, uint32_t b) { return pair(Op2::Add, false, a, b, 0); }
inline uint32_t sub_rn_f16x2(uint32_t a, uint32_t b) { return pair(Op2::Sub, false, a, b, 0); }
inline uint32_t mul_rn_f16x2(uint32_t a, uint32_t b) { return pair(Op2::Mul, false, a, b, 0); }
inline uint32_t fma_rn_f16x2(uint32_t a, uint32_t b, uint32_t c) { return pair(Op2::Fma, false, a, b, c); }
inline uint32_t fma_rn_bf16x2(uint32_t a, uint32_t b, uint32_t c) { return pair(Op2::Fma, true, a, b, c); }
inline uint32_t max_f16x2(uint32_t a, uint32_t b) { return pair(Op2::Max, false, a, b, 0); }
inline uint32_t min_f16x2(uint32_t a, uint32_t b) { return pair(Op2::Min, false, a, b, 0); }
inline uint32_t max_bf16x2(uint32_t a, uint32_t b) { return pair(Op2::Max, true, a, b, 0); }
inline uint32_t min_bf16x2(uint32_t a, uint32_t b) { return pair(Op2::Min, true, a, b, 0); }

// --- mma.sync ---

enum MmaKind : uint64_t { F16F32, Bf16F32, F16F16, E4m3F32, E5m2F32 };

inline double element(MmaKind kind, uint32_t reg, unsigned int i) {
    switch (kind) {
    case E4m3F32: return f16_to_f32(fp8_to_f16((uint8_t)(reg >> (8 * i)), true));
    case E5m2F32: return f16_to_f32(fp8_to_f16((uint8_t)(reg >> (8 * i)), false));
    case Bf16F32: return bf16_to_f32((uint16_t)(reg >> (16 * i)));
    default: return f16_to_f32((uint16_t)(reg >> (16 * i)));
    }
}

// Operands per lane: in[0] kind, in[1..5] A, in[5..7] B, in[7..11] C (f32 bits, or two
// f16x2 registers in in[7..9]).
inline void mma_compute(WarpSlot& s, unsigned int lanes) {
    (void)lanes; // the whole warp: `mma` refuses partial warps before arriving
    MmaKind kind = (MmaKind)s.in[0][0];
    bool fp8 = kind == E4m3F32 || kind == E5m2F32;
    const int K = fp8 ? 32 : 16;
    double A[16][32], B[32][8], C[16][8];
    for (unsigned int lane = 0; lane < 32; ++lane) {
        unsigned int g = lane >> 2, t = lane & 3u;
        const uint64_t* in = s.in[lane];
        if (fp8) {
            for (unsigned int i = 0; i < 16; ++i) {
                unsigned int row = g + 8 * (i >> 2 & 1u), col = 4 * t + (i & 3u) + 16 * (i >= 8);
                A[row][col] = element(kind, (uint32_t)in[1 + i / 4], i % 4);
            }
            for (unsigned int i = 0; i < 8; ++i) {
                unsigned int k = 4 * t + (i & 3u) + 16 * (i >= 4);
                B[k][g] = element(kind, (uint32_t)in[5 + i / 4], i % 4);
            }
        } else {
            for (unsigned int i = 0; i < 8; ++i) {
                unsigned int row = g + 8 * (i >> 1 & 1u), col = 2 * t + (i & 1u) + 8 * (i >= 4);
                A[row][col] = element(kind, (uint32_t)in[1 + i / 2], i % 2);
            }
            for (unsigned int i = 0; i < 4; ++i) {
                unsigned int k = 2 * t + (i & 1u) + 8 * (i >= 2);
                B[k][g] = element(kind, (uint32_t)in[5 + i / 2], i % 2);
            }
        }
        for (unsigned int i = 0; i < 4; ++i) {
            unsigned int row = g + 8 * (i >= 2), col = 2 * t + (i & 1u);
            if (kind == F16F16) {
                C[row][col] = f16_to_f32((uint16_t)(in[7 + i / 2] >> (16 * (i % 2))));
            } else {
                C[row][col] = bits_f32((uint32_t)in[7 + i]);
            }
        }
    }
    for (unsigned int lane = 0; lane < 32; ++lane) {
        unsigned int g = lane >> 2, t = lane & 3u;
        uint32_t halves[4];
        for (unsigned int i = 0; i < 4; ++i) {
            unsigned int row = g + 8 * (i >= 2), col = 2 * t + (i & 1u);
            // Neumaier-compensated sum of the exact products and C.
            double sum = C[row][col], comp = 0;
            for (int k = 0; k < K; ++k) {
                double p = A[row][k] * B[k][col];
                double next = sum + p;
                comp += fabs(sum) >= fabs(p) ? (sum - next) + p : (p - next) + sum;
                sum = next;
            }
            double exact = sum + comp;
            if (kind == F16F16) {
                halves[i] = round_double(exact, false);
            } else {
                s.out[lane][i] = f32_bits((float)exact);
            }
        }
        if (kind == F16F16) {
            s.out[lane][0] = halves[0] | halves[1] << 16;
            s.out[lane][1] = halves[2] | halves[3] << 16;
        }
    }
}

inline void mma(const char* name, MmaKind kind, uint32_t* d, const uint32_t* a, const uint32_t* b,
                const uint32_t* c, unsigned int c_regs) {
    uint64_t in[11] = {kind};
    for (int i = 0; i < 4; ++i) in[1 + i] = a[i];
    for (int i = 0; i < 2; ++i) in[5 + i] = b[i];
    for (unsigned int i = 0; i < c_regs; ++i) in[7 + i] = c[i];
    Block& blk = *running;
    unsigned int w = linear_thread() / 32u;
    if (existing_lanes(blk, w) != 0xffffffffu) fail("%s in a partial warp", name);
    WarpSlot& s = warp_collective(name, 0xffffffffu, in, 11, nullptr, mma_compute);
    unsigned int lane = lane_of(linear_thread());
    unsigned int d_regs = kind == F16F16 ? 2 : 4;
    for (unsigned int i = 0; i < d_regs; ++i) d[i] = (uint32_t)s.out[lane][i];
}

inline void mma_m16n8k16_row_col_f32_f16_f16_f32(float* d, const unsigned int* a, const unsigned int* b, const float* c) {
    mma("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", F16F32, reinterpret_cast<uint32_t*>(d), a, b,
        reinterpret_cast<const uint32_t*>(c), 4);
}
inline void mma_m16n8k16_row_col_f32_bf16_bf16_f32(float* d, const unsigned int* a, const unsigned int* b, const float* c) {
    mma("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", Bf16F32, reinterpret_cast<uint32_t*>(d), a, b,
        reinterpret_cast<const uint32_t*>(c), 4);
}
inline void mma_m16n8k16_row_col_f16_f16_f16_f16(unsigned int* d, const unsigned int* a, const unsigned int* b, const unsigned int* c) {
    mma("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16", F16F16, d, a, b, c, 2);
}
inline void mma_m16n8k32_row_col_f32_e4m3_e4m3_f32(float* d, const unsigned int* a, const unsigned int* b, const float* c) {
    mma("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32", E4m3F32, reinterpret_cast<uint32_t*>(d), a, b,
        reinterpret_cast<const uint32_t*>(c), 4);
}
inline void mma_m16n8k32_row_col_f32_e5m2_e5m2_f32(float* d, const unsigned int* a, const unsigned int* b, const float* c) {
    mma("mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32", E5m2F32, reinterpret_cast<uint32_t*>(d), a, b,
        reinterpret_cast<const uint32_t*>(c), 4);
}

// --- ldmatrix ---

inline void ldmatrix_compute(WarpSlot& s, unsigned int) {
    unsigned int n = (unsigned int)s.in[0][0];
    bool trans = s.in[0][1] != 0;
    for (unsigned int lane = 0; lane < 32; ++lane) {
        for (unsigned int m = 0; m < n; ++m) {
            uint32_t word;
            if (!trans) {
                const unsigned char* row = static_cast<const unsigned char*>(s.ptr[8 * m + lane / 4]);
                memcpy(&word, row + 4 * (lane % 4), 4);
            } else {
                uint16_t lo, hi;
                const unsigned char* r0 = static_cast<const unsigned char*>(s.ptr[8 * m + 2 * (lane % 4)]);
                const unsigned char* r1 = static_cast<const unsigned char*>(s.ptr[8 * m + 2 * (lane % 4) + 1]);
                memcpy(&lo, r0 + 2 * (lane / 4), 2);
                memcpy(&hi, r1 + 2 * (lane / 4), 2);
                word = (uint32_t)lo | (uint32_t)hi << 16;
            }
            s.out[lane][m] = word;
        }
    }
}

inline void ldmatrix(unsigned int n, bool trans, const void* row, uint32_t* regs) {
    const char* name = trans ? "ldmatrix.sync.aligned.m8n8.trans.shared.b16" : "ldmatrix.sync.aligned.m8n8.shared.b16";
    Block& blk = *running;
    unsigned int lane = lane_of(linear_thread());
    if (existing_lanes(blk, linear_thread() / 32u) != 0xffffffffu) fail("%s in a partial warp", name);
    // Only lanes 0..8n give row addresses; each must be 16-byte aligned.
    if (lane < 8 * n && (reinterpret_cast<uintptr_t>(row) & 15u) != 0) {
        fail("%s: lane %u's row address %p is not 16-byte aligned", name, lane, row);
    }
    uint64_t in[2] = {n, trans};
    WarpSlot& s = warp_collective(name, 0xffffffffu, in, 2, row, ldmatrix_compute);
    for (unsigned int m = 0; m < n; ++m) regs[m] = (uint32_t)s.out[lane][m];
}

// --- cp.async ---

inline AsyncQueue& queue() {
    return running->queues[linear_thread()];
}

inline void cp_async(void* dst, const void* src, unsigned int bytes, unsigned int src_bytes) {
    if (src_bytes > bytes) fail("cp.async: src-size %u exceeds cp-size %u", src_bytes, bytes);
    if ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) % bytes != 0) {
        fail("cp.async of %u bytes: dst %p or src %p is not %u-byte aligned", bytes, dst, src, bytes);
    }
    AsyncQueue& q = queue();
    if (q.len == q.cap) {
        q.cap = q.cap ? q.cap * 2 : 16;
        q.copies = static_cast<AsyncCopy*>(realloc(q.copies, q.cap * sizeof(AsyncCopy)));
    }
    q.copies[q.len++] = AsyncCopy{dst, src, bytes, src_bytes, ~0u};
}

inline void cp_async_commit_group() {
    AsyncQueue& q = queue();
    for (unsigned int i = 0; i < q.len; ++i) {
        if (q.copies[i].group == ~0u) q.copies[i].group = q.committed;
    }
    q.committed += 1;
}

inline void cp_async_wait_group(unsigned int n) {
    AsyncQueue& q = queue();
    unsigned int keep = 0;
    for (unsigned int i = 0; i < q.len; ++i) {
        AsyncCopy c = q.copies[i];
        bool complete = c.group != ~0u && c.group + n < q.committed;
        if (complete) {
            memcpy(c.dst, c.src, c.src_bytes);
            memset(static_cast<unsigned char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
        } else {
            q.copies[keep++] = c;
        }
    }
    q.len = keep;
}

} // namespace ptx
} // namespace wf_host
