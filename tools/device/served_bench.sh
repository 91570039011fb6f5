#!/usr/bin/env bash
# Issue 17 item 5, the served benchmark on one GPU (meant for the H200), from the repository
# root of the GPU machine, with what tools/device/pack_served.sh packed (.carry/served):
#   model   a random Llama-3.1-8B-geometry checkpoint (hidden 4096, 32 heads, 8 KV heads,
#           head_dim 128, intermediate 14336, 32 layers, vocab 128256, 131072 positions, a
#           random predictor from make_random_llama; about 16 GB) in $APR_BENCH_MODEL, plus
#           apr-tiny's tokenizer.json (the front end needs one; prompts are token ids and ids
#           past apr-tiny's vocabulary detokenize to nothing). Kept in /tmp while the machine
#           stays warm and reused when its config.json matches. Written by the fast writer
#           below (disk-bound; 2.5 GB in 10 s here) unless APR_BENCH_MODEL_WRITER=
#           make_random_llama: one thread draws every value and holds about 3x the file in
#           RAM (1.27 B parameters took 88 s and 7.5 GB here, so about 9 minutes and 48 GB
#           for the 8B; its stage stops at 540 s).
#   served  bench/served_bench for each config (launcher + front end + worker [+ storage
#           node] on 127.0.0.1): TTFT, tokens/s per stream and in total, the worker's and the
#           front end's step from /metrics, the tier's traffic (definitions: served_bench.cc).
#   step    decode_step_bench --offload for the same shapes, the in-process step of each
#           placement: (c) sparse resident = one_gpu, (b) sparse offload = offload_host,
#           (b) remote = offload_remote (budget 1024, key-summary calibration every 5 steps,
#           as the served worker).
#   tiny    served_bench on apr-tiny (prompts $APR_BENCH_TINY_PROMPTS, within its 4K context).
# The last lines printed are the served tables and the served step against the in-process
# step. Raw logs and tables accumulate in $R (kept between calls while the machine is warm)
# and come back in $OUT each call.
#
#   device: carry [".carry/served"], timeout 600: bash .carry/served/served_bench.sh [STAGES]
#
# STAGES: comma list of model,served,step,tiny (default model,served,step). Device time is
# scarce: split the work over calls on one warm machine, e.g.
#   bash .carry/served/served_bench.sh model,step
#   APR_BENCH_CONFIGS=one_gpu bash .carry/served/served_bench.sh served
#   APR_BENCH_CONFIGS=offload_host,offload_remote APR_BENCH_STREAMS=1,8 ... served
# Environment (defaults in brackets):
#   APR_BENCH_PROMPTS [32768,131072]   prompt tokens (a prompt is cut to context - max_tokens)
#   APR_BENCH_STREAMS [1,8,32]         concurrent streams
#   APR_BENCH_CONFIGS [one_gpu,offload_host,offload_remote]   configs/<name>.textproto
#   APR_BENCH_MAX_TOKENS [64]          tokens per stream
#   APR_BENCH_LAUNCH [per_row]         per_row: a cluster per row, sized for it (rows that fit
#                                      run; once sizes one launch for the largest row)
#   APR_BENCH_ADMISSION [configured]   whole: prompts admitted whole (--prefill_chunk_tokens=-1,
#                                      every stream in every decode step: the cleanest step
#                                      comparison); configured: the config's chunked admission
#   APR_BENCH_EXTRA []                 more served_bench flags
#   APR_BENCH_MODEL [/tmp/apr-llama8b] APR_BENCH_LAYERS [32]
#   APR_BENCH_STEP_MODES [c,b]         decode_step_bench --offload_modes
#   APR_BENCH_HOST_POOL_CAP_GIB [64] APR_BENCH_REMOTE_CAP_GIB [64]   decode_step_bench's host
#                                      pool and storage node stay under these (host RAM)
#   APR_BENCH_TINY_PROMPTS [1024,3584]
#   APR_SESSION_SECONDS [540], APR_BENCH_STAGE_SECONDS [420]: time limits of the call and of
#                                      each stage (each stage also stops at the call's limit)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(pwd)
OUT=${OUT:-/tmp/apr-served-bench-out}
mkdir -p "$OUT"
STAGES=${1:-model,served,step}
T0=$SECONDS
DEADLINE=$((T0 + ${APR_SESSION_SECONDS:-540}))
STAGE_LIMIT=${APR_BENCH_STAGE_SECONDS:-420}
PROMPTS=${APR_BENCH_PROMPTS:-32768,131072}
STREAMS=${APR_BENCH_STREAMS:-1,8,32}
CONFIGS=${APR_BENCH_CONFIGS:-one_gpu,offload_host,offload_remote}
MAX_TOKENS=${APR_BENCH_MAX_TOKENS:-64}
MODEL=${APR_BENCH_MODEL:-/tmp/apr-llama8b}
LAYERS=${APR_BENCH_LAYERS:-32}
CONTEXT=131072
W=/tmp/apr-served-bench
R=/tmp/apr-served-bench-results
rm -rf "$W"
mkdir -p "$W" "$R"
tar -C "$W" -xJf "$HERE/served.tar.xz"
export LD_LIBRARY_PATH="$W/lib:/tmp/apr-extra/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# The large libraries come in a call of their own (pack_served.sh: served_libs/install.sh).
[ -d /tmp/apr-extra/lib ] || echo "note: /tmp/apr-extra/lib is missing; run served_libs/install.sh first"
if ! ldconfig -p | grep -q 'libnccl\.so\.2 ' && [ ! -e /usr/local/cuda/lib64/libnccl.so.2 ]; then
  d=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
