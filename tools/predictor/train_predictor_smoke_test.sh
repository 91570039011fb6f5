#!/bin/sh
# The predictor's training loop end to end on the CPU, so it cannot rot: record a tiny trace
# from decoding the bundled model, train the CNN a few steps with Debian's python3-torch,
# then decode under the predictor policy with the exported weights (the C++ loader checks
# every tensor name, shape and dtype).
set -eu
record=$1
work=${TEST_TMPDIR:-$(mktemp -d)}
# A two-document corpus split (the jsonl of tools/model/build_corpus.py).
/usr/bin/python3 - "$work/train.jsonl" <<'PY'
import json, sys
docs = [open(p, encoding="utf-8").read() for p in
        ("tools/predictor/train_predictor.py", "tools/predictor/trace_io.py")]
with open(sys.argv[1], "w") as f:
    for i, d in enumerate(docs):
        f.write(json.dumps({"id": str(i), "source": "smoke", "text": d}) + "\n")
PY
"$record" --corpus "$work/train.jsonl" --out "$work/train.trace" --sequences 2 \
    --min_prompt 300 --max_prompt 400 --steps 12 --stream_tokens 20000
/usr/bin/python3 tools/predictor/train_predictor.py --train "$work/train.trace" \
    --valid "$work/train.trace" --out "$work/p.safetensors" --steps 3 --crop 8 --batch 4 \
    --valid-samples 8 --eval-every 3 --threads 1
"$record" --corpus "$work/train.jsonl" --out "$work/policy.trace" --sequences 1 \
    --min_prompt 300 --max_prompt 300 --steps 8 --stream_tokens 20000 \
    --policy predictor --predictor "$work/p.safetensors" --budget 256
test -s "$work/policy.trace"
echo "smoke test passed"
