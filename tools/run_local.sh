#!/usr/bin/env bash
# The main job on the embedded default: starts the local cluster (configs/local.textproto:
# front end + one worker on the bundled model, CPU when there is no GPU), streams one
# generation from it through the gRPC client, and stops the cluster.
#   bash tools/run_local.sh ["prompt"] [generate flags...]   e.g. --temperature 0 --max_tokens 200
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT=${1:-"def read_config(path):"}
shift || true
echo "run_local: building (first time: a few minutes)" >&2
bazel build //cluster:launch //cluster:generate //cluster:frontend //cluster:worker 2>&1 \
  | grep -E "^(ERROR|FAILED)" >&2 || true
BIN=bazel-bin/cluster
[ -x $BIN/launch ] || { echo "run_local: build failed" >&2; exit 1; }
RUN=$(mktemp -d)
$BIN/launch --ready_file "$RUN/ready" >"$RUN/launch.log" 2>&1 &
LAUNCH=$!
stop() { kill -INT $LAUNCH 2>/dev/null && wait $LAUNCH 2>/dev/null || true; rm -rf "$RUN"; }
trap stop EXIT
for _ in $(seq 1 300); do
  [ -f "$RUN/ready" ] && break
  kill -0 $LAUNCH 2>/dev/null || { cat "$RUN/launch.log" >&2; echo "run_local: the cluster did not start" >&2; exit 1; }
  sleep 0.1
done
[ -f "$RUN/ready" ] || { cat "$RUN/launch.log" >&2; echo "run_local: no ready file after 30 s" >&2; exit 1; }
PORT=$(sed -n 's/^grpc_port=//p' "$RUN/ready")
echo "run_local: cluster serving on 127.0.0.1:$PORT" >&2
$BIN/generate --server "127.0.0.1:$PORT" --prompt "$PROMPT" "$@"
