#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests and the decode-step benchmark on the GPU machine, from
# the repository root, with what tools/device/pack_gpu_binaries.sh packed (carried as
# .carry/cuda). Logs go to $OUT; the last lines printed are a summary and the benchmark
# table.
#
#   bash .carry/cuda/gpu_tests.sh [--tests-only | --bench-only] [bench flags...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/apr-gpu-out}
mkdir -p "$OUT"
W=/tmp/apr-cuda
rm -rf "$W"
mkdir -p "$W"
tar -C "$W" -xJf "$HERE/cuda_gpu.tar.xz"
export LD_LIBRARY_PATH="$W/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# libnccl.so.2 (tensor parallelism) is not carried: the machine's own, or PyTorch's.
if ! ldconfig -p | grep -q 'libnccl\.so\.2 ' && [ ! -e /usr/local/cuda/lib64/libnccl.so.2 ]; then
  d=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
fi
RUN_TESTS=1
RUN_BENCH=1
case "${1:-}" in
  --tests-only) RUN_BENCH=0; shift ;;
  --bench-only) RUN_TESTS=0; shift ;;
esac
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
  | tee "$OUT/gpu.txt"
summary=()
if [ "$RUN_TESTS" = 1 ]; then
  for t in kernels_test cuda_decoder_test; do
    start=$(date +%s)
    "$W/bin/$t" --gtest_color=no >"$OUT/$t.log" 2>&1
    rc=$?
    pass=$(grep -c '^\[       OK \]' "$OUT/$t.log")
    fail=$(grep -c '^\[  FAILED  \]' "$OUT/$t.log")
    summary+=("$t: rc=$rc passed=$pass failed-lines=$fail ($(( $(date +%s) - start ))s)")
    grep -E '^\[  FAILED  \]|Failure|error|worst|vs ' "$OUT/$t.log" | head -40
  done
fi
if [ "$RUN_BENCH" = 1 ]; then
  start=$(date +%s)
  "$W/bin/decode_step_bench" --out="$OUT/bench_table.md" "$@" >"$OUT/bench.log" 2>&1
  rc=$?
  summary+=("decode_step_bench: rc=$rc ($(( $(date +%s) - start ))s)")
  grep -vE '^\|' "$OUT/bench.log" | tail -30
fi
echo "=== summary"
printf '%s\n' "${summary[@]}"
[ -f "$OUT/bench_table.md" ] && cat "$OUT/bench_table.md"
exit 0
