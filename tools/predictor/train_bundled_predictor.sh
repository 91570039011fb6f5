#!/usr/bin/env bash
# Trains the bundled model's predictor end to end on this (CPU) machine and writes
# models/apr-tiny/predictor.safetensors (+ the training logs next to the traces).
# The recipe and its results are in models/apr-tiny/PREDICTOR.md (about 40 minutes on
# 2 CPU cores: recording 19 min, training 18 min).
#
#   bash tools/predictor/train_bundled_predictor.sh /tmp/corpus /tmp/predictor-work
# /tmp/corpus: the corpus folder of tools/model/build_corpus.py (train/valid jsonl; the
# held-out split is not read).
set -euo pipefail
corpus=${1:?corpus folder}
work=${2:?work folder}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
cd "$root"
bazel build -c opt //predictor/eval:record
record=bazel-bin/predictor/eval/record
py=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1

# 1. Full-attention traces: 160 train windows, 24 validation windows, 192 decode steps each.
$record --corpus "$corpus/valid.jsonl" --out "$work/valid.trace" --sequences 24 --steps 192 \
    --seed 2 --stream_tokens 1000000
$record --corpus "$corpus/train.jsonl" --out "$work/train.trace" --sequences 160 --steps 192 \
    --seed 1
# 2. Train on them.
$py tools/predictor/train_predictor.py --train "$work/train.trace" --valid "$work/valid.trace" \
    --out "$work/predictor.safetensors" --steps 2500 --log "$work/train_log.json"
cp "$work/predictor.safetensors" models/apr-tiny/predictor.safetensors
echo "wrote models/apr-tiny/predictor.safetensors (training log: $work/train_log.json)"
