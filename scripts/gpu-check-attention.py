#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention (flash backend) at warpforge's attention shapes.

Usage: gpu-check-attention.py OUT.json [--quick]

The shapes of FlashAttention's benchmark, as runtime/src/perf/attention.rs times ours:
16K tokens per batch (batch = 16384 / seq), seq 1K-16K (quick: 1K and 8K), 16 heads of
128, f16, causal and not. Q/K/V are [batch, seq, heads, d] viewed as [batch, heads, seq, d]
(FlashAttention's own layout, no copy), timed with CUDA events: warm-up, then the median
of up to 30 runs, the L2 flushed before each, as warpforge's timer does. FLOPs:
4*b*s^2*h*d, halved when causal. Without torch, a GPU or the flash backend it writes
{"available": false, "reason": ...} and exits 0.
"""
import json
import statistics
import sys

TOKENS, HEADS, HEAD_DIM = 16384, 16, 128


def shapes(quick):
    seqs = [1024, 8192] if quick else [1024, 2048, 4096, 8192, 16384]
    return [(s, TOKENS // s, causal) for s in seqs for causal in (False, True)]


def flops(seq, batch, causal):
    full = 4.0 * batch * seq * seq * HEADS * HEAD_DIM
    return full / 2 if causal else full


def measure(torch, seq, batch, causal, flush, sdpa):
    def tensor():
        x = torch.randn(batch, seq, HEADS, HEAD_DIM, device="cuda", dtype=torch.float16)
        return x.transpose(1, 2)

    q, k, v = tensor(), tensor(), tensor()
    run = lambda: sdpa(q, k, v, is_causal=causal)
    for _ in range(3):
        run()
    times = []
    for _ in range(30):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if sum(times) > 400 and len(times) >= 10:
            break
    ms = statistics.median(times)
    return {
        "seq": seq,
        "batch": batch,
        "causal": causal,
        "ms": ms,
        "samples": len(times),
        "tflops": flops(seq, batch, causal) / (ms * 1e-3) / 1e12,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "attention.json"
    quick = "--quick" in sys.argv[2:]
    try:
        import torch
        import torch.nn.functional as F

        if not torch.cuda.is_available():
            report = {"available": False, "reason": "torch.cuda.is_available() is False"}
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
            report = {
                "available": True,
                "torch": torch.__version__,
                "device": torch.cuda.get_device_name(),
                "backend": "SDPBackend.FLASH_ATTENTION",
                "shapes": [],
            }
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                for seq, batch, causal in shapes(quick):
                    entry = measure(torch, seq, batch, causal, flush,
                                    F.scaled_dot_product_attention)
                    print("torch sdpa:", json.dumps(entry), flush=True)
                    report["shapes"].append(entry)
    except Exception as e:  # a missing baseline, not a failed check
        report = {"available": False, "reason": f"{type(e).__name__}: {e}"}
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
