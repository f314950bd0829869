#!/usr/bin/env python3
"""Makes the one-training-step fixture of runtime/tests/train_step.rs.

A tiny random Llama (2 layers, hidden 128, 2 query heads and 1 KV head of head_dim 64 — GQA
2:1, the smallest head the attention kernels take —, intermediate 128, vocab 64, tied
embeddings) in f32, its weights rounded to bf16 values so a bf16 step starts from the same
model. One packed batch: two rows of 24 tokens holding five document segments (positions
restart at each segment, attention stays inside it); each segment runs through transformers
as its own sequence, which is what the varlen kernels compute on the packed rows. The loss is
the mean cross-entropy over the counted targets (the last token of a document has none).

Saved under runtime/tests/fixtures/train/:
- model/: config.json + model.safetensors (the initial weights, f32),
- batch.json: tokens, targets (-100 = ignored), positions, cu_seqlens,
- expected.safetensors: `loss` [1], `grad.NAME` for every parameter (f32 gradients of the
  f32 model), `adamw.NAME` (the weights after one torch.optim.AdamW step, lr 1e-3, betas
  (0.9, 0.999), eps 1e-8, weight decay 0.1 on every tensor but the norm weights),
- versions.json: torch and transformers versions.

Run: python scripts/make-train-fixture.py  (torch + transformers on the CPU)
"""

import json
import os

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "runtime", "tests", "fixtures", "train")

CONFIG = dict(
    vocab_size=64,
    hidden_size=128,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    attention_bias=False,
    mlp_bias=False,
)

# Five documents over two rows of 24: row 0 holds two (10 + 14 tokens), row 1 three (7 + 9 + 8).
SEGMENTS = [[10, 14], [7, 9, 8]]
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 0.1


def bf16_values(model, seed):
    """Weights ~ N(0, 1/fan_in) for linears, N(0, 0.15²) for the (tied) embedding, 1 + N(0, 0.1) for
    norms: O(1) activations, so every gradient is far from zero. Rounded to bf16."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif "embed" in name:
                v = 0.15 * torch.randn(p.shape, generator=gen)
            else:
                v = torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            p.copy_(v.to(torch.bfloat16).to(torch.float32))


def batch(seed):
    gen = torch.Generator().manual_seed(seed)
    tokens, targets, positions, cu = [], [], [], [0]
    docs = []
    for row in SEGMENTS:
        for n in row:
            doc = torch.randint(3, CONFIG["vocab_size"], (n,), generator=gen).tolist()
            docs.append(doc)
            tokens += doc
            targets += doc[1:] + [-100]
            positions += list(range(n))
            cu.append(cu[-1] + n)
    return docs, dict(tokens=tokens, targets=targets, positions=positions, cu_seqlens=cu,
                      rows=len(SEGMENTS), seq_len=sum(SEGMENTS[0]))


def main():
    torch.manual_seed(0)
    os.makedirs(os.path.join(OUT, "model"), exist_ok=True)
    config = transformers.LlamaConfig(**CONFIG)
    model = transformers.LlamaForCausalLM(config).float()
    bf16_values(model, 1)
    model.save_pretrained(os.path.join(OUT, "model"), safe_serialization=True)
    docs, b = batch(2)
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump(b, f)

    counted = sum(len(d) - 1 for d in docs)
    total = torch.zeros(())
    for doc in docs:
        ids = torch.tensor([doc])
        logits = model(input_ids=ids).logits[0].float()
        total = total + torch.nn.functional.cross_entropy(
            logits[:-1], ids[0, 1:], reduction="sum")
    loss = total / counted
    loss.backward()

    out = {"loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()
    decay = [p for n, p in model.named_parameters() if "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    opt.step()
    for name, p in model.named_parameters():
        out["adamw." + name] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()},
              os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "loss": loss.item(), "counted": counted}, f, indent=1)
    print(f"loss {loss.item():.6f} over {counted} targets; wrote {OUT}")


if __name__ == "__main__":
    main()
