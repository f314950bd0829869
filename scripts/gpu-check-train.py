#!/usr/bin/env python3
"""gpu-check: `warpforge train` against PyTorch on one GPU, at a ~1B-parameter Llama.

The model is TinyLlama-1.1B's shape (hidden 2048, intermediate 5632, 32 heads, 4 KV heads
of 64, vocab 32000; LAYERS decoder layers, 22 in the real model — fewer keep the run short)
with random initialisation, trained on random token ids in rows of 2048:

- `warpforge train --backend cuda --from-scratch` (bf16 compute, f32 masters, AdamW, no
  checkpoints): tokens/s of its steps after the first (which compiles the kernels) and the
  bytes of its training memory report (weights, gradients, optimizer states, saved
  activations, from the allocations).
- PyTorch, the same model from transformers (SDPA attention, torch.compile off): bf16
  weights under f32 masters is what warpforge does, so PyTorch runs f32 parameters with
  bf16 autocast and a fused AdamW; tokens/s and torch.cuda.max_memory_allocated.

- The same `warpforge train` under COAT's FP8 flow (`--precision fp8 --optimizer-states
  fp8`): FP8 forward GEMMs and saved activations, FP8 optimizer moments; its memory report
  against the bf16 run's is COAT's memory claim at this size (COAT: 1.54x end to end).

usage: gpu-check-train.py OUT.json WARPFORGE_BIN WORK_DIR [--quick]
GPU_CHECK_TRAIN_LAYERS (default 8; 4 with --quick) sets the depth. Writes
{"available": false, "reason": ...} when PyTorch, transformers or the GPU is missing.
"""

import json
import os
import re
import struct
import subprocess
import sys
import time

SEQ, ROWS = 2048, 4


def fail(out, reason):
    json.dump({"available": False, "reason": reason}, open(out, "w"))
    print(f"gpu-check-train: skipped: {reason}")
    sys.exit(0)


def config(layers):
    return dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
                hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
                num_attention_heads=32, num_key_value_heads=4, head_dim=64,
                max_position_embeddings=SEQ, rms_norm_eps=1e-5, rope_theta=10000.0,
                tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                attention_bias=False, mlp_bias=False, hidden_act="silu")


def warpforge(binary, model, corpus, work, steps, extra=()):
    out = os.path.join(work, "run-" + ("fp8" if extra else "bf16"))
    cmd = [binary, "train", "--model", model, "--data", corpus, "--out", out, "--from-scratch",
           "--backend", "cuda", "--steps", str(steps), "--seq-len", str(SEQ),
           "--batch-tokens", str(SEQ * ROWS), "--checkpoint-every", "0", "--held-back", "0",
           "--quiet", *extra]
    start = time.time()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        return {"error": run.stderr[-3000:]}
    log = [json.loads(l) for l in open(os.path.join(out, "train-log.jsonl"))]
    # Steps after the first: the first compiles every kernel with NVRTC.
    span = log[-1]["seconds"] - log[0]["seconds"]
    tokens = log[-1]["tokens"] - log[0]["tokens"]
    memory = re.search(r"memory .*\(total ([0-9.]+) MiB\)", run.stdout)
    return {"tokens_per_s": tokens / span if span > 0 else None,
            "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
            "memory_mib": float(memory.group(1)) if memory else None,
            "summary": run.stdout, "wall_s": time.time() - start}


def pytorch(cfg, steps):
    import torch
    import transformers
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).cuda().float()
    model.config._attn_implementation = "sdpa"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(3, cfg["vocab_size"], (ROWS, SEQ), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.time() - t)
    span = sum(times[1:])
    return {"tokens_per_s": (steps - 1) * ROWS * SEQ / span,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
            "loss_last": loss.item()}


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    out, binary, work = sys.argv[1:4]
    quick = "--quick" in sys.argv
    layers = int(os.environ.get("GPU_CHECK_TRAIN_LAYERS", "4" if quick else "8"))
    steps = 4 if quick else 8
    try:
        import torch  # noqa: F401
        if not torch.cuda.is_available():
            fail(out, "PyTorch sees no GPU")
    except ImportError:
        fail(out, "PyTorch is not installed")
    os.makedirs(work, exist_ok=True)
    cfg = config(layers)
    model = os.path.join(work, "model")
    os.makedirs(model, exist_ok=True)
    json.dump(cfg, open(os.path.join(model, "config.json"), "w"))
    corpus = os.path.join(work, "corpus.bin")
    import random
    random.seed(0)
    tokens = SEQ * ROWS * (steps + 2)
    with open(corpus, "wb") as f:
        f.write(b"".join(struct.pack("<I", random.randrange(3, 32000)) for _ in range(tokens)))
    result = {"available": True, "layers": layers, "seq_len": SEQ, "rows": ROWS,
              "steps": steps, "warpforge": warpforge(binary, model, corpus, work, steps),
              "warpforge_fp8": warpforge(binary, model, corpus, work, steps,
                                         ("--precision", "fp8", "--optimizer-states", "fp8"))}
    try:
        result["pytorch"] = pytorch(cfg, steps)
    except Exception as e:  # noqa: BLE001 — an OOM or a missing package is a result too
        result["pytorch"] = {"error": repr(e)[-2000:]}
    json.dump(result, open(out, "w"), indent=1)
    runs = ("warpforge", "warpforge_fp8")
    print(json.dumps({k: v for k, v in result.items() if k not in runs}, indent=1))
    for name in runs:
        print(name + ":", {k: v for k, v in result[name].items() if k != "summary"})


if __name__ == "__main__":
    main()
