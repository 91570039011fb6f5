# Sourced by the tools/device pack scripts: copies into STAGE/lib every shared library the
# binaries under STAGE/bin resolve, except the base C/C++ runtime, the CUDA libraries and
# NCCL (the GPU machine has its own), plus UCX's loadable cma module into STAGE/lib/ucx
# (tcp, posix and sysv are built into libuct), and strips them.
#   pack_shared_libraries STAGE
pack_shared_libraries() {
  local stage=$1 lib base
  local skip='^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux-x86-64|libcudart|libcuda|libcublas|libcublasLt|libnccl)\.so'
  mkdir -p "$stage/lib/ucx"
  find "$stage/bin" -type f | while read -r b; do
    ldd "$b" | awk '$3 ~ /^\// {print $3}'
  done | sort -u | while read -r lib; do
    base=$(basename "$lib")
    if [[ $base =~ $skip ]]; then continue; fi
    case "$lib" in /usr/local/cuda*) continue ;; esac
    cp -L "$lib" "$stage/lib/$base"
  done
  cp -L /usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0 "$stage/lib/ucx/"
  strip --strip-debug "$stage"/lib/*.so* "$stage"/lib/ucx/*.so* 2>/dev/null || true
}
