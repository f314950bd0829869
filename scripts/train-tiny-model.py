#!/usr/bin/env python3
"""The shipped tiny Llama's corpus and tokenizer, and the PyTorch baseline it was first trained with.

The weights shipped in models/tiny-llama/ now come from `warpforge train`
(scripts/ship-tiny-model.sh), which calls `--completions-only` here for completions.json.
Run without it, this script redraws corpus.txt, retrains the tokenizer and overwrites the
model with the PyTorch-trained baseline described below.

The corpus is self-made: short children's stories drawn from a small hand-written grammar
(below, seeded, so the same file every run), written to models/tiny-llama/corpus.txt and
committed beside the model. A byte-level BPE tokenizer (tokenizers' Python package, 512
tokens, `<s>` added in front by its post-processor, as Llama's does) is trained on it; then a
Llama (3 layers, hidden 96, 4 query / 2 KV heads, SwiGLU 256, tied embeddings, ~0.35M
parameters) is trained with PyTorch on the CPU for 6 minutes (16 × 64-token windows a step), each story as
`<s> story </s>`. Weights are saved in bf16 with config.json, tokenizer.json, prompts.jsonl
and train-log.json (steps, seconds, loss curve); completions.json holds transformers' greedy
completions of the prompts from the saved files (`--completions-only` recomputes just those).

Run: .venv-fixtures/bin/python scripts/train-tiny-model.py [--seconds 360]
"""

import argparse
import json
import math
import os
import random
import time

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "models", "tiny-llama")
BATCH, SEQ = 16, 64

NAMES = ["Pip", "Mia", "Tom", "Luna", "Ben", "Ada", "Sam", "Rosa", "Leo", "Ivy", "Max", "Nell"]
ANIMALS = ["fox", "rabbit", "cat", "dog", "bird", "bear", "duck", "mouse", "owl", "frog"]
ADJECTIVES = ["little", "brave", "curious", "kind", "sleepy", "happy", "shy", "clever", "small"]
PLACES = ["forest", "village", "garden", "meadow", "town", "farm", "valley", "hill"]
LANDMARKS = ["river", "old oak tree", "big red barn", "pond", "bridge", "mill", "lake", "road"]
OBJECTS = ["ball", "kite", "hat", "box", "key", "book", "shell", "drum", "map", "lamp"]
COLORS = ["red", "blue", "green", "yellow", "shiny", "tiny", "golden", "striped"]
ACTIVITIES = [
    "play in the grass", "sing songs", "look at the clouds", "run by the river",
    "pick berries", "read books", "dig in the sand", "watch the birds", "climb the hill",
]
FEELINGS = ["happy", "sad", "scared", "excited", "surprised", "tired", "proud", "worried"]
FRIENDS_SAY = [
    "Let us share it", "We can do it together", "Do not be afraid",
    "I will help you", "What a good idea", "Look, the sun is out",
]
ENDINGS = [
    "From that day on, {a} and {b} were best friends.",
    "They laughed and went home for dinner.",
    "That night, {a} slept with a big smile.",
    "And the {place} was a happy place again.",
    "{A} learned that sharing makes everyone happy.",
    "The sun went down, and the stars came out.",
]


def story(rng):
    a, b = rng.sample(NAMES, 2)
    animal, other = rng.sample(ANIMALS, 2)
    place, landmark = rng.choice(PLACES), rng.choice(LANDMARKS)
    obj, color = rng.choice(OBJECTS), rng.choice(COLORS)
    he = rng.choice(["he", "she"])
    his = {"he": "his", "she": "her"}[he]
    lines = [
        rng.choice([
            f"Once upon a time, there was a {rng.choice(ADJECTIVES)} {animal} named {a}.",
            f"One sunny day, a {rng.choice(ADJECTIVES)} {animal} named {a} went for a walk.",
            f"In a {place} near the {landmark}, there lived a {animal} named {a}.",
        ]),
        f"{a} liked to {rng.choice(ACTIVITIES)}.",
        rng.choice([
            f"One day, {a} found a {color} {obj} by the {landmark}.",
            f"One morning, {a} lost {his} {color} {obj} in the {place}.",
            f"One day, {a} saw a {color} {obj} high in a tree.",
        ]),
        f"{a} felt {rng.choice(FEELINGS)}.",
        f"Then {a} met a {other} named {b}.",
        f'"{rng.choice(FRIENDS_SAY)}," said {b}.',
        rng.choice([
            f"So {a} and {b} looked for the {obj} together.",
            f"{b} helped {a}, and soon {he} had the {obj}.",
            f"They played with the {obj} all day long.",
        ]),
        rng.choice(ENDINGS).format(a=a, b=b, A=a, place=place),
    ]
    return " ".join(lines)


