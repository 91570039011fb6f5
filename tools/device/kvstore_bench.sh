#!/usr/bin/env bash
# Storage-tier run on the GPU machine, from prebuilt binaries (no Bazel there).
#
# Here:   bash tools/device/pack_kvstore.sh              (writes .carry/kvstore, ~26 MB)
# Device: bash tools/device/kvstore_bench.sh [--quick]   (carry: .carry/kvstore)
#
# Runs, each under its own time limit so that the results come back even if one stage
# hangs: the GPU correctness tests of the gather kernel, GpuBlockFetcher and the bench's
# attention; the storage-node integration test; the UCX get/put bench (tcp vs shared
# memory on this host); the (a)/(b)/(c) GPU bench with a remote-node run over UCX. Results
# go to $OUT/kvstore_bench.md (tables) and $OUT/*.log; the tables are printed at the end.
set -uo pipefail
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
OUT=${OUT:?run through the device tool, which sets OUT}
C=.carry/kvstore
[ -x $C/bin/kvstore_gpu_bench ] || { echo "no $C/bin: run tools/device/pack_kvstore.sh here and carry .carry/kvstore" >&2; exit 2; }
export LD_LIBRARY_PATH=$PWD/$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export UCX_MODULE_DIR=$PWD/$C/lib/ucx
export APR_STORAGE_NODE=$PWD/$C/bin/storage_node
MD=$OUT/kvstore_bench.md
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 ))s: $*" | tee -a $OUT/stages.log; }

{
  echo "# Storage tier on the GPU machine, $(date -u +%Y-%m-%d)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r)"
  echo '```'
  echo
} > $MD

stamp "GPU correctness tests"
summary() { grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?' "$1" | tr '\n' ' '; }
for t in gpu_fetcher_test bench_kernels_test storage_node_integration_test; do
  if timeout 120 $C/bin/$t > $OUT/$t.log 2>&1; then r=ok; else r="FAILED (rc $?)"; fi
  echo "- $t: $r: $(summary $OUT/$t.log)" | tee -a $MD
done
if [ -x $C/bin/offloaded_decode_test ]; then
  if timeout 120 $C/bin/offloaded_decode_test > $OUT/offloaded_decode_test.log 2>&1; then r=ok; else r="FAILED (rc $?)"; fi
  echo "- offloaded_decode_test: $r: $(summary $OUT/offloaded_decode_test.log)" | tee -a $MD
fi
echo >> $MD

stamp "UCX get/put bench (storage node on 127.0.0.1)"
UCX_ARGS=(--storage_node=$APR_STORAGE_NODE '--transports=tcp;sm' --block_kib=2,8,64 --read_mib=256 --repeats=3)
[ $QUICK = 1 ] && UCX_ARGS+=(--pool_mib=128 --read_mib=128 --repeats=1)
echo "Command: \`kvstore_ucx_bench ${UCX_ARGS[*]}\`" >> $MD
echo >> $MD
timeout 150 $C/bin/kvstore_ucx_bench "${UCX_ARGS[@]}" > $OUT/ucx_bench.md 2> $OUT/ucx_bench.log
echo "rc $?" >> $OUT/ucx_bench.log
cat $OUT/ucx_bench.md >> $MD
echo >> $MD

stamp "GPU bench (a)/(b)/(c) + remote"
GPU_ARGS=(--storage_node=$APR_STORAGE_NODE --remote_tls=sm)
[ $QUICK = 1 ] && GPU_ARGS+=(--contexts=32768 --batches=1 --steps=3 --warmup=1 --host_pool_gib=8 --gpu_pool_gib=8 --remote_pool_gib=2 --churn=0.25)
echo "Command: \`kvstore_gpu_bench ${GPU_ARGS[*]}\`" >> $MD
echo >> $MD
timeout 360 $C/bin/kvstore_gpu_bench "${GPU_ARGS[@]}" > $OUT/gpu_bench.md 2> $OUT/gpu_bench.log
echo "rc $?" >> $OUT/gpu_bench.log
cat $OUT/gpu_bench.md >> $MD

stamp "done"
cat $MD
echo
echo "--- gpu_bench.log (tail) ---"
tail -20 $OUT/gpu_bench.log
