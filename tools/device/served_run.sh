#!/usr/bin/env bash
# The served system on one GPU, from the repository root of the GPU machine, with what
# tools/device/pack_served.sh packed (carried as .carry/served):
#   1. tests/cluster:served_gpu_test: the launcher starts configs/one_gpu,
#      offload_host and offload_remote in turn; concurrent greedy streams must get the same
#      tokens under every placement and agree with the CPU reference (docs/CLUSTER.md);
#   2. a smoke run of the same three configs through the `generate` client (text kept);
#   3. the regression tests of backends/cuda (kernels, decoder, offload);
#   generate (when asked): cli:generate_gpu_test, the in-process `generate` binary
#      with --device cuda:0 against --device cpu (greedy tokens, errors, load and prefill
#      lines).
# Every stage has its own time limit and all of them APR_SESSION_SECONDS (default 540).
# Logs come back in $OUT; the last lines printed are the summary.
#   device: carry [".carry/served"], timeout 600: bash .carry/served/served_run.sh [STAGES]
# STAGES: any of test,smoke,regress,generate,fault,chunked,reuse,tables,offload_table
# (default: the first three); tables re-runs decode_step_bench's decode-step and offload
# tables, offload_table the offload table alone;
# fault runs tests/cluster:gpu_node_loss_test (a storage node killed under the worker);
# chunked times bench/chunked_admission_bench, reuse bench/real_reuse_bench.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/apr-served-out}
mkdir -p "$OUT"
STAGES=${1:-test,smoke,regress}
T0=$SECONDS
DEADLINE=$((T0 + ${APR_SESSION_SECONDS:-540}))
W=/tmp/apr-served
L=$W/logs
rm -rf "$W"
mkdir -p "$W" "$L"
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
summary=()
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "$(nproc) cores"
  ldd "$B/cluster/worker" | grep -E "not found"
} 2>&1 | tee "$L/machine.txt"

# stage NAME LIMIT_S COMMAND: own process group, killed as a group at its limit (a
# launcher's children are its group's too), output to $L/NAME.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  ((limit > left)) && limit=$left
  if ((limit < 15)); then summary+=("$name: skipped (time)"); return; fi
  echo "== $((SECONDS - T0))s: $name (limit ${limit}s)"
  local start=$SECONDS rc
  setsid bash -c "$*" >"$L/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < limit)); do sleep 0.3; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rc=timeout
  else
    wait "$pid"; rc=$?
  fi
  pkill -KILL -f "$B/" 2>/dev/null
  local ok fail
  ok=$(grep -c '^\[       OK \]' "$L/$name.log")
  fail=$(grep -c '^\[  FAILED  \]' "$L/$name.log")
  summary+=("$name: rc=$rc ok=$ok failed=$fail ($((SECONDS - start))s)")
}
show() { grep -E '^\[  FAILED  \]|Failure|rror|SERVED|mismatch|differ|overlap|GPU vs CPU' "$L/$1.log" | head -"${2:-30}"; }

if [[ $STAGES == *test* ]]; then
  stage served_gpu_test 240 "OPENBLAS_NUM_THREADS=1 APR_BIN_DIR=$B/cluster stdbuf -oL $B/served_gpu_test --gtest_color=no"
  show served_gpu_test 40
fi

if [[ $STAGES == *fault* ]]; then
  # A storage node killed under the served CUDA worker (docs/RELIABILITY.md).
  stage gpu_node_loss_test 240 "APR_BIN_DIR=$B/cluster stdbuf -oL $B/gpu_node_loss_test --gtest_color=no"
  grep -E "NODE LOSS" "$L/gpu_node_loss_test.log" | head -12
  show gpu_node_loss_test 20
fi

if [[ $STAGES == *generate* ]]; then
  # The in-process CLI on the GPU against its CPU run, from the repository root
  # (models/apr-tiny); the test prints one "GPU vs CPU" line per prompt.
  stage generate_gpu_test 180 "APR_GENERATE_BIN=$B/cli/generate stdbuf -oL \
    $B/generate_gpu_test --gtest_color=no"
  show generate_gpu_test 40
fi

