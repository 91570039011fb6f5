#!/usr/bin/env bash
# Issue 20: the tiny models of the families and RoPE variants beyond Llama 3 / Mistral
# (tools/goldens/make_tiny_models.py) and their transformers golden logits, in one run on a
# machine with python3 + torch + transformers + safetensors (the GPU machine; runs on its CPU).
#
#   bash tools/goldens/make_family_goldens.sh OUT      (from the repository root)
#   cp -r OUT/* tests/golden/                          (then: bazel test //backends/cpu:cpu_decoder_golden_test)
#
# OUT gets models/<name>/ and <name>.logits.safetensors, the layout of tests/golden/, plus
# versions-families.txt. Prompt lengths: past each model's window or original RoPE length
# where it has one; the longrope prompts stay either within the 64-token original length
# or (300 tokens) past it from the golden test's prefill split on, since transformers
# rotates a forward pass's tokens with one factor set chosen by its last position.
set -euo pipefail
OUT=${1:?usage: make_family_goldens.sh OUT}
mkdir -p "$OUT/models"
G=tools/goldens
python3 $G/make_tiny_models.py --out "$OUT/models" --models \
  tiny-qwen2,tiny-qwen3,tiny-mistral-sliding,tiny-llama-yarn,tiny-llama-dynamic,tiny-llama-longrope,tiny-llama32-tied
golden() {  # name prompt-lengths stored-last-positions
  python3 $G/make_logit_goldens.py --model "$OUT/models/$1" --random "$2" --last "$3" \
    --out "$OUT/$1.logits.safetensors"
}
golden tiny-qwen2 5,40,300 16
golden tiny-qwen3 5,40,300 16
golden tiny-mistral-sliding 5,40,300 16
golden tiny-llama-yarn 9,300 16
golden tiny-llama-dynamic 9,300 16
golden tiny-llama-longrope 1,40,300 16
golden tiny-llama32-tied 9,100 16
python3 -c "import transformers, torch; print('versions', transformers.__version__, torch.__version__)" \
  > "$OUT/versions-families.txt"
ls -la "$OUT" "$OUT/models"
