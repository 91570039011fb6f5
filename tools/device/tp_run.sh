#!/usr/bin/env bash
# The tensor-parallel checks and benchmark on the 2-GPU machine (nvidia-h200-x2), from the
# repository root, with what tools/device/pack_tp.sh packed (carried as .carry/tp):
#   1. tests/cluster:tp_worker_test: TP = 2 worker processes against a TP = 1 worker, on
#      models/apr-tiny and on a random 4-layer model (hidden 2048, 16 heads, 4 KV heads,
#      head_dim 128), dense and block-sparse;
#   2. bench/tp_decode_bench: TP = 1, then TP = 2 (one process per GPU);
#   3. the launcher with configs/tp2.textproto and configs/one_gpu.textproto: the same
#      greedy text through the front end, and the workers' metrics.
# NVLink multicast stays off in every process. Logs: $OUT/logs.tar.gz; the last lines
# printed are the summary and the TP = 1 / TP = 2 table ($OUT/table.md).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/apr-tp-out}
mkdir -p "$OUT"
L=/tmp/apr-tp-logs
W=/tmp/apr-tp
rm -rf "$L" "$W"
mkdir -p "$L" "$W"
tar -C "$W" -xJf "$HERE/tp.tar.xz"
export LD_LIBRARY_PATH="$W/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# libnccl.so.2 (built against 2.28) is not carried (about 200 MB): the machine's own, from
# the linker's cache, the CUDA folder or PyTorch's nvidia-nccl wheel.
if ! ldconfig -p | grep -q 'libnccl\.so\.2 ' && [ ! -e /usr/local/cuda/lib64/libnccl.so.2 ]; then
  d=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
fi
B=$W/bin
summary=()
# Workers are started through this wrapper, which records their pids: a stage that hits
# its time limit leaves no worker behind (killed by pid after every stage).
PIDS=/tmp/apr-tp-worker.pids
: >"$PIDS"
mkdir -p "$W/wbin"
printf '#!/bin/sh\necho $$ >>%s\nexec %s/worker "$@"\n' "$PIDS" "$B" >"$W/wbin/worker"
chmod +x "$W/wbin/worker"
ln -sf "$B/frontend" "$W/wbin/frontend"
reap_workers() {
  local p
  # Only a pid that still runs our worker binary (pids are not reused under our feet).
  for p in $(cat "$PIDS"); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$B/worker "; then
      kill -KILL "$p" && echo "killed leftover worker $p"
    fi
  done
  : >"$PIDS"
}

# stage NAME TIMEOUT_S COMMAND: runs COMMAND in its own process group (killed as a group
# at the timeout), output to $L/NAME.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS rc
  setsid bash -c "$*" >"$L/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < limit)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=timeout
  else
    wait "$pid"
    rc=$?
  fi
  summary+=("$name: rc=$rc $((SECONDS - start))s")
  reap_workers >>"$L/$name.log" 2>&1
}

{
  date -u
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  nvidia-smi topo -m
  ldd "$B/worker" | grep -E "not found|nccl|cublas|cudart"
} >"$L/machine.log" 2>&1
cat "$L/machine.log"

# Random models: the same weights with and without predictor.safetensors.
stage models 60 "$B/make_random_llama --out=/tmp/rl-sparse --predictor && mkdir -p /tmp/rl-dense && ln -sf /tmp/rl-sparse/config.json /tmp/rl-sparse/model.safetensors /tmp/rl-dense/"

stage tp_worker_test 180 "APR_WORKER_BIN=$W/wbin/worker APR_TP_MODELS=models/apr-tiny,/tmp/rl-dense,/tmp/rl-sparse $B/tp_worker_test --gtest_color=no"

stage bench_tp1 150 "$B/tp_decode_bench --tp_size=1 --tp_rank=0"
rm -f /tmp/tp.ncclid
stage bench_tp2 150 "export NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT; $B/tp_decode_bench --tp_size=2 --tp_rank=1 --nccl_id_file=/tmp/tp.ncclid >$L/bench_tp2_rank1.log 2>&1 & $B/tp_decode_bench --tp_size=2 --tp_rank=0 --nccl_id_file=/tmp/tp.ncclid; wait"