fi
export UCX_MODULE_DIR="$W/lib/ucx"
B=$W/bin
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
summary=()
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
  df -h /tmp | tail -1
  ldd "$B/cluster/worker" "$B/served_bench" | grep -E "not found"
} 2>&1 | tee "$R/machine.txt"

# Processes still running from this unpacked tree (a stage's launched cluster normally goes
# with its launcher: PR_SET_PDEATHSIG), found by their executable's path.
kill_leftovers() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [[ $exe == "$B/"* ]] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
}

# stage NAME LIMIT_S COMMAND: its own process group, killed at its limit; output to
# $R/NAME.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  ((limit > left)) && limit=$left
  if ((limit < 20)); then summary+=("$name: skipped (time)"); return; fi
  echo "== $((SECONDS - T0))s: $name (limit ${limit}s)"
  local start=$SECONDS rc
  setsid bash -c "$*" >"$R/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < limit)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rc=timeout
  else
    wait "$pid"; rc=$?
  fi
  sleep 1
  kill_leftovers
  summary+=("$name: rc=$rc ($((SECONDS - start))s)")
}

# The prompt lengths as served (cut to context - max_tokens), for decode_step_bench's rows.
FIT_PROMPTS=$(tr ',' '\n' <<<"$PROMPTS" | awk -v c=$CONTEXT -v t="$MAX_TOKENS" \
  '{p = $1 + 0; if (p > c - t) p = c - t; printf "%s%d", (NR > 1 ? "," : ""), p}')

# The fast writer (APR_BENCH_MODEL_WRITER=fast): the same checkpoint layout, config.json and
# tensor names as make_random_llama's, but each tensor tiles one 2 MiB block of random bf16
# values of its standard deviation, so writing is disk-bound (make_random_llama draws every
# value on one thread). A timing benchmark's steps do not depend on the values.
# predictor.safetensors comes from make_random_llama (its shape does not depend on the model).
fast_model() {  # DIR LAYERS
  cat >"$W/fast_model.py" <<'PY'
import json, math, os, random, struct, sys
out, layers = sys.argv[1], int(sys.argv[2])
h, nh, nkv, hd, inter, vocab = 4096, 32, 8, 128, 14336, 128256
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
       "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
       "num_attention_heads": nh, "num_key_value_heads": nkv, "head_dim": hd,
       "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
       "rope_theta": 500000.0, "rope_scaling": None, "attention_bias": False,
       "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
       "torch_dtype": "bfloat16"}
with open(os.path.join(out, "config.json"), "w") as f:
    f.write(json.dumps(cfg, indent=2) + "\n")
inv = lambda n: 1 / math.sqrt(n)
t = [("model.embed_tokens.weight", [vocab, h], 1.0)]
for i in range(layers):
    p = "model.layers.%d." % i
    t += [(p + "self_attn.q_proj.weight", [nh * hd, h], inv(h)),
          (p + "self_attn.k_proj.weight", [nkv * hd, h], inv(h)),
          (p + "self_attn.v_proj.weight", [nkv * hd, h], inv(h)),
          (p + "self_attn.o_proj.weight", [h, nh * hd], inv(nh * hd)),
          (p + "mlp.gate_proj.weight", [inter, h], inv(h)),
          (p + "mlp.up_proj.weight", [inter, h], inv(h)),
          (p + "mlp.down_proj.weight", [h, inter], inv(inter)),
          (p + "input_layernorm.weight", [h], None),
          (p + "post_attention_layernorm.weight", [h], None)]
