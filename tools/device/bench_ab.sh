#!/usr/bin/env bash
# Same-call A/B of benchmark drivers after a refactor (issue 18: "figures unchanged"): each
# driver built twice here (OLD and NEW, see below), both run in turn on the GPU machine
# with the same flags, and their tables compared line by line: labels and non-timing
# columns must match exactly, timings are shown as new / old.
#
# Here:  mkdir -p .carry/ab/{old,new}; copy the binaries of decode_step_bench,
#        kvstore_gpu_bench and tp_decode_bench built at each commit into them (xz is fine:
#        NAME.xz), and copy this script to .carry/ab/.
# Device (after served_run.sh unpacked /tmp/apr-served, whose libraries they share):
#        carry [".carry/ab"]: bash .carry/ab/bench_ab.sh
# Output: $OUT/ab/{old,new}_*.{md,log} and the summary printed last.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/apr-ab-out}
W=/tmp/apr-served
R=$OUT/ab
mkdir -p "$R" /tmp/apr-ab
export LD_LIBRARY_PATH="$W/lib:/tmp/apr-extra/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export UCX_MODULE_DIR="$W/lib/ucx"
export NCCL_NVLS_ENABLE=0
NODE=$W/bin/kvstore/storage_node
[ -x "$NODE" ] || { echo "no $NODE: run served_run.sh first" >&2; exit 2; }
for v in old new; do
  mkdir -p /tmp/apr-ab/$v
  for f in "$HERE/$v"/*; do
    case $f in
      *.xz) xz -dc "$f" >/tmp/apr-ab/$v/"$(basename "$f" .xz)" ;;
      *) cp "$f" /tmp/apr-ab/$v/ ;;
    esac
  done
  chmod +x /tmp/apr-ab/$v/*
done
summary=()

# run NAME LIMIT ARGS...: old then new, same flags; --out goes to $R/{old,new}_NAME.md.
run() {
  local name=$1 limit=$2 bin=$3
  shift 3
  local v rc t0
  for v in old new; do
    t0=$SECONDS
    timeout "$limit" /tmp/apr-ab/$v/"$bin" "$@" ${OUTFLAG:+--out=$R/${v}_$name.md} \
      >"$R/${v}_$name.log" 2>&1
    rc=$?
    summary+=("$name $v: rc=$rc ($((SECONDS - t0))s)")
    echo "== $name $v rc=$rc ($((SECONDS - t0))s)"
  done
}

OUTFLAG=1 run decode_step 200 decode_step_bench --cnn_tiles=8,16,32
OUTFLAG=1 run offload 200 decode_step_bench --offload --storage_node="$NODE"
OUTFLAG='' run kvstore_gpu 200 kvstore_gpu_bench --storage_node="$NODE" --remote_tls=sm \
  --contexts=32768 --batches=1,8 --churn=0.25
# Batch 8 only: batch 32 asks for 69 GB of GPU memory at TP = 1 and fails on an H100 in
# either build.
OUTFLAG='' run tp1 120 tp_decode_bench --tp_size=1 --tp_rank=0 --contexts=4096,16384 \
  --batches=8

echo "=== summary"
printf '%s\n' "${summary[@]}" | tee "$R/summary.txt"
