#!/usr/bin/env bash
# Trains the shipped tiny Llama (models/tiny-llama, `generate`'s default) with `warpforge train`
# and installs it: the shape of models/tiny-llama-train (0.5M parameters) from scratch on the
# shipped story corpus (models/tiny-llama/corpus.txt, drawn by scripts/train-tiny-model.py's
# grammar, with its tokenizer), on the CPU interpreter — about 25 minutes on two cores.
# The last checkpoint's f32 weights are installed in bf16 with its config, the step log
# (train-log.jsonl) and the exact command (train-command.txt); completions.json is then
# recomputed by transformers from the installed files (the generate test's expectation).
#
# usage: scripts/ship-tiny-model.sh [RUN_DIR]    (PYTHON: a Python with torch, transformers,
#        tokenizers and safetensors; default .venv-fixtures/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-target/tiny-llama-run}
python=${PYTHON:-.venv-fixtures/bin/python}
cmd=(target/release/warpforge train --model models/tiny-llama-train
    --data models/tiny-llama/corpus.txt --out "$run" --steps 300 --seq-len 64
    --batch-tokens 1024 --lr 3e-3 --backend cpu)
if [ ! -f "$run/latest" ]; then
    cargo build --release --quiet --bin warpforge
    "${cmd[@]}"
fi
checkpoint="$run/$(cat "$run/latest")"
echo "installing $checkpoint into models/tiny-llama"
"$python" - "$checkpoint" "$run/train-log.jsonl" <<'EOF'
import json, shutil, sys
import torch
from safetensors.torch import load_file, save_file
checkpoint, log = sys.argv[1:3]
out = "models/tiny-llama"
tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(f"{checkpoint}/model.safetensors").items()}
save_file(tensors, f"{out}/model.safetensors", metadata={"format": "pt"})
config = json.load(open(f"{checkpoint}/config.json"))
config["dtype"] = "bfloat16"
json.dump(config, open(f"{out}/config.json", "w"), indent=2)
shutil.copyfile(f"{checkpoint}/tokenizer.json", f"{out}/tokenizer.json")
shutil.copyfile(log, f"{out}/train-log.jsonl")
EOF
printf '%q ' "${cmd[@]}" | sed "s|$run|RUN_DIR|" >models/tiny-llama/train-command.txt
echo >>models/tiny-llama/train-command.txt
rm -f models/tiny-llama/train-log.json
"$python" scripts/train-tiny-model.py --completions-only
