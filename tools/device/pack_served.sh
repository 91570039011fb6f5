#!/usr/bin/env bash
# Builds the served system (launcher, front end, worker, client, storage node), its GPU
# integration test and the backends/cuda regression tests here (no GPU needed) and packs
# them, with the Debian shared libraries they need, for tools/device/served_run.sh on the
# GPU machine (no Bazel there).
#
#   bash tools/device/pack_served.sh [DEST]
#   device: carry [".carry/served_libs"], timeout 120: bash .carry/served_libs/install.sh
#     (first, once per warm machine: the large libraries, see below)
#   device: carry [".carry/served"], timeout 600: bash .carry/served/served_run.sh
#   device: carry [".carry/served"], timeout 600: bash .carry/served/served_run.sh generate
#     (cli:generate_gpu_test: the in-process `generate --device cuda:0` against cpu)
#   device: carry [".carry/served"], timeout 600: bash .carry/served/served_bench.sh
#     (issue 17's served benchmark: served_bench, decode_step_bench, make_random_llama)
#
# DEST (default: .carry/served in the main checkout, the one a device call sends) receives
# served.tar.xz, served_run.sh and served_bench.sh; DEST_libs receives the large libraries
# (ICU's data, OpenBLAS and its Fortran runtime: ~12 MiB packed) and install.sh, which
# unpacks them into /tmp/apr-extra/lib, where both scripts look. Why two calls: a call
# carries 64 MiB with the tracked tree (~44 MiB), and both halves together do not fit; the
# machine keeps /tmp while it stays warm (30 s between calls). Binaries keep Bazel's layout
# (bin/cluster/launch, bin/kvstore/storage_node), so the launcher finds the storage node
# where it looks for it.
# Our libraries are linked statically (--dynamic_mode=off). Not carried: glibc, libstdc++,
# libgcc_s, the CUDA libraries (/usr/local/cuda/lib64 there) and NCCL (the machine's).
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
MAIN=$(git -C "$ROOT" worktree list --porcelain | awk 'NR == 1 {print $2}')
DEST=${1:-$MAIN/.carry/served}
cd "$ROOT"
CLUSTER=(//cluster:worker //cluster:frontend //cluster:launch //cluster:generate
  //kvstore:storage_node)
# The in-process CLI (bin/cli/generate), which generate_gpu_test runs.
CLUSTER+=(//cli:generate)
TESTS=(//tests/cluster:served_gpu_test //cli:generate_gpu_test //tests/cluster:gpu_node_loss_test
  //backends/cuda:trained_predictor_test
  //backends/cuda:offload_test
  //backends/cuda:cuda_decoder_test //backends/cuda:kernels_test
  //backends/cuda:offload_kernels_test //backends/cuda:argmax_rows_test
  //backends/cuda:family_kernels_test)
[ -n "${APR_PACK_TESTS:-}" ] && read -r -a TESTS <<<"$APR_PACK_TESTS"
TESTS+=(//bench:chunked_admission_bench //bench:real_reuse_bench)
TESTS+=(//bench:served_bench //bench:decode_step_bench //tools/model:make_random_llama)
bazel build --dynamic_mode=off "${CLUSTER[@]}" "${TESTS[@]}"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin/cluster" "$STAGE/bin/kvstore" "$STAGE/bin/cli" "$STAGE/lib/ucx"
copy() {  # target dest-dir
  local pkg=${1#//} name=${1##*:}
  pkg=${pkg%%:*}
  cp "bazel-bin/$pkg/$name" "$2/$name"
  chmod u+w "$2/$name"
  strip --strip-debug "$2/$name"
}
for t in "${CLUSTER[@]}"; do
  pkg=${t#//}
  copy "$t" "$STAGE/bin/${pkg%%:*}"
done
for t in "${TESTS[@]}"; do copy "$t" "$STAGE/bin"; done
source tools/device/pack_libs.sh
pack_shared_libraries "$STAGE"
mkdir -p "$DEST" "${DEST}_libs"
rm -f "$DEST/served.tar.xz" "$DEST/served_run.sh" "$DEST/served_bench.sh"
rm -f "${DEST}_libs/libs.tar.xz"
mkdir -p "$STAGE/extra/lib"
for lib in "$STAGE"/lib/libicu* "$STAGE"/lib/libopenblas* "$STAGE"/lib/libgfortran* \
  "$STAGE"/lib/libquadmath*; do
  [ -e "$lib" ] && mv "$lib" "$STAGE/extra/lib/"
done
tar -C "$STAGE/extra" -cf - lib | xz -T2 -9e >"${DEST}_libs/libs.tar.xz"
cat >"${DEST}_libs/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Unpacks the large libraries where served_run.sh and served_bench.sh look for them.
set -euo pipefail
mkdir -p /tmp/apr-extra
tar -C /tmp/apr-extra -xJf "$(dirname "$0")/libs.tar.xz"
ls /tmp/apr-extra/lib
INSTALL
tar -C "$STAGE" -cf - bin lib | xz -T2 -9e >"$DEST/served.tar.xz"
cp tools/device/served_run.sh "$DEST/served_run.sh"
cp tools/device/served_bench.sh "$DEST/served_bench.sh"
ls -la "$DEST" "${DEST}_libs"
du -sh "$DEST" "${DEST}_libs"
