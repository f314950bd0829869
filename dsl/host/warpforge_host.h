// warpforge host harness: runs the CUDA C that warpforge's code generator emits on the CPU,
// with CUDA's execution model. The generated source is compiled unchanged by g++ after
//     #define WARPFORGE_HOST 1
//     #include "warpforge_host.h"
// at its top (the driver in dsl/src/host/ adds those two lines and the launch entry).
//
// Model:
// - A block's threads are ucontext fibers on one OS thread; a fiber runs until it reaches a
//   barrier or a warp collective, then the next runnable fiber runs (in thread order).
//   `__syncthreads()` releases when every thread that has not exited has arrived; a warp
//   collective (shuffle, vote, mma, ldmatrix) runs when every lane of its mask has arrived,
//   computed by the last lane to arrive. A state where no fiber can run is reported as an
//   error naming the blocked threads (a divergent barrier or collective), never a hang.
// - Blocks run one after another, in order, on the calling thread, so atomics need no
//   hardware atomicity and results never depend on block order.
// - `__shared__` is `thread_local` (a block-scope thread_local is static): one copy per OS
//   thread, which is one block at a time. `extern __shared__` names `wf_smem`, defined here.
// - Numbers: our own exact f16/bf16/FP8 conversions (warpforge_host_types.h) and PTX
//   instructions written from the PTX ISA (warpforge_host_ptx.h), not the interpreter's code.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <sys/mman.h>
#include <ucontext.h>
#include <utility>
#include <type_traits>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define WF_HOST_ASAN 1
#endif

// CUDA's declaration specifiers. On the host, a shared variable is per OS thread.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ thread_local
#define __constant__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;
static const int warpSize = 32;

// The dynamic shared memory of the running block: the largest opt-in size of any arch
// (sm_90's 227 KiB), 128-byte aligned.
thread_local __attribute__((aligned(128))) unsigned char wf_smem[232448];

