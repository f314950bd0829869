// warpforge host harness: warp shuffles and votes (PTX `shfl.sync`, `vote.sync`), and atomics.
#pragma once

namespace wf_host {

enum ShflMode : uint64_t { Up, Down, Bfly, Idx };

// shfl.sync with CUDA's width 32 (c = 0x1f for idx/down/bfly, 0 for up), from the ISA's
// pseudocode: only b[4:0] is read; an out-of-range source lane gives the lane's own value.
inline void shfl_compute(WarpSlot& s, unsigned int lanes) {
    for (unsigned int lane = 0; lane < 32; ++lane) {
        if (!(lanes >> lane & 1u)) continue;
        uint64_t mode = s.in[lane][0];
        int b = (int)(s.in[lane][2] & 31u);
        int j;
        bool valid;
        switch (mode) {
        case Up: j = (int)lane - b; valid = j >= 0; break;
        case Down: j = (int)lane + b; valid = j <= 31; break;
        case Bfly: j = (int)lane ^ b; valid = j <= 31; break;
        default: j = b; valid = true; break;
        }
        if (!valid) j = (int)lane;
        if (!(lanes >> j & 1u)) {
            // The source lane is not in the mask (or not in the block): undefined in CUDA.
            s.out[lane][1] = 1;
            continue;
        }
        s.out[lane][0] = s.in[j][1];
        s.out[lane][1] = 0;
    }
}

template <typename T>
T shfl(const char* name, ShflMode mode, unsigned int mask, T var, unsigned int b, int width) {
    static_assert(sizeof(T) <= 8, "a shuffled value fits in 64 bits");
    if (width != 32) fail("%s with width %d: the host harness models width 32 only", name, width);
    uint64_t in[3] = {mode, 0, b};
    memcpy(&in[1], &var, sizeof(T));
    WarpSlot& s = warp_collective(name, mask, in, 3, nullptr, shfl_compute);
    unsigned int lane = lane_of(linear_thread());
    if (s.out[lane][1]) fail("%s: the source lane is not in the member mask 0x%08x", name, mask);
    T r;
    memcpy(&r, &s.out[lane][0], sizeof(T));
    return r;
}

inline void ballot_compute(WarpSlot& s, unsigned int lanes) {
    uint64_t bits = 0;
    for (unsigned int l = 0; l < 32; ++l) {
        if ((lanes >> l & 1u) && s.in[l][0]) bits |= 1ull << l;
    }
    for (unsigned int l = 0; l < 32; ++l) s.out[l][0] = bits;
}

inline unsigned int ballot(const char* name, unsigned int mask, int pred) {
    uint64_t in[1] = {pred != 0};
    WarpSlot& s = warp_collective(name, mask, in, 1, nullptr, ballot_compute);
    return (unsigned int)s.out[lane_of(linear_thread())][0];
}

inline float ftz(float x) {
    return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x;
}

} // namespace wf_host

template <typename T>
T __shfl_sync(unsigned int mask, T var, int src, int width = 32) {
    return wf_host::shfl("__shfl_sync", wf_host::Idx, mask, var, (unsigned int)src, width);
}
template <typename T>
T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return wf_host::shfl("__shfl_up_sync", wf_host::Up, mask, var, delta, width);
}
template <typename T>
T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return wf_host::shfl("__shfl_down_sync", wf_host::Down, mask, var, delta, width);
}
template <typename T>
T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = 32) {
    return wf_host::shfl("__shfl_xor_sync", wf_host::Bfly, mask, var, (unsigned int)lane_mask, width);
}

inline unsigned int __ballot_sync(unsigned int mask, int pred) {
    return wf_host::ballot("__ballot_sync", mask, pred);
}
inline int __any_sync(unsigned int mask, int pred) {
    return (wf_host::ballot("__any_sync", mask, pred) & mask) != 0;
}
inline int __all_sync(unsigned int mask, int pred) {
    unsigned int lanes = mask & wf_host::existing_lanes(*wf_host::running, wf_host::linear_thread() / 32u);
    return (wf_host::ballot("__all_sync", mask, pred) & lanes) == lanes;
}
// The lanes of this warp that have not exited.
inline unsigned int __activemask() {
    wf_host::Block& b = *wf_host::running;
    unsigned int w = wf_host::linear_thread() / 32u, m = 0;
    for (unsigned int l = 0; l < 32 && w * 32u + l < b.threads; ++l) {
        if (b.fibers[w * 32u + l].state != wf_host::State::Exited) m |= 1u << l;
    }
    return m;
}
inline void __syncwarp(unsigned int mask = 0xffffffffu) {
    wf_host::ballot("__syncwarp", mask, 0);
}

// Atomics: one block runs at a time on one OS thread and fibers switch only at barriers
// and collectives, so a plain read-modify-write is atomic. Integer adds wrap.
template <typename T>
T atomicAdd(T* p, T v) {
    T old = *p;
    if constexpr (std::is_integral_v<T>) {
        using U = std::make_unsigned_t<T>;
        *p = (T)((U)old + (U)v);
    } else {
        // atom.add.f32 rounds to nearest even and flushes subnormal inputs and results to
        // sign-preserving zero (PTX ISA, atom).
        *p = wf_host::ftz(wf_host::ftz(old) + wf_host::ftz(v));
    }
    return old;
}
template <typename T>
T atomicMin(T* p, T v) {
    static_assert(std::is_integral_v<T>, "atomicMin on integers");
    T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <typename T>
T atomicMax(T* p, T v) {
    static_assert(std::is_integral_v<T>, "atomicMax on integers");
    T old = *p;
    *p = v > old ? v : old;
    return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
    T old = *p;
    if (old == compare) *p = v;
    return old;
}