t += [("model.norm.weight", [h], None), ("lm_head.weight", [vocab, h], 4 * inv(h))]
rng, blocks = random.Random(1), {}
def block(sd):  # about 1 Mi bf16 values, uniform with standard deviation sd (None: ones)
    if sd not in blocks:  # a length no row width divides, so rows (and heads) differ
        a = (sd or 0) * math.sqrt(3)
        vals = [1.0] * 4096 if sd is None else [rng.uniform(-a, a) for _ in range(1048583)]
        raw = struct.pack("<%df" % len(vals), *vals)
        blocks[sd] = b"".join(raw[i + 2:i + 4] for i in range(0, len(raw), 4))
    return blocks[sd]
header, off = {}, 0
for name, shape, sd in t:
    n = 2 * math.prod(shape)
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
    off += n
hj = json.dumps(header, separators=(",", ":")).encode()
hj += b" " * (-len(hj) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj)
    for name, shape, sd in t:
        n, b = 2 * math.prod(shape), block(sd)
        while n > 0:
            f.write(b[:n]); n -= min(n, len(b))
print("fast writer: wrote %s (%.1f GB)" % (out, (off + len(hj) + 8) / 1e9))
PY
  "$B/make_random_llama" --out="$1.tiny" --hidden=64 --heads=2 --kv_heads=1 --head_dim=32 \
    --intermediate=128 --layers=1 --vocab=256 --predictor >/dev/null || return 1
  mkdir -p "$1" && mv "$1.tiny/predictor.safetensors" "$1/" && rm -rf "$1.tiny"
  python3 "$W/fast_model.py" "$1" "$2"
}

# .complete marks a checkpoint written to the end (a stage cut at its limit leaves a part).
if [[ $STAGES == *model* ]]; then
  if [ -e "$MODEL/.complete" ] && grep -q "\"num_hidden_layers\": $LAYERS," "$MODEL/config.json"; then
    echo "model: $MODEL is there ($(du -sh "$MODEL" | cut -f1)), reused"
    summary+=("model: reused $MODEL")
  else
    rm -rf "$MODEL"
    timer=""
    [ -x /usr/bin/time ] && timer="/usr/bin/time -v"
    start=$SECONDS
    if [ "${APR_BENCH_MODEL_WRITER:-fast}" = fast ]; then
      stage make_model 540 "$(declare -f fast_model); W=$W B=$B; fast_model $MODEL $LAYERS \
        && touch $MODEL/.complete"
    else
      stage make_model 540 "$timer $B/make_random_llama --out=$MODEL --hidden=4096 \
        --heads=32 --kv_heads=8 --head_dim=128 --intermediate=14336 --layers=$LAYERS \
        --vocab=128256 --max_positions=$CONTEXT --predictor && touch $MODEL/.complete"
    fi
    echo "model writer ${APR_BENCH_MODEL_WRITER:-fast}: $((SECONDS - start)) s, $(du -sh "$MODEL" 2>/dev/null | cut -f1)" |
      tee -a "$R/make_model.log"
    grep -E "wrote|Maximum resident" "$R/make_model.log"
  fi
  [ -e "$MODEL/.complete" ] && cp "$REPO/models/apr-tiny/tokenizer.json" "$MODEL/"
fi

