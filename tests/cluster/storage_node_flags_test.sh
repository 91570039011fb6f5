#!/bin/bash
# The storage node's listen / advertise addresses and its block geometry from the model
# (docs/KVSTORE.md "Storage node"): a real //kvstore:storage_node process on 127.0.0.1.
#   - --model=models/apr-tiny gives 2 x 16 x 64 x 2 = 4096-byte blocks (head_dim 64, bf16);
#     no geometry at all, or --model with --head_dim, is refused (exit 2) with a message.
#   - --advertise_host=127.0.0.1 pins UCX to the interface holding it (lo); a wildcard or an
#     address of no interface is refused before the node serves.
set -u
BIN=kvstore/storage_node
fail() { echo "FAIL: $*"; exit 1; }

# expect_refusal EXIT_CODE MESSAGE FLAGS...: the node exits with that code, saying MESSAGE.
expect_refusal() {
  local code=$1 msg=$2; shift 2
  local out rc
  out=$(timeout 20 "$BIN" --grpc_port=0 --capacity_blocks=16 --populate=false "$@" 2>&1)
  rc=$?
  [[ $rc == "$code" ]] || fail "$* exited $rc, expected $code: $out"
  [[ $out == *"$msg"* ]] || fail "$* said '$out', expected '$msg'"
  [[ $out != *"storage_node ready"* ]] || fail "$* served: $out"
  echo "ok: $* -> $msg"
}

expect_refusal 2 "the block size needs the model's geometry: give --model=DIR"
expect_refusal 2 "give --model or --head_dim, not both" --model=models/apr-tiny --head_dim=64
expect_refusal 2 "cannot open $TEST_TMPDIR/none/config.json" --model="$TEST_TMPDIR/none"
expect_refusal 1 "advertise address 0.0.0.0 is a wildcard" --model=models/apr-tiny \
  --advertise_host=0.0.0.0
expect_refusal 1 "advertise address 127.0.0.2 is not an address of this host" \
  --model=models/apr-tiny --advertise_host=127.0.0.2
expect_refusal 1 "is not an IPv4 or IPv6 address" --model=models/apr-tiny \
  --advertise_host=apr-kv-0.apr-kv

# A node that serves: geometry from the model, UCX pinned to lo by the advertised address.
READY="$TEST_TMPDIR/node.ready"
"$BIN" --grpc_host=127.0.0.1 --grpc_port=0 --advertise_host=127.0.0.1 --ucx_tls=tcp \
  --model=models/apr-tiny --capacity_blocks=16 --ready_file="$READY" >"$TEST_TMPDIR/out" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s $READY ]] && break; sleep 0.1; done
[[ -s $READY ]] || { kill "$PID"; fail "no ready file: $(cat "$TEST_TMPDIR/out")"; }
LINE=$(grep "storage_node ready" "$TEST_TMPDIR/out")
kill -TERM "$PID"
wait "$PID"
RC=$?
echo "$LINE"
[[ $LINE == *"block_bytes=4096 "* ]] || fail "block_bytes is not 4096 (apr-tiny head_dim 64, bf16)"
[[ $LINE == *"ucx_net_devices=lo"* ]] || fail "UCX not pinned to lo by --advertise_host"
[[ $RC == 0 ]] || fail "the node exited $RC on SIGTERM"
echo PASS
