#!/usr/bin/env bash
# Builds the CUDA backend's GPU tests and benchmark here (no GPU needed) and packs them,
# with the Debian shared libraries they need, for the GPU machine, which has no Bazel and
# no Debian libraries (docs/CUDA.md "Running on the GPU machine").
#
#   bash tools/device/pack_gpu_binaries.sh [DEST]     (default: /work/main/.carry/cuda)
#
# DEST receives cuda_gpu.tar.xz (bin/ + lib/) and gpu_tests.sh. Our own libraries are
# linked statically (--dynamic_mode=off); glibc, libstdc++, libgcc_s and the CUDA
# libraries (libcudart, libcublas, libcublasLt: /usr/local/cuda/lib64 there too) are not
# carried. The archive is xz-compressed to stay inside the device's 64 MiB transfer.
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
DEST=${1:-/work/main/.carry/cuda}
cd "$ROOT"
TARGETS=(//backends/cuda:kernels_test //backends/cuda:cuda_decoder_test //bench:decode_step_bench)
bazel build --dynamic_mode=off "${TARGETS[@]}"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib"
for t in "${TARGETS[@]}"; do
  path=${t#//}
  path=bazel-bin/${path/://}
  cp "$path" "$STAGE/bin/"
  chmod u+w "$STAGE/bin/$(basename "$path")"
  strip --strip-debug "$STAGE/bin/$(basename "$path")"
done
# Every resolved library outside the CUDA toolkit and the base C/C++ runtime.
for b in "$STAGE"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libstdc++.so.*|libgcc_s.so.*|ld-linux*|libpthread.so.*|libdl.so.*|librt.so.*|libnccl.so.*) continue ;;
  esac
  case "$lib" in /usr/local/cuda*) continue ;; esac
  cp -L "$lib" "$STAGE/lib/"
done
cp tools/device/gpu_tests.sh "$STAGE/"
mkdir -p "$DEST"
tar -C "$STAGE" -cJf "$DEST/cuda_gpu.tar.xz" bin lib gpu_tests.sh
cp tools/device/gpu_tests.sh "$DEST/gpu_tests.sh"
echo "packed into $DEST:"
ls -la "$DEST"
tar -tJvf "$DEST/cuda_gpu.tar.xz" | awk '{print $3, $6}'
