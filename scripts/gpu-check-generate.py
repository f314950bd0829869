#!/usr/bin/env python3
"""gpu-check: `warpforge generate` against Hugging Face transformers on one GPU.

Builds a Llama-3-8B-shaped model with random bf16 weights (hidden 4096, intermediate 14336,
32 heads, 8 KV heads, vocab 128256; LAYERS decoder layers, 32 in the real model — fewer keep
the run short, and every rate below is per model of that depth), saves it as a Hugging Face
directory, and measures on the same requests (random token ids, greedy, EOS ignored):

- transformers (SDPA attention): prefill tokens/s of a batch of prompts in one forward, and
  decode tokens/s of `generate` at batch 1 and at the batch size;
- `warpforge generate --backend cuda` on the directory: its JSON summary (prefill and decode
  tokens/s), run twice so the second run finds every kernel in the NVRTC disk cache;
- int4: `warpforge quantize --method rtn --group 128 --dim oc`, then batch-1 decode, and the
  weight-streaming roofline: bytes the decode reads per token (int4 linears, their scales,
  the bf16 LM head) over the DRAM bandwidth measured here by a device-to-device copy; the
  issue's target is >= 70 %.

usage: gpu-check-generate.py OUT.json WARPFORGE_BIN WORK_DIR [--quick]
GPU_CHECK_GENERATE_LAYERS (default 8; 4 with --quick) sets the depth. Writes
{"available": false, "reason": ...} when PyTorch, transformers or the GPU is missing.
"""

import json
import os
import subprocess
import sys
import time


def fail(out, reason):
    json.dump({"available": False, "reason": reason}, open(out, "w"))
    print(f"gpu-check-generate: skipped: {reason}")
    sys.exit(0)


def write_requests(path, prompts, max_tokens):
    with open(path, "w") as f:
        for i, ids in enumerate(prompts):
            f.write(json.dumps({"id": i, "prompt_ids": ids, "max_tokens": max_tokens}) + "\n")


def warpforge_generate(binary, model, requests, work, extra=()):
    """The JSON summary of the second of two runs (the first fills the NVRTC cache)."""
    summary = None
    for _ in range(2):
        out = os.path.join(work, "completions.jsonl")
        cmd = [binary, "generate", "--model", model, "--input", requests, "--output", out,
               "--backend", "cuda", "--ignore-eos", "--quiet", "--json-summary",
               "--token-budget", "16384", *extra]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            return {"error": run.stderr[-2000:]}
        last = [l for l in run.stderr.splitlines() if l.startswith("{")]
        summary = json.loads(last[-1]) if last else {"error": run.stderr[-2000:]}
    return summary


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    out, binary, work = sys.argv[1], sys.argv[2], sys.argv[3]
    quick = "--quick" in sys.argv
    try:
        import torch
        import transformers
    except Exception as e:  # noqa: BLE001 - any import failure means no peer
        fail(out, f"PyTorch/transformers unavailable: {e}")
    if not torch.cuda.is_available():
        fail(out, "no CUDA device visible to PyTorch")
    layers = int(os.environ.get("GPU_CHECK_GENERATE_LAYERS", "4" if quick else "8"))
    batch, prompt_len, new_tokens = (8, 256, 32) if quick else (16, 512, 64)
    os.makedirs(work, exist_ok=True)
    report = {"available": True, "layers": layers, "batch": batch, "prompt_len": prompt_len,
              "new_tokens": new_tokens, "gpu": torch.cuda.get_device_name(0),
              "transformers": transformers.__version__, "torch": torch.__version__}

    # DRAM bandwidth: a 2 GiB device-to-device copy (read + write).
    x = torch.empty(1 << 30, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    report["dram_bytes_per_second"] = 10 * 2 * x.numel() * 2 / (time.perf_counter() - t)
    del x, y

    config = transformers.LlamaConfig(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
        max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
        torch_dtype=torch.bfloat16, bos_token_id=1, eos_token_id=2)
    model_dir = os.path.join(work, f"llama3-8b-shape-{layers}l")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.eval()
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        model.save_pretrained(model_dir, safe_serialization=True)

    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(3, config.vocab_size, (batch, prompt_len), generator=gen)
    requests = os.path.join(work, "requests.jsonl")
    write_requests(requests, prompts.tolist(), new_tokens)
    single = os.path.join(work, "request-1.jsonl")
    write_requests(single, prompts[:1].tolist(), new_tokens)

    # transformers: prefill is one forward of the batch; decode is generate's time past it.
    ids = prompts.cuda()
    with torch.no_grad():
        model(ids[:1])
        torch.cuda.synchronize()
        t = time.perf_counter()
        model(ids)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - t
        hf = {"prefill_tokens_per_second": batch * prompt_len / prefill}
        for b in (1, batch):
            kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      pad_token_id=0)
            model.generate(ids[:b], **kw)
            torch.cuda.synchronize()
            t = time.perf_counter()
            model.generate(ids[:b], **kw)
            torch.cuda.synchronize()
            total = time.perf_counter() - t
            one = prefill * b / batch
            hf[f"decode_tokens_per_second_batch{b}"] = b * new_tokens / max(total - one, 1e-9)
    report["transformers"] = hf
    del model
    torch.cuda.empty_cache()

    report["warpforge_bf16"] = warpforge_generate(binary, model_dir, requests, work)
    report["warpforge_bf16_batch1"] = warpforge_generate(binary, model_dir, single, work)

    q_dir = model_dir + "-int4"
    if not os.path.exists(os.path.join(q_dir, "config.json")):
        q = subprocess.run([binary, "quantize", "--model", model_dir, "--out", q_dir,
                            "--method", "rtn", "--group", "128", "--dim", "oc"],
                           capture_output=True, text=True, timeout=900)
        if q.returncode != 0:
            report["int4"] = {"error": q.stderr[-2000:]}
    if os.path.exists(os.path.join(q_dir, "config.json")):
        s = warpforge_generate(binary, q_dir, single, work)
        h, m, v = 4096, 14336, config.vocab_size
        linears = layers * (h * (h + 2 * 1024) + h * h + 3 * h * m)
        weight_bytes = linears // 2 + linears // 128 * 2 * 2 + v * h * 2
        roofline = report["dram_bytes_per_second"] / weight_bytes
        rate = s.get("decode_tokens_per_second") if isinstance(s, dict) else None
        report["int4"] = {"summary": s, "weight_bytes_per_token": weight_bytes,
                          "roofline_tokens_per_second": roofline,
                          "fraction_of_roofline": rate / roofline if rate else None}
    json.dump(report, open(out, "w"), indent=1)
    wf = report["warpforge_bf16"]
    print(f"gpu-check-generate: {layers} layers, batch {batch}: transformers prefill "
          f"{hf['prefill_tokens_per_second']:.0f} tok/s, decode b1 "
          f"{hf['decode_tokens_per_second_batch1']:.1f} tok/s; warpforge {json.dumps(wf)[:300]}")
    if "int4" in report:
        print(f"gpu-check-generate: int4 batch-1 decode: {json.dumps(report['int4'])[:400]}")


if __name__ == "__main__":
    main()
