#!/usr/bin/env python3
"""The short table printed last by scripts/gpu-check: gpu-check.json (and the autotune
pass's output) read back, one line per figure that matters.

Usage: gpu-check-summary.py gpu-check.json [autotune-gemm.txt]
"""
import json
import sys


def num(x, fmt="{:.3f}"):
    return fmt.format(x) if isinstance(x, (int, float)) else "-"


def main():
    report = json.load(open(sys.argv[1]))
    meta = report.get("meta") if isinstance(report.get("meta"), dict) else {}
    nvrtc = report.get("nvrtc")
    nvrtc = nvrtc.get("version") if isinstance(nvrtc, dict) else nvrtc
    print("=" * 78)
    print(f"device {report.get('device')} ({report.get('arch')}), driver "
          f"{meta.get('driver_version', '-')}, SM clock {meta.get('clocks.sm [MHz]', '-')}, "
          f"NVRTC {nvrtc}, commit {meta.get('commit', '-')}")
    tally = report.get("tally", {})
    print(f"correctness: {tally.get('passed')} passed, {tally.get('failed')} failed, "
          f"{tally.get('skipped')} skipped, {tally.get('not_run')} not run")
    if report.get("first_fault"):
        print(f"FIRST FAULT: {report['first_fault']}")
    bad = [r for r in report.get("results", [])
           if r.get("status") != "passed" and not str(r.get("status", "")).startswith("skipped")]
    for r in bad[:12]:
        print(f"  {r.get('status')}: {r.get('kernel')} {r.get('config')} {r.get('problem')}"
              f" {str(r.get('error', ''))[:160]}")
    if len(bad) > 12:
        print(f"  ... {len(bad) - 12} more (gpu-check.json)")
    perf = report.get("perf")
    if not isinstance(perf, dict):
        print(f"perf: {perf}")
        return
    triton = perf.get("triton") if isinstance(perf.get("triton"), dict) else {}
    triton_gemm = {g.get("shape"): g for g in triton.get("gemm", []) if isinstance(g, dict)}
    gemm = perf.get("gemm", {})
    print(f"GEMM f16->f32 TFLOP/s (cuBLAS: {gemm.get('cublas')})")
    print(f"  {'shape':<18} {'kernel':<20} {'ours':>7} {'tuned':>7} {'cuBLAS':>7} {'Triton':>7}")
    for s in gemm.get("shapes", []):
        tuned = s.get("tuned") or {}
        cublas = s.get("cublas") or {}
        tr = triton_gemm.get(s.get("shape"), {}) if s.get("kernel", "").startswith("gemm_tc_nt") else {}
        print(f"  {s.get('shape', ''):<18} {s.get('kernel', ''):<20} "
              f"{num((s.get('ours') or {}).get('tflops'), '{:.1f}'):>7} "
              f"{num(tuned.get('tflops'), '{:.1f}'):>7} {num(cublas.get('tflops'), '{:.1f}'):>7} "
              f"{num(tr.get('tflops'), '{:.1f}'):>7}")
    fp8 = perf.get("fp8", {})
    if isinstance(fp8, dict):
        print(f"FP8 bandwidth, GB/s (peak {num(fp8.get('peak_gb_per_s'), '{:.0f}')})")
        for k in fp8.get("kernels", []):
            print(f"  {k.get('kernel', ''):<40} {num(k.get('gb_per_s'), '{:.0f}'):>7}"
                  f"  {num(k.get('fraction_of_peak'), '{:.2f}')} of peak")
    attn = perf.get("attention")
    if isinstance(attn, dict):
        print(f"flash attention f16, d=128, 16 heads, TFLOP/s (default {attn.get('default_config')})")
        print(f"  {'shape':<24} {'ours':>7} {'best':>7} {'torch':>7} {'ratio':>6}")
        for s in attn.get("shapes", []):
            bad = [w for w in ("ours", "best_of_sweep") if (s.get(w) or {}).get("error")]
            print(f"  {s.get('shape', ''):<24} {num((s.get('ours') or {}).get('tflops'), '{:.1f}'):>7} "
                  f"{num((s.get('best_of_sweep') or {}).get('tflops'), '{:.1f}'):>7} "
                  f"{num((s.get('torch') or {}).get('tflops') if isinstance(s.get('torch'), dict) else None, '{:.1f}'):>7} "
                  f"{num(s.get('ratio'), '{:.2f}'):>6}" + (f"  ERROR in {bad}" if bad else ""))
    tq = triton.get("fp8_quantize") if isinstance(triton, dict) else None
    if isinstance(tq, dict):
        print(f"  {'triton fp8 row quantize (1x128)':<40} {num(tq.get('gb_per_s'), '{:.0f}'):>7}")
    elif triton:
        print(f"  triton: {triton.get('reason', triton)}")
    if len(sys.argv) > 2:
        try:
            lines = open(sys.argv[2]).read().splitlines()
        except OSError:
            lines = []
        header = next((i for i, l in enumerate(lines) if "speedup" in l and "best config" in l), None)
        if header is not None:
            print("autotune (speedup = default time / tuned time):")
            for line in lines[header:header + 12]:
                if line.strip():
                    print("  " + line.rstrip())

if __name__ == "__main__":
    main()