namespace wf_host {

// Thrown nowhere: errors are recorded and the block stops (see `fail`).
struct LaunchSpec {
    unsigned int grid[3];
    unsigned int block[3];
    unsigned int dynamic_shared_bytes;
    // Bytes of each fiber's stack.
    unsigned int stack_bytes;
};

enum class State : unsigned char { Runnable, AtBarrier, AtWarp, Exited };

// One warp collective in progress: each lane's operands and results, and what it is.
struct WarpSlot {
    const char* op;       // the collective's name; every lane must use the same
    unsigned int mask;    // the member mask; every lane must use the same
    unsigned int arrived; // lanes that have arrived
    uint64_t in[32][12];  // each lane's operands
    const void* ptr[32];  // each lane's address operand (ldmatrix)
    uint64_t out[32][4];  // each lane's results
    void (*compute)(WarpSlot&, unsigned int lanes);
};

struct Fiber {
    ucontext_t ctx;
    State state;
#ifdef WF_HOST_ASAN
    void* fake_stack;
#endif
};

// Per-thread pending cp.async copies (see warpforge_host_ptx.h).
struct AsyncCopy {
    void* dst;
    const void* src;
    unsigned int bytes;
    unsigned int src_bytes;
    unsigned int group; // the group it was committed in; ~0u while uncommitted
};

struct AsyncQueue {
    AsyncCopy* copies = nullptr;
    unsigned int len = 0, cap = 0;
    unsigned int committed = 0; // groups committed so far
};

struct Block {
    unsigned int threads = 0;
    Fiber* fibers = nullptr;
    unsigned char* stacks = nullptr;
    size_t stack_bytes = 0, stride = 0, mapped = 0;
    ucontext_t scheduler;
    unsigned int current = 0;
    unsigned int at_barrier = 0;
    int barrier_line = 0; // the generated line of the barrier the waiting threads are at
    unsigned int exited = 0;
    WarpSlot* warps = nullptr;
    AsyncQueue* queues = nullptr;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
    char* error = nullptr;
    size_t error_len = 0;
    bool failed = false;
#ifdef WF_HOST_ASAN
    // The scheduler's stack, as ASan's fiber API reports it to a fiber's first switch.
    const void* main_bottom = nullptr;
    size_t main_size = 0;
#endif
};

inline thread_local Block* running = nullptr;

inline void set_thread_index(unsigned int t) {
    threadIdx.x = t % blockDim.x;
    threadIdx.y = t / blockDim.x % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

inline unsigned int linear_thread() {
    return running->current;
}

inline unsigned int lane_of(unsigned int t) {
    return t & 31u;
}

// Back to the scheduler; returns when this fiber is resumed. `last` marks a fiber that will
// never resume (exited or failed), so ASan may drop its fake stack.
inline void yield(bool last = false) {
    Block& b = *running;
    Fiber& f = b.fibers[b.current];
#ifdef WF_HOST_ASAN
    __sanitizer_start_switch_fiber(last ? nullptr : &f.fake_stack, b.main_bottom, b.main_size);
#else
    (void)last;
#endif
    swapcontext(&f.ctx, &b.scheduler);
#ifdef WF_HOST_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &b.main_bottom, &b.main_size);
#endif
}

// Records an error for the launch and stops this block: the fiber never resumes.
[[noreturn]] inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

inline void fail(const char* fmt, ...) {
    Block& b = *running;
    if (!b.failed) {
        b.failed = true;
        int used = snprintf(b.error, b.error_len, "block (%u, %u, %u), thread (%u, %u, %u): ",
                            blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
                            threadIdx.z);
        if (used < 0) used = 0;
        if ((size_t)used < b.error_len) {
            va_list args;
            va_start(args, fmt);
            vsnprintf(b.error + used, b.error_len - used, fmt, args);
            va_end(args);
        }
    }
    for (;;) yield(true);
}

// Lanes of warp `w` that exist in this block (the last warp may be partial).
inline unsigned int existing_lanes(const Block& b, unsigned int w) {
    unsigned int first = w * 32u;
    unsigned int n = b.threads - first < 32u ? b.threads - first : 32u;
    return n == 32u ? 0xffffffffu : ((1u << n) - 1u);
}

inline void barrier_release_if_complete(Block& b) {
    if (b.at_barrier == 0 || b.at_barrier + b.exited < b.threads) return;
    for (unsigned int t = 0; t < b.threads; ++t) {
        if (b.fibers[t].state == State::AtBarrier) b.fibers[t].state = State::Runnable;
    }
    b.at_barrier = 0;
}

// `line` is the generated line of the call: threads waiting at barriers on different lines
// are a divergent barrier (undefined for `bar.sync`), reported rather than released.
inline void syncthreads(int line) {
    Block& b = *running;
    if (b.at_barrier == 0) {
        b.barrier_line = line;
    } else if (b.barrier_line != line) {
        fail("__syncthreads on line %d while other threads wait at __syncthreads on line %d "
             "(a barrier in divergent code)", line, b.barrier_line);
    }
    b.fibers[b.current].state = State::AtBarrier;
    b.at_barrier += 1;
    barrier_release_if_complete(b);
    while (b.fibers[b.current].state == State::AtBarrier) yield();
}

// A warp collective: this lane's operands go in, its results come out once every lane of
// `mask` has arrived; the last to arrive runs `compute` for the whole warp.
inline WarpSlot& warp_collective(const char* op, unsigned int mask, const uint64_t* in,
                                 unsigned int n_in, const void* ptr,
                                 void (*compute)(WarpSlot&, unsigned int)) {
    Block& b = *running;
    unsigned int t = b.current, lane = lane_of(t), w = t / 32u;
    WarpSlot& s = b.warps[w];
    if (!(mask >> lane & 1u)) fail("%s: this lane (%u) is not in the member mask 0x%08x", op, lane, mask);
    unsigned int lanes = mask & existing_lanes(b, w);
    if (s.arrived == 0) {
        s.op = op;
        s.mask = mask;
        s.compute = compute;
    } else if (strcmp(s.op, op) != 0 || s.mask != mask) {
        fail("warp %u: lane %u calls %s (mask 0x%08x) while other lanes are in %s (mask 0x%08x)",
             w, lane, op, mask, s.op, s.mask);
    }
    for (unsigned int i = 0; i < n_in; ++i) s.in[lane][i] = in[i];
    s.ptr[lane] = ptr;
    s.arrived |= 1u << lane;
    b.fibers[t].state = State::AtWarp;
    if (s.arrived == lanes) {
        s.compute(s, lanes);
        s.arrived = 0;
        for (unsigned int l = 0; l < 32; ++l) {
            if (lanes >> l & 1u) b.fibers[w * 32u + l].state = State::Runnable;
        }
    }
    while (b.fibers[t].state == State::AtWarp) yield();
    return s;
}

inline void fiber_entry() {
    Block& b = *running;
#ifdef WF_HOST_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b.main_bottom, &b.main_size);
#endif
    b.body(b.body_arg);
    b.fibers[b.current].state = State::Exited;
    b.exited += 1;
    barrier_release_if_complete(b);
    yield(true);
}

// Which threads are blocked where, for a deadlock report.
inline void describe_blocked(Block& b, char* out, size_t len) {
    size_t used = 0;
    auto put = [&](const char* text) {
        int n = snprintf(out + used, len - used, "%s", text);
        if (n > 0) used += (size_t)n < len - used ? (size_t)n : len - used - 1;
    };
    char line[160];
    unsigned int shown = 0;
    for (unsigned int t = 0; t < b.threads && shown < 8; ++t) {
        const Fiber& f = b.fibers[t];
        if (f.state == State::AtBarrier) {
            snprintf(line, sizeof line, " thread %u waits at __syncthreads;", t);
        } else if (f.state == State::AtWarp) {
            const WarpSlot& s = b.warps[t / 32u];
            snprintf(line, sizeof line, " thread %u waits in %s (lanes arrived 0x%08x of mask 0x%08x);",
                     t, s.op, s.arrived, s.mask);
        } else {
            continue;
        }
        put(line);
        shown += 1;
    }
    snprintf(line, sizeof line, " %u of %u threads have exited", b.exited, b.threads);
    put(line);
}

inline bool run_block(Block& b) {
    for (unsigned int t = 0; t < b.threads; ++t) {
        Fiber& f = b.fibers[t];
        f.state = State::Runnable;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = b.stacks + t * b.stride;
        f.ctx.uc_stack.ss_size = b.stack_bytes;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_entry, 0);
        b.queues[t].len = 0;
        b.queues[t].committed = 0;
    }
    for (unsigned int w = 0; w < (b.threads + 31u) / 32u; ++w) b.warps[w].arrived = 0;
    b.at_barrier = 0;
    b.exited = 0;
    for (;;) {
        bool ran = false;
        for (unsigned int t = 0; t < b.threads && !b.failed; ++t) {
            if (b.fibers[t].state != State::Runnable) continue;
            ran = true;
            b.current = t;
            set_thread_index(t);
#ifdef WF_HOST_ASAN
            void* fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, b.stacks + t * b.stride, b.stack_bytes);
#endif
            swapcontext(&b.scheduler, &b.fibers[t].ctx);
#ifdef WF_HOST_ASAN
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
        }
        if (b.failed) return false;
        if (b.exited == b.threads) return true;
        if (!ran) {
            int used = snprintf(b.error, b.error_len,
                                "block (%u, %u, %u): deadlock: a barrier or warp collective that not "
                                "every thread reaches:",
                                blockIdx.x, blockIdx.y, blockIdx.z);
            if (used > 0 && (size_t)used < b.error_len) {
                describe_blocked(b, b.error + used, b.error_len - used);
            }
            return false;
        }
    }
}

