#!/usr/bin/env bash
# Joins and unpacks the results.tar parts that tools/device/train_bundled_model.sh wrote.
# Usage: unpack_results.sh <folder with results.tar.part-*> <destination>
set -euo pipefail
src=${1:?folder with results.tar.part-*}; dst=${2:?destination folder}
mkdir -p "$dst"
cat "$src"/results.tar.part-* | tar xf - -C "$dst"
echo "unpacked into $dst:"; (cd "$dst" && find . -type f | sort)