# served_bench for each config in $2 (comma list) on model $1 with prompts $3; tag $4.
served() {
  local model=$1 configs=$2 prompts=$3 tag=$4 cfg admission=""
  [ "${APR_BENCH_ADMISSION:-configured}" = whole ] && admission=--prefill_chunk_tokens=-1
  for cfg in ${configs//,/ }; do
    stage "served_${tag}_$cfg" "$STAGE_LIMIT" "$B/served_bench --config=configs/$cfg.textproto \
      --model=$model --bin_dir=$B/cluster --prompt_tokens=$prompts --streams=$STREAMS \
      --max_tokens=$MAX_TOKENS --launch=${APR_BENCH_LAUNCH:-per_row} $admission \
      --out=$R/served_${tag}_$cfg.md --log=$R/served_${tag}_${cfg}_processes.log \
      --label='$GPU, $(date -u +%Y-%m-%d), $tag: $(basename "$model")' ${APR_BENCH_EXTRA:-}"
    grep -E "^row |launch|failed|not launched|^  " "$R/served_${tag}_$cfg.log" | tail -20
  done
}

if [[ $STAGES == *served* ]]; then
  if [ -e "$MODEL/.complete" ]; then
    served "$MODEL" "$CONFIGS" "$PROMPTS" llama8b
  else
    summary+=("served: no model at $MODEL (run the model stage first)")
  fi
fi

if [[ $STAGES == *tiny* ]]; then
  served "$REPO/models/apr-tiny" "$CONFIGS" "${APR_BENCH_TINY_PROMPTS:-1024,3584}" apr-tiny
fi

# Largest KV (GiB, 8B geometry: 128 KiB a token) of prompt x streams, for sizing below.
kv_gib() { awk -v p="$1" -v s="$2" 'BEGIN {printf "%d", p * s * 131072 / 1073741824 + 0.999}'; }
max_of() { tr ',' '\n' <<<"$1" | sort -n | tail -1; }

if [[ $STAGES == *step* ]]; then
  # Rows whose KV is over the host pool say so (n/a); the pool is pinned host RAM.
  pool=$(($(kv_gib "$(max_of "$FIT_PROMPTS")" "$(max_of "$STREAMS")") * 105 / 100 + 1))
  cap=${APR_BENCH_HOST_POOL_CAP_GIB:-64}
  ((pool > cap)) && pool=$cap
  stage decode_step "$STAGE_LIMIT" "$B/decode_step_bench --offload --offload_contexts=$FIT_PROMPTS \
    --offload_batches=$STREAMS --offload_modes=${APR_BENCH_STEP_MODES:-c,b} \
    --host_pool_gib=$pool --out=$R/decode_step.md"
  grep -E "^ctx|local tier" "$R/decode_step.log" | tail -16
  if [[ $CONFIGS == *offload_remote* ]]; then
    # One run per context: decode_step_bench sizes its storage node for every remote
    # context x batch at once, so each run takes the batches whose KV is under the cap.
    rcap=${APR_BENCH_REMOTE_CAP_GIB:-64}
    for p in ${FIT_PROMPTS//,/ }; do
      rb=""
      for s in ${STREAMS//,/ }; do
        (($(kv_gib "$p" "$s") <= rcap)) && rb+="${rb:+,}$s"
      done
      if [ -z "$rb" ]; then summary+=("decode_step_remote_$p: no batch under ${rcap} GiB"); continue; fi
      stage "decode_step_remote_$p" "$STAGE_LIMIT" "$B/decode_step_bench --offload \
        --offload_contexts= --offload_modes= --host_pool_gib=1 \
        --storage_node=$B/kvstore/storage_node --remote_contexts=$p --remote_batches=$rb \
        --out=$R/decode_step_remote_$p.md"
      grep -E "^ctx|storage node|remote tier" "$R/decode_step_remote_$p.log" | tail -8
    done
  fi
fi

# Served step against the in-process step of the same shape: served rows from
# served_*.md, in-process rows from decode_step.md ((c) = one_gpu, (b) = offload_host,
# (b) remote = offload_remote).
compare() {
  local files=() f
  for f in "$R"/decode_step*.md "$R"/served_*.md; do [ -e "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -F'|' '
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    FILENAME ~ /decode_step/ && $2 ~ /^ *[0-9]/ {
      label = trim($4); key = ""
      if (label ~ /^\(c\) sparse, resident/) key = "one_gpu"
      else if (label ~ /^\(b\) remote/) key = "offload_remote"
      else if (label ~ /^\(b\) sparse offload/) key = "offload_host"
      if (key != "" && trim($5) != "") step[key, trim($2), trim($3)] = trim($5) " (" trim($6) ")"
      next
    }
    FILENAME ~ /served_/ && $4 ~ /^ *[0-9]/ {
      n = split(FILENAME, parts, "/"); tag = parts[n]; sub(/^served_/, "", tag); sub(/\.md$/, "", tag)
      rows[++count] = tag "|" trim($2) "|" trim($4) "|" trim($5) "|" trim($6) "|" trim($7) "|" \
        trim($8) "|" trim($9) "|" trim($10) "|" trim($11)
    }
    END {
      print "| run | config | prompt | streams | TTFT p50 / max (s) | tok/s per stream | total tok/s (overlap / span) | served step (ms) | front-end step (ms) | steps | in-process ms/step (device) | served / in-process |"
      print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      for (i = 1; i <= count; i++) {
        split(rows[i], f, "|")
        ip = step[f[2], f[3], f[4]]; ratio = "-"
        if (ip != "" && f[8] + 0 > 0) ratio = sprintf("%.2fx", f[8] / (ip + 0))
        if (f[8] == "") { f[8] = "-"; f[9] = ""; f[10] = "" }
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], \
          f[5], f[6], f[7], f[8], f[9], f[10], (ip == "" ? "-" : ip), ratio
      }
    }' "${files[@]}"
}

tar -C "$(dirname "$R")" -czf "$OUT/served_bench_logs.tar.gz" "$(basename "$R")"
cp "$R"/*.md "$OUT/" 2>/dev/null
for f in "$R"/served_*.md; do [ -s "$f" ] && { echo; echo "### $(basename "$f")"; cat "$f"; }; done
echo
echo "=== served step against the in-process step (decode_step_bench --offload, same shape)"
compare | tee "$OUT/served_vs_step.md"
echo "=== summary ($((SECONDS - T0))s)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit 0
