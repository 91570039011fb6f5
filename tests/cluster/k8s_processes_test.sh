#!/bin/bash
# deploy/'s manifests as real processes on 127.0.0.1 (issue 19 item 5 e): every
# container's command line comes from the YAML (tools/k8s/loopback_plan.js, which lists its
# rewrites: addresses -> 127.0.0.1, free ports, the bundled model, Bazel binaries,
# cuda:0 -> cpu and so f32 blocks, 64 MiB pools), for every pod: two storage nodes, two
# workers, the front end with deploy/cluster.textproto (PLACEMENT_REMOTE: group i's KV
# cache on storage node i). Two concurrent generate clients stream through them, one per
# worker group, and every process stops cleanly on SIGTERM.
set -u
dir="${APR_K8S_VALIDATE_DIR:-/opt/apruntime/k8s-validate}"
export NODE_PATH="$dir/node_modules"
[[ -d $NODE_PATH/yaml ]] || { echo "FAIL: $NODE_PATH/yaml missing; run tools/setup.sh"; exit 1; }
T="$TEST_TMPDIR"
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log; do echo "== $f"; tail -20 "$f"; done
  exit 1
}
node tools/k8s/loopback_plan.js deploy "$PWD/models/apr-tiny" "$PWD" "$T" || fail "plan"
mapfile -t PODS < <(python3 -c 'import json,sys
for p in json.load(open(sys.argv[1]))["processes"]: print(p["pod"])' "$T/plan.json")
[[ ${#PODS[@]} == 5 ]] || fail "expected 5 pods (2 storage nodes, 2 workers, front end): ${PODS[*]}"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; }
trap cleanup EXIT
for i in "${!PODS[@]}"; do
  mapfile -d '' -t ARGV < <(python3 -c 'import json,sys
p=json.load(open(sys.argv[1]))["processes"][int(sys.argv[2])]
sys.stdout.write("\0".join(p["argv"])+"\0")' "$T/plan.json" "$i")
  echo "start ${PODS[$i]}: ${ARGV[*]}"
  "${ARGV[@]}" >"$T/${PODS[$i]}.log" 2>&1 &
  PIDS+=($!)
done
FE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frontend_port"])' "$T/plan.json")

# Ready when a one-token request succeeds (the front end serves once both groups loaded).
for _ in $(seq 120); do
  cluster/generate --server="127.0.0.1:$FE" --prompt=x --max_tokens=1 --timeout_s=5 \
    >/dev/null 2>"$T/probe.err" && break
  for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || fail "${PODS[$i]} exited while starting"
  done
  sleep 0.5
done
cluster/generate --server="127.0.0.1:$FE" --prompt=x --max_tokens=1 --timeout_s=5 \
  >/dev/null 2>"$T/probe.err" || fail "front end not serving: $(cat "$T/probe.err")"

# Two streams at once: the front end routes them to the two groups (fewest running).
for k in 0 1; do
  timeout 120 cluster/generate --server="127.0.0.1:$FE" --prompt="def fibonacci(n):" \
    --max_tokens=24 --ignore_eos --temperature=0 --timeout_s=100 \
    >"$T/client$k.out" 2>"$T/client$k.err" &
  C[$k]=$!
done
for k in 0 1; do wait "${C[$k]}" || fail "client $k: $(cat "$T/client$k.err")"; done
cat "$T"/client*.err
GROUPS_SEEN=$(cat "$T"/client*.err | grep -o ' g[01] ' | sort -u | tr -d ' ' | tr '\n' ' ')
[[ $GROUPS_SEEN == "g0 g1 " ]] || fail "streams did not use both groups: '$GROUPS_SEEN'"
for k in 0 1; do
  grep -q "24 generated" "$T/client$k.err" || fail "client $k did not stream 24 tokens"
done
for n in 0 1; do
  grep -q "block_bytes=8192 " "$T/apr-kv-$n.log" || fail "apr-kv-$n: not 8192-byte f32 blocks"
done
# Group i's worker keeps its blocks in apr-kv-i (deploy/cluster.textproto: g0 -> kv0).
for n in 0 1; do
  grep -q "KV blocks in storage node 127.0.0.1:[0-9]* (apr-kv-$n," "$T/apr-worker-$n.log" ||
    fail "apr-worker-$n does not use apr-kv-$n"
done
# SIGTERM in the order the launcher uses: front end, workers, storage nodes; all exit 0.
for i in 4 3 2 1 0; do
  kill -TERM "${PIDS[$i]}"
  wait "${PIDS[$i]}" || fail "${PODS[$i]} exited $? on SIGTERM"
done
PIDS=()
# Each node held blocks during the streams and none once they were freed.
for n in 0 1; do
  line=$(grep "storage_node: stopped" "$T/apr-kv-$n.log")
  echo "apr-kv-$n: $line"
  [[ $line =~ \(0\ sequences,\ 0\ blocks\ in\ use\ at\ exit,\ ([0-9]+)\ allocated ]] ||
    fail "apr-kv-$n: '$line'"
  (( BASH_REMATCH[1] > 0 )) || fail "apr-kv-$n allocated no blocks: the KV cache was not remote"
done
echo PASS
