#!/usr/bin/env bash
# One GPU-machine run that makes everything Python-side the project ships (issue 3):
# tokenizers, the bundled model, and the golden files that tests compare against.
#
# Here:   python3 tools/model/build_corpus.py --out .carry/corpus
#         tar cJf .carry/corpus.tar.xz -C .carry corpus
# Device: bash tools/device/train_bundled_model.sh [--smoke] [--steps N]  (carry: .carry/corpus.tar.xz)
# Back:   bash tools/device/unpack_results.sh <files_at>
#
# Results go to $OUT as results.tar split in 15 MB parts (the device returns files of at
# most 16 MB); the last lines printed are a summary table.
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
SMOKE=0; STEPS=1300
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --steps) STEPS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:?run through the device tool, which sets OUT}
W=/tmp/apr-train; rm -rf $W; mkdir -p $W/res/models $W/res/goldens
R=$W/res
tar xJf .carry/corpus.tar.xz -C $W
C=$W/corpus
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 ))s: $*"; }

stamp "tiny random models and their golden logits"
python3 tools/goldens/make_tiny_models.py --out $R/models
python3 tools/goldens/make_logit_goldens.py --model $R/models/tiny-llama3 --random 1,9,57,300 --last 32 \
  --out $R/goldens/tiny-llama3.logits.safetensors
python3 tools/goldens/make_logit_goldens.py --model $R/models/tiny-mistral --random 5,40,700 --last 16 \
  --out $R/goldens/tiny-mistral.logits.safetensors

# 1300 steps (~170 s on an H100): the validation loss bottoms out there; longer runs
# overfit the 18 M-token corpus (a 2600-step run ended at valid loss 2.43 vs 2.0 midway).
LIMIT=0; [ $SMOKE = 1 ] && LIMIT=3000000 && STEPS=30
stamp "tokenizers"
python3 tools/model/train_tokenizer.py --train $C/train.jsonl --out $W/tokenizer.json --limit-chars $LIMIT
python3 tools/model/train_tokenizer.py --style gpt2 --vocab-size 1024 --limit-chars 5000000 \
  --train $C/train.jsonl --out $R/models/tokenizer-gpt2.json
cp $W/tokenizer.json $R/models/tokenizer-llama3.json

stamp "tokenize corpus"
LD=0; [ $SMOKE = 1 ] && LD=200
python3 tools/model/prepare_data.py --corpus $C --tokenizer $W/tokenizer.json --out $W/data --limit-docs $LD
cp $W/tokenizer.json $W/data/tokenizer.json

stamp "train model"
python3 tools/model/train_model.py --data $W/data --out $R/models/apr-tiny --steps $STEPS 2>&1 | tee $R/train.log

stamp "golden logits of the trained model (held-out text)"
python3 tools/goldens/make_logit_goldens.py --model $R/models/apr-tiny --text $C/heldout.jsonl:64,2048 --last 24 \
  --out $R/goldens/apr-tiny.logits.safetensors

stamp "tokenizer goldens"
# The golden files name their tokenizer by its path in the repository.
mkdir -p models/apr-tiny && cp $W/tokenizer.json models/apr-tiny/tokenizer.json
cp $R/models/tokenizer-gpt2.json tests/golden/tokenizer/gpt2-tokenizer.json
python3 tools/goldens/make_tokenizer_goldens.py --tokenizer models/apr-tiny/tokenizer.json \
  --strings tests/golden/tokenizer/strings.json --out $R/goldens/apr-tiny.golden.json
python3 tools/goldens/make_tokenizer_goldens.py --tokenizer tests/golden/tokenizer/gpt2-tokenizer.json \
  --strings tests/golden/tokenizer/strings.json --out $R/goldens/gpt2.golden.json
python3 -c "import transformers, tokenizers, torch; print('versions', transformers.__version__, tokenizers.__version__, torch.__version__)" > $R/versions.txt
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> $R/versions.txt

stamp "pack"
(cd $R && tar cf $W/results.tar .)
split -b 15M -d $W/results.tar $OUT/results.tar.part-
ls -la $OUT
python3 - <<'PY'
import json
log = json.load(open("/tmp/apr-train/res/models/apr-tiny/training_log.json"))
print("| item | value |\n| --- | --- |")
for k in ("parameters", "steps", "train_seconds", "tokens_seen", "valid_loss", "valid_perplexity", "device"):
    print(f"| {k} | {log[k]} |")
PY