def write_corpus(count, seed=0):
    rng = random.Random(seed)
    stories = [story(rng) for _ in range(count)]
    with open(os.path.join(OUT, "corpus.txt"), "w") as f:
        f.write("\n".join(stories) + "\n")
    return stories


def train_tokenizer(stories):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(stories, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    tok.save(os.path.join(OUT, "tokenizer.json"))
    return tok


def batches(tokens, batch, seq, gen):
    while True:
        starts = torch.randint(0, len(tokens) - seq - 1, (batch,), generator=gen)
        yield torch.stack([tokens[s : s + seq + 1] for s in starts.tolist()])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=360.0, help="training time budget")
    parser.add_argument("--stories", type=int, default=1500)
    parser.add_argument("--completions-only", action="store_true",
                        help="only recompute completions.json from the saved model")
    args = parser.parse_args()
    if args.completions_only:
        return write_completions()
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)

    stories = write_corpus(args.stories)
    tok = train_tokenizer(stories)
    ids = []
    for s in stories:
        ids += tok.encode(s).ids + [2]  # "<s> story </s>"
    tokens = torch.tensor(ids)

    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    steps_max, warmup, lr = 5000, 30, 5e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    start, log, step = time.time(), [], 0
    for batch in batches(tokens, BATCH, SEQ, gen):
        elapsed = time.time() - start
        if step >= steps_max or elapsed > args.seconds:
            break
        frac = min(1.0, elapsed / args.seconds)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone()).loss
        # labels are shifted inside the model; the last input token's target is dropped.
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log.append({"step": step, "seconds": round(elapsed, 1), "loss": round(loss.item(), 4)})
            print(log[-1], flush=True)
        step += 1

    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
        tail = torch.tensor(ids[-4097:]).unfold(0, 129, 128)
        final = model(input_ids=tail[:, :-1], labels=tail[:, :-1].clone()).loss.item()
    config.dtype = "bfloat16"
    config.save_pretrained(OUT)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    save_file(state, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    prompts = [
        {"id": "fox", "prompt": "Once upon a time, there was a little fox named"},
        {"id": "walk", "prompt": "One sunny day, a brave rabbit named Mia"},
        {"id": "found", "prompt": "One day, Tom found a shiny key by the"},
        {"id": "friends", "prompt": "Then Luna met a bear named Ben."},
        {"id": "ids", "prompt_ids": tok.encode("In a garden near the pond,").ids},
    ]
    with open(os.path.join(OUT, "prompts.jsonl"), "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
    with open(os.path.join(OUT, "train-log.json"), "w") as f:
        json.dump({"parameters": params, "steps": step, "seconds": round(time.time() - start, 1),
                   "batch": [BATCH, SEQ], "final_loss_bf16_weights": round(final, 4),
                   "torch": torch.__version__, "transformers": transformers.__version__,
                   "log": log}, f, indent=1)
        f.write("\n")
    print(f"{params} parameters, {step} steps, loss (bf16 weights, last 4K tokens) {final:.3f}")
    write_completions()


def write_completions(new_tokens=24):
    """Greedy completions of the shipped prompts by transformers from the saved files (bf16
    weights, f32 compute), to completions.json: what `generate` must print."""
    tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    model = transformers.AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32)
    model.eval()
    model.generation_config.pad_token_id = 0
    records = []
    with open(os.path.join(OUT, "prompts.jsonl")) as f:
        prompts = [json.loads(line) for line in f]
    for p in prompts:
        ids_in = p.get("prompt_ids") or tok.encode(p["prompt"]).ids
        with torch.no_grad():
            out = model.generate(torch.tensor([ids_in]), max_new_tokens=new_tokens, do_sample=False)
        ids_out = out[0, len(ids_in):].tolist()
        records.append({"id": p["id"], "prompt_ids": ids_in, "token_ids": ids_out,
                        "text": tok.decode(ids_out)})
        print(repr(p.get("prompt", p["id"])), "->", repr(records[-1]["text"]))
    with open(os.path.join(OUT, "completions.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")


if __name__ == "__main__":
    main()
