#!/usr/bin/env bash
# Builds the single-GPU tests and the decode-step benchmark here (no GPU needed) and packs
# them, with the Debian shared libraries they need, for tools/device/gpu_session.sh on the
# GPU machine (no Bazel there).
#
#   bash tools/device/pack_gpu_session.sh [DEST]
#   device: kind nvidia-h100-x1, carry [".carry/gpu_session"], timeout 600:
#     bash .carry/gpu_session/gpu_session.sh
#
# DEST (default: .carry/gpu_session in the main checkout, the one a device call sends)
# receives gpu_session.tar.xz (bin/, lib/) and gpu_session.sh. Our libraries are linked
# statically (--dynamic_mode=off). Not carried: glibc, libstdc++, libgcc_s, the CUDA
# libraries (libcudart, libcublas, libcublasLt are in /usr/local/cuda/lib64 there; libcuda
# comes with the driver) and NCCL (about 200 MB; gpu_session.sh finds the machine's). UCX's cma module is carried for UCX_MODULE_DIR (tcp, posix and
# sysv are built into libuct). The device call's tree plus what it carries must stay under
# 64 MiB: the archive is xz-compressed and its size printed.
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
MAIN=$(git -C "$ROOT" worktree list --porcelain | awk 'NR == 1 {print $2}')
DEST=${1:-$MAIN/.carry/gpu_session}
cd "$ROOT"
TARGETS=(
  //backends/cuda:offload_kernels_test
  //backends/cuda:offload_test
  //backends/cuda:kernels_test
  //backends/cuda:cuda_decoder_test
  //bench:decode_step_bench
  //kvstore:storage_node
  //kvstore:gpu_fetcher_test
)
bazel build --dynamic_mode=off "${TARGETS[@]}"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib/ucx"
for t in "${TARGETS[@]}"; do
  pkg=${t#//}
  pkg=${pkg%%:*}
  name=${t##*:}
  cp "bazel-bin/$pkg/$name" "$STAGE/bin/$name"
  chmod u+w "$STAGE/bin/$name"
  strip --strip-debug "$STAGE/bin/$name"
done
source tools/device/pack_libs.sh
pack_shared_libraries "$STAGE"
if ldd "$STAGE"/bin/* | grep -q "not found"; then
  echo "unresolved libraries:" >&2
  ldd "$STAGE"/bin/* | grep "not found" | sort -u >&2
  exit 1
fi
mkdir -p "$DEST"
rm -f "$DEST/gpu_session.tar.xz" "$DEST/gpu_session.sh"
tar -C "$STAGE" -cf - bin lib | xz -T2 -6 >"$DEST/gpu_session.tar.xz"
cp tools/device/gpu_session.sh "$DEST/gpu_session.sh"
echo "packed into $DEST:"
ls -la "$DEST"
du -sh "$DEST"
