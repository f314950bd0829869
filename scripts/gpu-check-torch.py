#!/usr/bin/env python3
"""PyTorch's per-tensor FP8 cast, timed like warpforge's gpu-check: amax, scale, cast.

Usage: gpu-check-torch.py OUT.json. Times `s = x.abs().amax() / 448; (x / s).to(e4m3fn)`
on an 8192x4096 f32 tensor (128 MiB) with CUDA events (warm-up, then the median of
several runs, the L2 flushed before each), and writes JSON. Without torch or a GPU it
writes {"available": false, "reason": ...} and exits 0.
"""
import json
import statistics
import sys

ROWS, COLS, FMAX = 8192, 4096, 448.0


def measure(torch):
    x = torch.randn(ROWS, COLS, device="cuda", dtype=torch.float32)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")

    def cast():
        s = x.abs().amax() / FMAX
        return (x / s).to(torch.float8_e4m3fn), s

    for _ in range(3):
        cast()
    times = []
    for _ in range(20):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        cast()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    # The fewest bytes of the op: amax reads x (4 B), the cast reads x and writes q (5 B).
    minimal = 9 * ROWS * COLS
    return {
        "available": True,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "op": "s = x.abs().amax() / 448; (x / s).to(torch.float8_e4m3fn)",
        "rows": ROWS,
        "cols": COLS,
        "ms": ms,
        "samples": len(times),
        "bytes_minimal": minimal,
        "gb_per_s_minimal": minimal / (ms * 1e-3) / 1e9,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "torch-fp8.json"
    try:
        import torch

        if not torch.cuda.is_available():
            report = {"available": False, "reason": "torch.cuda.is_available() is False"}
        else:
            report = measure(torch)
    except Exception as e:  # any failure is a missing baseline, not a failed check
        report = {"available": False, "reason": f"{type(e).__name__}: {e}"}
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print("torch:", json.dumps(report))


if __name__ == "__main__":
    main()
