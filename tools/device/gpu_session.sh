#!/usr/bin/env bash
# One device call on nvidia-h100-x1, about 8 minutes: the single-GPU tests and issue 6's
# KV-offload benchmark, from what tools/device/pack_gpu_session.sh packed (carried as
# .carry/gpu_session; no Bazel on the GPU machine). From the repository root (the tests
# read models/ and tests/golden/ relative to it):
#
#   device: kind nvidia-h100-x1, carry [".carry/gpu_session"], timeout 600:
#     bash .carry/gpu_session/gpu_session.sh [--quick] [extra decode_step_bench flags]
#
# Stages, in this order, each in its own process group under its own time limit and all of
# them under APR_SESSION_SECONDS (default 500), so that whatever finished comes back:
#   1. offload_kernels_test, offload_test (the offload kernels against host references;
#      KV offload against the resident cache, bit for bit)
#   2. decode_step_bench --offload: (a) full offload, (b) sparse offload + prefetch, (c)
#      sparse resident at Llama-3.1-8B geometry, 32K/128K x batch 1/8, and (b) from a
#      storage node over UCX; the table is rewritten after every row
#   3. kernels_test, cuda_decoder_test, gpu_fetcher_test (regressions)
# --quick: the offload tests and a 32K batch-1 bench of (c), (b), (a) only (about 2
# minutes).
# Logs and tables go to $OUT; the last lines printed are the summary and the table.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/apr-gpu-session-out}
mkdir -p "$OUT"
QUICK=0
if [ "${1:-}" = "--quick" ]; then
  QUICK=1
  shift
fi
T0=$SECONDS
DEADLINE=$((T0 + ${APR_SESSION_SECONDS:-500}))
W=/tmp/apr-gpu-session
rm -rf "$W"
mkdir -p "$W"
tar -C "$W" -xJf "$HERE/gpu_session.tar.xz"
export LD_LIBRARY_PATH="$W/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# libnccl.so.2 (the decoder links NCCL for tensor parallelism; built against 2.28) is not
# carried (about 200 MB): the machine's own, from the linker's cache, the CUDA folder or
# PyTorch's nvidia-nccl wheel.
if ! ldconfig -p | grep -q 'libnccl\.so\.2 ' && [ ! -e /usr/local/cuda/lib64/libnccl.so.2 ]; then
  d=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
fi
# UCX's cma transport is a loadable module; tcp, posix and sysv are built into libuct.
export UCX_MODULE_DIR="$W/lib/ucx"
export APR_STORAGE_NODE="$W/bin/storage_node"
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
  ldd "$W/bin/offload_test" | grep -E "not found|nccl|cublas|cudart"
} 2>&1 | tee "$OUT/machine.txt"
summary=()

# stage NAME LIMIT_S COMMAND...: runs in its own process group (a storage node the command
# forked goes with it), output to $OUT/NAME.log; the limit is cut to the time left.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  ((limit > left)) && limit=$left
  if ((limit < 15)); then
    summary+=("$name: skipped (session time used up)")
    return
  fi
  echo "== $((SECONDS - T0))s: $name (limit ${limit}s)"
  local start=$SECONDS rc timed_out=0
  setsid "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < limit)); do sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && timed_out=1
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rc=$?
  ((timed_out)) && rc=timeout
  local ok fail
  ok=$(grep -c '^\[       OK \]' "$OUT/$name.log")
  fail=$(grep -c '^\[  FAILED  \]' "$OUT/$name.log")
  summary+=("$name: rc=$rc ok=$ok failed-lines=$fail ($((SECONDS - start))s)")
}
# The lines of a test log worth reading here (the full logs come back in $OUT).
show() { grep -E '^\[  FAILED  \]|Failure|rror|bit-identical|overlap|block cache|full offload' "$OUT/$1.log" 2>/dev/null | head -"${2:-40}"; }

B=$W/bin
stage offload_kernels_test 45 "$B/offload_kernels_test" --gtest_color=no
show offload_kernels_test 20
stage offload_test 150 "$B/offload_test" --gtest_color=no
show offload_test
BENCH=(--offload --out="$OUT/offload_table.md" --storage_node="$APR_STORAGE_NODE")
if [ "$QUICK" = 1 ]; then
  BENCH+=(--offload_contexts=32768 --offload_batches=1 --offload_modes=c,b,a --offload_steps=5
    --host_pool_gib=6)
fi
stage offload_bench 270 "$B/decode_step_bench" "${BENCH[@]}" "$@"
grep -vE '^\|' "$OUT/offload_bench.log" | tail -40
if [ "$QUICK" = 0 ]; then
  stage kernels_test 60 "$B/kernels_test" --gtest_color=no
  show kernels_test 20
  stage cuda_decoder_test 90 "$B/cuda_decoder_test" --gtest_color=no
  show cuda_decoder_test 20
  stage gpu_fetcher_test 45 "$B/gpu_fetcher_test" --gtest_color=no
  show gpu_fetcher_test 20
fi
echo "=== summary ($((SECONDS - T0))s)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
[ -f "$OUT/offload_table.md" ] && cat "$OUT/offload_table.md"
exit 0
