#!/usr/bin/env bash
# Builds the storage tier's GPU-machine binaries here and packs them, stripped, with the
# Debian shared libraries they need (not libc/libstdc++/libcudart: the GPU machine has
# those) into a folder the device tool carries (default .carry/kvstore, an ignored path;
# the carry limit is 64 MiB). tools/device/kvstore_bench.sh runs them there.
#
#   bash tools/device/pack_kvstore.sh [--with-cpu-decode] [dest]
#   then on the device, carrying .carry/kvstore: bash tools/device/kvstore_bench.sh [--quick]
#
# --with-cpu-decode adds the CPU integration test (apr-tiny over a storage node), which
# brings OpenBLAS (35 MB): the pack then nears the carry limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGETS=(
  //kvstore:storage_node
  //kvstore:gpu_fetcher_test
  //bench:bench_kernels_test
  //bench:kvstore_gpu_bench
  //bench:kvstore_ucx_bench
  //tests/kvstore:storage_node_integration_test
)
if [ "${1:-}" = "--with-cpu-decode" ]; then
  TARGETS+=(//tests/kvstore:offloaded_decode_test)
  shift
fi
DEST=${1:-.carry/kvstore}
bazel build "${TARGETS[@]}"
rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib/ucx"
for t in "${TARGETS[@]}"; do
  pkg=${t#//}; pkg=${pkg%%:*}; name=${t##*:}
  cp "bazel-bin/$pkg/$name" "$DEST/bin/$name"
  chmod u+w "$DEST/bin/$name"
  strip --strip-debug "$DEST/bin/$name"
done
# Shared libraries from Debian, by what ldd resolves under /lib or /usr/lib.
skip='^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux-x86-64|libcudart|libcuda)\.so'
for b in "$DEST"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  base=$(basename "$lib")
  if [[ $base =~ $skip ]]; then continue; fi
  cp -L "$lib" "$DEST/lib/$base"
done
# UCX loads its transport modules with dlopen from UCX_MODULE_DIR: carry the ones a single
# host uses (tcp, posix and sysv are built into libuct; cma is a module).
cp -L /usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0 "$DEST/lib/ucx/"
strip --strip-debug "$DEST"/lib/*.so* "$DEST"/lib/ucx/*.so* 2>/dev/null || true
du -sh "$DEST"
echo "packed into $DEST: $(ls "$DEST/bin" | tr '\n' ' ')"
