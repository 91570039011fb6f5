#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the main job need.
# Idempotent: prints nothing more than one line when everything is already there.
set -euo pipefail

PACKAGES=(
  # Bazel 4 from Debian, offline (see docs/BUILD.md)
  bazel-bootstrap bazel-rules-java bazel-platforms bazel-skylib
  # C++ toolchain and libraries linked by the project
  g++ clang libclang-rt-14-dev
  libabsl-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libucx-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libpcre2-dev libicu-dev libopenblas-dev
  # HTTP server for the Prometheus metrics pages and the OpenAI API; curl for its test
  libcpp-httplib-dev curl
  # openssl CLI: the TLS tests (cluster, storage node) make their certificates at run time
  openssl
  # Python for the CPU smoke tests of the training scripts and the predictor trainer
  python3 python3-numpy python3-torch
  # Text the bundled model's corpus is built from (tools/model/build_corpus.py)
  libpython3.11-testsuite python3.11-doc manpages manpages-dev groff-base
)

# Node.js runs the offline Kubernetes manifest validator (tools/k8s); Debian's nodejs and
# npm unless a node is already installed.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)

# npm packages the tests use, each pinned by its package-lock.json and installed outside
# the workspace: the Kubernetes manifest validator (tools/k8s; tests/cluster/
# k8s_manifests_test.sh) and the official OpenAI SDK (tools/openai; tests/openai).
install_npm_tool() {  # source folder under tools/, destination, a module that shows it is there
  local here dir
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$1"
  dir=$2
  if cmp -s "$here/package-lock.json" "$dir/package-lock.json" &&
     [ -d "$dir/node_modules/$3" ]; then
    return
  fi
  echo "setup: installing $1's npm packages into $dir (npm ci)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo mkdir -p "$dir"
  $sudo cp "$here/package.json" "$here/package-lock.json" "$dir/"
  (cd "$dir" && $sudo npm ci --no-audit --no-fund --omit=dev >/dev/null)
}
install_npm_tools() {
  install_npm_tool k8s /opt/apruntime/k8s-validate kubernetes-models
  install_npm_tool openai /opt/apruntime/openai-client openai
}
# Runs last, however the Debian part below exits.
trap install_npm_tools EXIT

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