if [[ $STAGES == *smoke* ]]; then
  # Prompts: repository text, 3K to 10K characters (about 1.1K to 3.6K tokens of apr-tiny,
  # whose context is 4K).
  cat docs/*.md README.md >"$W/corpus.txt"
  for i in 0 1 2 3 4 5 6 7; do
    tail -c +$((1 + i * 9000)) "$W/corpus.txt" | head -c $((3000 + 1000 * i)) >"$W/prompt$i.txt"
  done
  for cfg in one_gpu offload_host offload_remote; do
    stage "smoke_$cfg" 90 "
      $B/cluster/launch --config=configs/$cfg.textproto --bin_dir=$B/cluster \
        --ready_file=$L/$cfg.ready &
      lp=\$!
      for i in \$(seq 1 900); do [ -f $L/$cfg.ready ] && break; kill -0 \$lp || break; sleep 0.1; done
      pids=''
      for i in 0 1 2 3 4 5 6 7; do
        $B/cluster/generate --server=127.0.0.1:50051 --prompt_file=$W/prompt\$i.txt \
          --max_tokens=64 --temperature=0 --ignore_eos --echo_prompt=false \
          >$L/gen_${cfg}_\$i.txt 2>$L/gen_${cfg}_\$i.err &
        pids=\"\$pids \$!\"
      done
      wait \$pids
      for port in 9090 9091; do
        (exec 3<>/dev/tcp/127.0.0.1/\$port && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) \
          2>/dev/null | grep -E '^apr_' >$L/metrics_${cfg}_\$port.txt
      done
      kill -TERM \$lp; wait \$lp; echo launch rc=\$?"
    for i in 0 1 2 3 4 5 6 7; do
      [ -s "$L/gen_${cfg}_$i.err" ] && echo "$cfg client $i: $(head -c 300 "$L/gen_${cfg}_$i.err")"
    done
    grep -hE "^apr_(fetch_bytes_total|prefetch_hits_total|prefetch_stalls_total|worker_tokens_total) " \
      "$L/metrics_${cfg}_9091.txt" 2>/dev/null | sed "s/^/$cfg /"
  done
  for i in 0 1 2 3 4 5 6 7; do
    a=$L/gen_one_gpu_$i.txt
    for cfg in offload_host offload_remote; do
      if [ -s "$a" ] && cmp -s "$a" "$L/gen_${cfg}_$i.txt"; then r=same; else r=DIFFERS; fi
      echo "smoke prompt $i: one_gpu vs $cfg: $r ($(wc -c <"$a" 2>/dev/null) bytes)"
    done
  done | tee "$L/smoke_compare.txt"
fi

if [[ $STAGES == *regress* ]]; then
  for t in trained_predictor_test offload_test cuda_decoder_test kernels_test offload_kernels_test \
    argmax_rows_test family_kernels_test; do
    limit=120
    [ "$t" = offload_test ] && limit=180
    stage "$t" "$limit" "APR_STORAGE_NODE=$B/kvstore/storage_node $B/$t --gtest_color=no"
    show "$t" 15
  done
fi

if [[ $STAGES == *chunked* ]]; then
  # Chunked admission (docs/CLUSTER.md "Long prompts"): 8 running streams while one
  # 128K-token prompt is admitted whole, then in 2048-token parts at a 0.25 share.
  stage chunked_admission 240 "$B/chunked_admission_bench --long_prompt=${APR_LONG_PROMPT:-131072} \
    --streams=8 --settings=${APR_CHUNK_SETTINGS:-whole,2048:0.25} --out=$L/chunked_admission.md"
  tail -8 "$L/chunked_admission.log"
fi

if [[ $STAGES == *tables* || $STAGES == *offload_table* ]]; then
  # (offload_table: the second alone.) The decode-step table (all KV resident) and the offload table ((a) full offload, (b)
  # sparse offload, (c) sparse resident) of docs/PERFORMANCE.md, re-run side by side with
  # the tables' own defaults (issue 18: figures unchanged after the refactors).
  if [[ $STAGES != *offload_table* ]]; then
    stage decode_step_table 330 "$B/decode_step_bench --cnn_tiles=8,16,32 --out=$L/decode_step_table.md"
    tail -4 "$L/decode_step_table.log"
  fi
  stage offload_table 220 "$B/decode_step_bench --offload --storage_node=$B/kvstore/storage_node \
    --out=$L/offload_table.md"
  tail -4 "$L/offload_table.log"
  for t in decode_step_table offload_table; do
    [ -f "$L/$t.md" ] && cp "$L/$t.md" "$OUT/$t.md"
  done
fi

if [[ $STAGES == *reuse* ]]; then
  # Block reuse on real text with the trained predictor, next to random rows.
  stage real_reuse 150 "$B/real_reuse_bench --model=models/apr-tiny --texts=docs \
    --out=$L/real_reuse.md"
  tail -9 "$L/real_reuse.log"
fi

tar -C "$W" -czf "$OUT/served_logs.tar.gz" logs
echo "=== summary ($((SECONDS - T0))s)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit 0