// Runs `body(arg)` as every thread of every block of the grid. Returns 0, or 1 with a
// message in `error`.
inline int launch(const LaunchSpec& spec, void (*body)(void*), void* arg, char* error,
                  size_t error_len) {
    Block b;
    b.threads = spec.block[0] * spec.block[1] * spec.block[2];
    if (b.threads == 0 || spec.grid[0] * spec.grid[1] * spec.grid[2] == 0) return 0;
    if (spec.dynamic_shared_bytes > sizeof wf_smem) {
        snprintf(error, error_len, "%u bytes of dynamic shared memory; the host harness has %zu",
                 spec.dynamic_shared_bytes, sizeof wf_smem);
        return 1;
    }
    const size_t page = 4096;
    b.stack_bytes = (spec.stack_bytes + page - 1) / page * page;
    // One guard page below each stack, so an overflow faults instead of corrupting.
    size_t per = b.stack_bytes + page;
    b.mapped = per * b.threads;
    void* mem = mmap(nullptr, b.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        snprintf(error, error_len, "cannot map %zu bytes of fiber stacks", b.mapped);
        return 1;
    }
    unsigned char* base = static_cast<unsigned char*>(mem);
    for (unsigned int t = 0; t < b.threads; ++t) mprotect(base + t * per, page, PROT_NONE);
    // Stack t is [stacks + t * stride, + stack_bytes), after its guard page.
    b.stacks = base + page;
    b.stride = per;
    Fiber* fibers = static_cast<Fiber*>(calloc(b.threads, sizeof(Fiber)));
    WarpSlot* warps = static_cast<WarpSlot*>(calloc((b.threads + 31) / 32, sizeof(WarpSlot)));
    AsyncQueue* queues = static_cast<AsyncQueue*>(calloc(b.threads, sizeof(AsyncQueue)));
    b.fibers = fibers;
    b.warps = warps;
    b.queues = queues;
    b.body = body;
    b.body_arg = arg;
    b.error = error;
    b.error_len = error_len;
    Block* outer = running;
    running = &b;
    blockDim = {spec.block[0], spec.block[1], spec.block[2]};
    gridDim = {spec.grid[0], spec.grid[1], spec.grid[2]};
    int status = 0;
    for (unsigned int z = 0; z < spec.grid[2] && status == 0; ++z) {
        for (unsigned int y = 0; y < spec.grid[1] && status == 0; ++y) {
            for (unsigned int x = 0; x < spec.grid[0] && status == 0; ++x) {
                blockIdx = {x, y, z};
                if (!run_block(b)) status = 1;
            }
        }
    }
    running = outer;
    for (unsigned int t = 0; t < b.threads; ++t) free(queues[t].copies);
    free(queues);
    free(warps);
    free(fibers);
    munmap(mem, b.mapped);
    return status;
}

// Calls `f` with the arguments `args[i]` points to (cuLaunchKernel's kernelParams ABI).
template <typename... Ts, size_t... I>
void call_with(void (*f)(Ts...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<Ts>>*>(args[I])...);
}

template <typename... Ts>
struct Entry {
    void (*f)(Ts...);
    void** args;
    static void run(void* self) {
        Entry& e = *static_cast<Entry*>(self);
        call_with(e.f, e.args, std::index_sequence_for<Ts...>{});
    }
};

template <typename... Ts>
int launch_kernel(void (*f)(Ts...), const LaunchSpec& spec, void** args, char* error,
                  size_t error_len) {
    Entry<Ts...> e{f, args};
    return launch(spec, &Entry<Ts...>::run, &e, error, error_len);
}

} // namespace wf_host

#define __syncthreads() ::wf_host::syncthreads(__LINE__)

#include "warpforge_host_types.h"
#include "warpforge_host_warp.h"
#include "warpforge_host_ptx.h"
