#!/usr/bin/env python3
"""Triton as a peer in gpu-check: a matmul and an FP8 row quantizer, written here from
Triton's documented API, timed at the shapes warpforge's gpu-check times its own kernels.

Usage: gpu-check-triton.py OUT.json [--quick] [--check-only]

- matmul: C[m,n] (f32) = A[m,k] (f16, row-major) x B (f16, stored n rows of k: a Linear
  weight, the layout of warpforge's gemm_tc_nt), f32 accumulation, `triton.autotune` over
  the usual config list (block sizes, warps, pipeline stages). Shapes: the GEMM section's
  (4096^3, 8192^3, and m in {1, 16, 128, 4096} at n,k of the Llama projections).
- fp8 row quantize: x[8192, 4096] f32 -> E4M3 codes with one scale per 1x128 group
  (scale = amax / 448), the layout of warpforge's blocked FP8 quantizer.
Each result is checked against PyTorch (relative L2 error) before it is timed; times are
medians of CUDA-event samples (`triton.testing.do_bench`). Without torch, triton or a GPU
it writes {"available": false, "reason": ...} and exits 0. `--check-only` compiles and
checks at small shapes only (used by the rehearsal when a GPU is there).
"""
import json
import sys

FP8_MAX = 448.0
GROUP = 128
ROWS, COLS = 8192, 4096


def gemm_shapes(quick):
    square = [4096] if quick else [4096, 8192]
    ms = [1, 4096] if quick else [1, 16, 128, 4096]
    out = [(f"{s}^3", s, s, s) for s in square]
    for n, k, what in [(4096, 4096, "qkvo"), (11008, 4096, "up/gate"), (4096, 11008, "down")]:
        out += [(f"{what} m={m}", m, n, k) for m in ms]
    return out


