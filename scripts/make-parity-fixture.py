#!/usr/bin/env python3
"""Makes the Hugging Face parity fixtures of runtime/tests/model_parity.rs.

Two tiny random models, each saved as a model directory under runtime/tests/fixtures/model/:

- tiny-llama: Llama, GQA (4 query heads, 2 KV heads, head_dim 16), Llama-3 RoPE scaling whose
  thresholds put the 8 frequencies in all three bands (kept / blended / divided), untied lm_head.
- tiny-qwen2: Qwen2, q/k/v biases, tied embeddings, sliding window 8 on layer 1 (layer 0 full),
  prompts longer than the window.

Weights are drawn at a scale that gives O(1) logits (Hugging Face's default init, std 0.02,
would make every logit ~0 and greedy decoding a coin toss), rounded to bf16 and stored as bf16;
the model runs in f32 on those bf16 values (exact in f32), so a loader that widens bf16 to f32
must reproduce the logits to f32 rounding. For each model, NAME.expected.json holds the prompts
(token ids), their greedy continuations (8 tokens, computed by transformers' `generate` and
checked against a plain argmax loop) with the smallest top-1/top-2 logit margin seen, and the
versions used; NAME.expected-logits.safetensors holds `prompt.{i}`: [len, vocab] f32 logits of
every prompt position.

Run: .venv-fixtures/bin/python scripts/make-parity-fixture.py  (torch + transformers on the CPU)
"""

import copy
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "runtime", "tests", "fixtures", "model")
NEW_TOKENS = 8


def randomize(model, seed):
    """O(1) activations: linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norm weights
    ~ 1 + N(0, 0.1) (so a loader that ignores them is caught), biases ~ N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                value = 1.0 + 0.1 * noise
            elif name.endswith(".bias"):
                value = 0.1 * noise
            elif "embed_tokens" in name:
                value = noise
            else:
                value = noise / p.shape[1] ** 0.5
            # Stored as bf16, computed in f32: round once here.
            p.copy_(value.to(torch.bfloat16).to(torch.float32))


def greedy(model, ids):
    """transformers' generate (KV-cached decode) and a plain argmax loop must agree."""
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=0
        )[0, len(ids):].tolist()
        seq, margin = list(ids), float("inf")
        for _ in range(NEW_TOKENS):
            last = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2).values
            margin = min(margin, float(top[0] - top[1]))
            seq.append(int(last.argmax()))
    loop = seq[len(ids):]
    assert out == loop, f"generate {out} != argmax loop {loop}"
    return loop, margin


def save(name, config, seed, prompts):
    torch.manual_seed(seed)
    model_cls = transformers.AutoModelForCausalLM
    model = model_cls.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    randomize(model, seed)
    directory = os.path.join(OUT, name)
    os.makedirs(directory, exist_ok=True)
    config.dtype = "bfloat16"  # what the files hold
    config.save_pretrained(directory)
    tensors = {
        k: v.to(torch.bfloat16).contiguous()
        for k, v in model.state_dict().items()
        if not (config.tie_word_embeddings and k == "lm_head.weight")
    }
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})

    logits, records = {}, []
    for i, ids in enumerate(prompts):
        with torch.no_grad():
            logits[f"prompt.{i}"] = model(torch.tensor([ids])).logits[0].float().contiguous()
        continuation, margin = greedy(model, ids)
        records.append({"ids": ids, "greedy": continuation, "greedy_min_margin": margin})
    save_file(logits, os.path.join(OUT, f"{name}.expected-logits.safetensors"))
    expected = {
        "model": name,
        "made_by": "scripts/make-parity-fixture.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "weights": "bf16 in the files; the forward ran in f32 on those values",
        "attn_implementation": "eager",
        "new_tokens": NEW_TOKENS,
        # transformers' RoPE buffer (f32 values, printed exactly as Python floats)
        "inv_freq": model.model.rotary_emb.inv_freq.tolist(),
        "prompts": records,
    }
    with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
        f.write(dumps(expected))
    print(name, [len(p) for p in prompts], "min margin", min(r["greedy_min_margin"] for r in records))
    return model


def dumps(value):
    """JSON with one prompt record a line (lists of ids kept on one line)."""
    prompts = value.pop("prompts")
    head = json.dumps(value, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(p) for p in prompts)
    return f'{head},\n "prompts": [\n  {rows}\n ]\n}}\n'


def check_window_matters(model, prompt, window):
    """The sliding window must change the logits past it (else the fixture would not test it):
    the same weights with full attention agree before position `window` and differ after."""
    full_config = copy.deepcopy(model.config)
    full_config.use_sliding_window = False
    full_config.layer_types = ["full_attention"] * full_config.num_hidden_layers
    full = transformers.AutoModelForCausalLM.from_config(
        full_config, attn_implementation="eager", dtype=torch.float32
    )
    full.load_state_dict(model.state_dict())
    full.eval()
    with torch.no_grad():
        ids = torch.tensor([prompt])
        windowed, plain = model(ids).logits[0], full(ids).logits[0]
    assert torch.equal(windowed[:window], plain[:window]), "window changed early positions"
    assert not torch.allclose(windowed[window:], plain[window:]), "window had no effect"


def save_tokenizer():
    """A small byte-level BPE (tokenizers' Python package) and its encodings of a few texts,
    so the Rust side is checked against the same library's Python build."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [
        "The quick brown fox jumps over the lazy dog.",
        "A tokenizer splits text into pieces; the model reads their ids.",
        "Prefix sharing: requests that begin alike are scheduled together.",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    directory = os.path.join(OUT, "tokenizer")
    os.makedirs(directory, exist_ok=True)
    tok.save(os.path.join(directory, "tokenizer.json"))
    texts = ["The lazy fox reads ids.", "unseen wörds, ünïcode & 123", ""]
    cases = [{"text": t, "ids": tok.encode(t).ids, "decoded": tok.decode(tok.encode(t).ids)} for t in texts]
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump({"made_by": "scripts/make-parity-fixture.py", "cases": cases}, f, indent=1)
        f.write("\n")


def prompts_from(seed, vocab, lengths):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


def main():
    # Llama: prompts of 1, 5, 17 tokens and two of 40 sharing their first 36.
    short = prompts_from(1, 256, [1, 5, 17, 40])
    shared = short[3][:36] + prompts_from(2, 256, [4])[0]
    llama = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    save("tiny-llama", llama, 0, [[1]] + short[1:3] + [short[3], shared])

    qwen2 = transformers.Qwen2Config(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=1,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    qwen_prompts = prompts_from(4, 128, [3, 12, 21])
    model = save("tiny-qwen2", qwen2, 3, qwen_prompts)
    check_window_matters(model, qwen_prompts[2], 8)
    save_tokenizer()


if __name__ == "__main__":
    sys.exit(main())
