#!/usr/bin/env bash
# Builds the tensor-parallel GPU run's binaries here (no GPU needed) and packs them, with
# the Debian shared libraries they need, for the 2-GPU machine (docs/CLUSTER.md "Running
# the TP tests and benchmark"). Not carried: glibc, libstdc++, the CUDA runtime and cuBLAS
# (/usr/local/cuda/lib64 there) and NCCL (about 200 MB; tp_run.sh finds the machine's,
# PyTorch's nvidia-nccl wheel if need be).
#
#   bash tools/device/pack_tp.sh [DEST]   (default: .carry/tp of the main checkout, the one
#                                          a device call sends)
#   device: run, carry [".carry/tp"], kind nvidia-h200-x2: bash .carry/tp/tp_run.sh
#
# DEST receives tp.tar.xz (bin/, lib/, configs/) and tp_run.sh. The configs are this
# tree's (the device gets the main checkout, whose configs may be older).
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
MAIN=$(git -C "$ROOT" worktree list --porcelain | awk 'NR == 1 {print $2}')
DEST=${1:-$MAIN/.carry/tp}
cd "$ROOT"
TARGETS=(
  //cluster:worker
  //cluster:frontend
  //cluster:launch
  //cluster:generate
  //tests/cluster:tp_worker_test
  //bench:tp_decode_bench
  //tools/model:make_random_llama
)
bazel build --dynamic_mode=off "${TARGETS[@]}"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/configs"
for t in "${TARGETS[@]}"; do
  pkg=${t#//}; pkg=${pkg%%:*}; name=${t##*:}
  cp "bazel-bin/$pkg/$name" "$STAGE/bin/$name"
  chmod u+w "$STAGE/bin/$name"
  strip --strip-debug "$STAGE/bin/$name"
done
skip='^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux-x86-64|libcudart|libcuda|libcublas|libcublasLt|libnccl)\.so'
for b in "$STAGE"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  base=$(basename "$lib")
  if [[ $base =~ $skip ]]; then continue; fi
  cp -L "$lib" "$STAGE/lib/$base"
done
strip --strip-debug "$STAGE"/lib/*.so* 2>/dev/null || true
cp configs/*.textproto "$STAGE/configs/"
mkdir -p "$DEST"
rm -f "$DEST"/tp.tar.xz "$DEST"/tp_run.sh
tar -C "$STAGE" -cf - bin lib configs | xz -T2 -6 > "$DEST/tp.tar.xz"
cp tools/device/tp_run.sh "$DEST/tp_run.sh"
ls -la "$DEST"
du -sh "$DEST"