# The launcher end to end: front end + workers from a config, one greedy request, the
# worker metrics, SIGTERM.
for cfg in tp2 one_gpu; do
  stage "launch_$cfg" 90 "
    $B/launch --config=$W/configs/$cfg.textproto --bin_dir=$W/wbin --ready_file=$L/$cfg.ready &
    lp=\$!
    for i in \$(seq 1 600); do [ -f $L/$cfg.ready ] && break; kill -0 \$lp || break; sleep 0.1; done
    $B/generate --server=127.0.0.1:50051 --prompt='def fibonacci(n):' --max_tokens=40 \
      --temperature=0 --ignore_eos --echo_prompt=false >$L/gen_$cfg.txt
    echo generate rc=\$?
    for port in 9090 9091 9092; do
      (exec 3<>/dev/tcp/127.0.0.1/\$port && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) \
        2>/dev/null | grep -E '^apr_' >$L/metrics_${cfg}_\$port.txt
    done
    kill -TERM \$lp
    wait \$lp
    echo launch rc=\$?"
done

tar -C /tmp -czf "$OUT/logs.tar.gz" apr-tp-logs
awk '/^ROW/ {
  delete v
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  k = v["context"] " " v["batch"] " " v["attention"]
  if (v["tp"] == 1) { t1[k] = v["tokens_per_s"]; s1[k] = v["step_ms"]; order[++n] = k }
  else { t2[k] = v["tokens_per_s"]; s2[k] = v["step_ms"] }
} END {
  print "| context | batch | attention | TP=1 step (ms) | TP=1 tokens/s | TP=2 step (ms) | TP=2 tokens/s | TP=2 / TP=1 |"
  print "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  for (i = 1; i <= n; i++) {
    k = order[i]; split(k, a, " ")
    printf "| %s | %s | %s | %s | %s | %s | %s | %.2fx |\n", a[1], a[2], a[3], s1[k], t1[k], s2[k], t2[k], (t1[k] > 0 ? t2[k] / t1[k] : 0)
  }
}' "$L/bench_tp1.log" "$L/bench_tp2.log" >"$OUT/table.md"
{
  echo "=== tp_worker_test"
  grep -E "TPCHECK|^\[  (FAILED|PASSED) |Failure|error|loaded" "$L/tp_worker_test.log" | head -40
  echo "=== launcher"
  for cfg in tp2 one_gpu; do
    grep -E "rc=|error|fail" -i "$L/launch_$cfg.log" | head -8
    echo "$cfg text: $(head -c 300 "$L/gen_$cfg.txt" | tr '\n' ' ')"
  done
  if [ -s "$L/gen_tp2.txt" ] && cmp -s "$L/gen_tp2.txt" "$L/gen_one_gpu.txt"; then echo "launcher: tp2 text == one_gpu text"; else echo "launcher: tp2 text DIFFERS from one_gpu text"; fi
  grep -hE "apr_(worker_steps_total|worker_decode_tokens_per_second|fetch_bytes_total|tokens_generated_total|queue_depth) " "$L"/metrics_tp2_*.txt | head -10
  echo "=== NCCL"
  grep -hE "NCCL version|via P2P|via SHM|via NET|Channel 00" "$L/bench_tp2.log" "$L/bench_tp2_rank1.log" | sort -u | head -8
  echo "=== bench"
  grep -hE "^(INFO|ALLREDUCE)" "$L/bench_tp1.log" "$L/bench_tp2.log"
  grep -hE "rank [0-9]:|error" "$L/bench_tp1.log" "$L/bench_tp2.log" "$L/bench_tp2_rank1.log" | head -10
  echo "=== stages"
  printf '%s\n' "${summary[@]}"
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
cat "$OUT/table.md"
exit 0