def build(triton, tl):
    configs = [
        triton.Config({"BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for (bm, bn, bk, w, s) in [
            (128, 256, 64, 8, 3),
            (256, 128, 64, 8, 3),
            (128, 128, 64, 4, 4),
            (128, 64, 64, 4, 4),
            (64, 128, 64, 4, 4),
            (128, 128, 32, 4, 4),
            (64, 64, 64, 4, 5),
            (32, 64, 64, 4, 5),
            (16, 64, 128, 4, 4),
            (16, 128, 128, 4, 3),
        ]
    ]

    @triton.autotune(configs=configs, key=["M", "N", "K"])
    @triton.jit
    def matmul_nt(a, b, c, M, N, K, lda, ldb, ldc,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
        # Grouped ordering of the tiles, so neighbouring programs share rows of A in L2.
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BM)
        tiles_n = tl.cdiv(N, BN)
        per_group = GROUP_M * tiles_n
        group = pid // per_group
        first_m = group * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % size_m
        pid_n = (pid % per_group) // size_m
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, tl.cdiv(K, BK)):
            kk = k0 * BK + rk
            a_tile = tl.load(a + rm[:, None] * lda + kk[None, :],
                             mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
            # B is n rows of k: load its tile as [BK, BN].
            b_tile = tl.load(b + rn[None, :] * ldb + kk[:, None],
                             mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)
            acc = tl.dot(a_tile, b_tile, acc)
        tl.store(c + rm[:, None] * ldc + rn[None, :], acc,
                 mask=(rm[:, None] < M) & (rn[None, :] < N))

    @triton.jit
    def quantize_rows(x, codes, scales, cols, groups, FMAX: tl.constexpr, G: tl.constexpr):
        # One program per (row, 128-wide group): amax, scale = amax / 448, saturating cast.
        row = tl.program_id(0)
        g = tl.program_id(1)
        offs = g * G + tl.arange(0, G)
        mask = offs < cols
        v = tl.load(x + row * cols + offs, mask=mask, other=0.0)
        amax = tl.max(tl.abs(v), axis=0)
        scale = tl.where(amax > 0, amax / FMAX, 1.0)
        q = tl.clamp(v / scale, -FMAX, FMAX).to(tl.float8e4nv)
        tl.store(codes + row * cols + offs, q, mask=mask)
        tl.store(scales + row * groups + g, scale)

    return matmul_nt, quantize_rows


def run_matmul(torch, triton, kernel, m, n, k):
    a = torch.randn(m, k, device="cuda", dtype=torch.float16)
    b = torch.randn(n, k, device="cuda", dtype=torch.float16)
    c = torch.empty(m, n, device="cuda", dtype=torch.float32)

    def launch():
        grid = lambda meta: (triton.cdiv(m, meta["BM"]) * triton.cdiv(n, meta["BN"]),)
        kernel[grid](a, b, c, m, n, k, a.stride(0), b.stride(0), c.stride(0))

    return a, b, c, launch


def matmul_entry(torch, triton, kernel, name, m, n, k, check_only):
    a, b, c, launch = run_matmul(torch, triton, kernel, m, n, k)
    launch()
    want = a.float() @ b.float().T
    err = float((c - want).norm() / want.norm().clamp_min(1e-30))
    entry = {"shape": name, "m": m, "n": n, "k": k, "relative_l2_error": err,
             "agrees": err < 1e-2}
    if check_only:
        return entry
    ms = triton.testing.do_bench(launch, warmup=25, rep=100, return_mode="median")
    best = getattr(kernel, "best_config", None)
    entry.update({"ms": ms, "tflops": 2.0 * m * n * k / (ms * 1e-3) / 1e12,
                  "config": str(best) if best is not None else None})
    return entry


def quantize_entry(torch, triton, kernel, rows, cols, check_only):
    groups = triton.cdiv(cols, GROUP)
    x = torch.randn(rows, cols, device="cuda", dtype=torch.float32)
    codes = torch.empty(rows, cols, device="cuda", dtype=torch.float8_e4m3fn)
    scales = torch.empty(rows, groups, device="cuda", dtype=torch.float32)

    def launch():
        kernel[(rows, groups)](x, codes, scales, cols, groups, FMAX=FP8_MAX, G=GROUP)

    launch()
    back = codes.float().view(rows, groups, -1) * scales.view(rows, groups, 1)
    err = float((back.view(rows, cols) - x).norm() / x.norm())
    entry = {"kernel": "triton fp8 row quantize (1x128 groups, e4m3)", "rows": rows,
             "cols": cols, "dequantized_relative_l2_error": err, "agrees": err < 0.08}
    if check_only:
        return entry
    ms = triton.testing.do_bench(launch, warmup=25, rep=100, return_mode="median")
    moved = rows * cols * (4 + 1) + rows * groups * 4
    entry.update({"ms": ms, "bytes": moved, "gb_per_s": moved / (ms * 1e-3) / 1e9})
    return entry


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick, check_only = "--quick" in sys.argv, "--check-only" in sys.argv
    out = args[0] if args else "triton.json"
    report = {"available": False}
    try:
        import torch
        import triton
        import triton.language as tl
        import triton.testing  # noqa: F401
    except Exception as e:  # a missing package is a reason, not a failure
        report["reason"] = f"import failed: {e}"
    else:
        if not torch.cuda.is_available():
            report["reason"] = "torch sees no GPU"
        else:
            matmul, quantize = build(triton, tl)
            report = {"available": True, "triton": triton.__version__, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "gemm": [], "fp8_quantize": None}
            shapes = [("check 96x80x72", 96, 80, 72)] if check_only else gemm_shapes(quick)
            for name, m, n, k in shapes:
                try:
                    report["gemm"].append(matmul_entry(torch, triton, matmul, name, m, n, k,
                                                       check_only))
                except Exception as e:
                    report["gemm"].append({"shape": name, "error": repr(e)})
                print(f"triton matmul {name}: {report['gemm'][-1]}", flush=True)
            rows, cols = (64, 300) if check_only else (ROWS, COLS)
            try:
                report["fp8_quantize"] = quantize_entry(torch, triton, quantize, rows, cols,
                                                        check_only)
            except Exception as e:
                report["fp8_quantize"] = {"error": repr(e)}
            print(f"triton fp8 quantize: {report['fp8_quantize']}", flush=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    if not report.get("available"):
        print(f"triton: not available ({report.get('reason')})")


if __name__ == "__main__":
    main()
