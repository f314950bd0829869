#!/usr/bin/env python3
"""PyTorch decode attention, timed like warpforge's gpu-check (peer of
runtime/src/perf/attention_decode.rs).

Usage: gpu-check-attention-decode.py OUT.json [--quick]. At the same shapes as the Rust
section (Llama-3-8B attention: 32 query heads, 8 KV heads, d = 128, bf16; one new token per
sequence over 1K/4K cached keys, batch 1-256) it times one decode step:
flash_attn_with_kvcache (paged, page 256 as FlashAttention-2 requires) when flash_attn is
importable, else torch.nn.functional.scaled_dot_product_attention on contiguous K/V
[batch, 8, context, 128] with enable_gqa=True (the gather from pages is not timed, which
favours the peer). CUDA events, warm-up, median of 20, L2 flushed before each. Without torch
or a GPU it writes {"available": false, "reason": ...} and exits 0.
"""
import json
import statistics
import sys

HEADS, KV_HEADS, D = 32, 8, 128


def grid(quick):
    batches, contexts = ([1, 16, 256], [4096]) if quick else ([1, 4, 16, 64, 256], [1024, 4096])
    return [(b, c) for c in contexts for b in batches]


def timed(torch, fn, flush):
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def sdpa_step(torch, batch, context):
    import torch.nn.functional as F

    q = torch.randn(batch, HEADS, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, KV_HEADS, context, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    return lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def flash_step(torch, flash_attn, batch, context):
    page = 256
    pages = batch * context // page
    k = torch.randn(pages, page, KV_HEADS, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    table = torch.randperm(pages, device="cuda", dtype=torch.int32).view(batch, -1)
    lens = torch.full((batch,), context, device="cuda", dtype=torch.int32)
    q = torch.randn(batch, 1, HEADS, D, device="cuda", dtype=torch.bfloat16)
    return lambda: flash_attn.flash_attn_with_kvcache(
        q, k, v, cache_seqlens=lens, block_table=table, causal=True
    )


def measure(torch, quick):
    try:
        import flash_attn

        impl = f"flash_attn {flash_attn.__version__} flash_attn_with_kvcache (paged, page 256)"
    except Exception:
        flash_attn = None
        impl = "torch.nn.functional.scaled_dot_product_attention(enable_gqa=True), contiguous K/V"
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    entries = []
    for batch, context in grid(quick):
        try:
            step = (
                flash_step(torch, flash_attn, batch, context)
                if flash_attn
                else sdpa_step(torch, batch, context)
            )
            ms = timed(torch, step, flush)
            # K and V once (the bound), Q and O: as the Rust section counts them.
            nbytes = 2 * batch * context * KV_HEADS * D * 2 + 2 * batch * HEADS * D * 2
            entries.append(
                {"batch": batch, "context": context, "ms": ms, "gb_per_s": nbytes / (ms * 1e-3) / 1e9}
            )
        except Exception as e:
            entries.append({"batch": batch, "context": context, "error": f"{type(e).__name__}: {e}"})
        print("torch decode:", json.dumps(entries[-1]), flush=True)
        torch.cuda.empty_cache()
    return {
        "available": True,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "impl": impl,
        "heads": HEADS,
        "kv_heads": KV_HEADS,
        "head_dim": D,
        "decode": entries,
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = args[0] if args else "torch-decode.json"
    quick = "--quick" in sys.argv
    try:
        import torch

        if not torch.cuda.is_available():
            report = {"available": False, "reason": "torch.cuda.is_available() is False"}
        else:
            report = measure(torch, quick)
    except Exception as e:  # any failure is a missing baseline, not a failed check
        report = {"available": False, "reason": f"{type(e).__name__}: {e}"}
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
