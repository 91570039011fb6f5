#!/usr/bin/env bash
# The front end's OpenAI API with real clients (docs/OPENAI.md): the launcher starts the
# embedded local cluster (configs/local.textproto: CPU worker, apr-tiny, the OpenAI API on
# a picked port); curl checks the wire format, the errors and cancellation; the official
# OpenAI SDK (npm `openai`, installed by tools/setup.sh) makes the calls an application
# makes. The reference for the text is the gRPC client on the same cluster.
set -euo pipefail
tmp=${TEST_TMPDIR:-$(mktemp -d)}
sdk=${APR_OPENAI_SDK_DIR:-/opt/apruntime/openai-client}
[ -d "$sdk/node_modules/openai" ] || { echo "openai_api_test: $sdk/node_modules/openai missing; run tools/setup.sh" >&2; exit 1; }
fail() { echo "openai_api_test: FAIL: $*" >&2; exit 1; }

cluster/launch --ready_file="$tmp/ready" --bin_dir="$PWD/cluster" >"$tmp/launch.log" 2>&1 &
launcher=$!
trap 'kill -TERM $launcher 2>/dev/null; wait $launcher 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -f "$tmp/ready" ] && break
  kill -0 $launcher 2>/dev/null || { cat "$tmp/launch.log"; fail "the cluster did not start"; }
  sleep 0.1
done
[ -f "$tmp/ready" ] || fail "the cluster did not start in time"
port() { grep "^$1=" "$tmp/ready" | cut -d= -f2; }
api="http://127.0.0.1:$(port openai_port)/v1"
grpc="127.0.0.1:$(port grpc_port)"
metrics="http://127.0.0.1:$(port metrics_port)/metrics"

# The reference: the same greedy continuation through the gRPC API.
expected=$(cluster/generate --server="$grpc" --prompt="def fibonacci(n):" --max_tokens=16 \
  --temperature=0 --echo_prompt=false 2>/dev/null)
expected=${expected%$'\n'}  # the client ends its output with a newline

# status BODY-FILE CURL-ARGS...: the HTTP status, the body in BODY-FILE.
status() { local out=$1; shift; curl -s -o "$out" -w '%{http_code}' "$@"; }
post() { status "$1" -H 'Content-Type: application/json' "$api/$2" --data-binary "$3"; }

[ "$(status "$tmp/m" "$api/models")" = 200 ] || fail "GET /v1/models"
grep -q '"id":"apr-tiny"' "$tmp/m" || fail "models: $(cat "$tmp/m")"

# Errors: the OpenAI shape, the right status, and the server keeps serving.
check_error() {  # status field body
  local got
  got=$(post "$tmp/e" completions "$3")
  [ "$got" = "$1" ] || fail "wanted $1 for $3, got $got: $(cat "$tmp/e")"
  grep -q "\"error\":{" "$tmp/e" || fail "no error object for $3: $(cat "$tmp/e")"
  [ -z "$2" ] || grep -q "$2" "$tmp/e" || fail "no $2 in the error for $3: $(cat "$tmp/e")"
}
check_error 400 '"param":null' '{not json'
check_error 400 '"param":"prompt"' '{"model":"apr-tiny","prompt":42}'
check_error 400 '"param":"max_tokens"' '{"model":"apr-tiny","prompt":"x","max_tokens":"many"}'
check_error 400 '"param":"temperature"' '{"model":"apr-tiny","prompt":"x","temperature":9}'
check_error 404 '"code":"model_not_found"' '{"model":"nope","prompt":"x"}'
check_error 400 'outside the vocabulary' '{"model":"apr-tiny","prompt":[999999]}'
{ printf '{"model":"apr-tiny","prompt":"'; head -c 1100000 /dev/zero | tr '\0' 'a'; printf '"}'; } >"$tmp/big.json"
got=$(post "$tmp/e" completions "@$tmp/big.json")
[ "$got" = 413 ] || fail "an oversized body got $got"
[ "$(status "$tmp/e" "$api/nothing")" = 404 ] || fail "unknown route"

# A whole completion: the gRPC client's text, OpenAI's fields.
[ "$(post "$tmp/c" completions '{"model":"apr-tiny","prompt":"def fibonacci(n):","max_tokens":16,"temperature":0}')" = 200 ] ||
  fail "completion: $(cat "$tmp/c")"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (r.object !== "text_completion" || r.choices[0].text !== process.argv[2] ||
      r.usage.completion_tokens !== 16 || r.usage.total_tokens !== r.usage.prompt_tokens + 16) {
    console.error("completion differs:", JSON.stringify(r), "want", JSON.stringify(process.argv[2]));
    process.exit(1);
  }' "$tmp/c" "$expected" || fail "completion body"

# Streaming: server-sent events ending with [DONE].
curl -sN -H 'Content-Type: application/json' "$api/chat/completions" --data-binary \
  '{"model":"apr-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true}' >"$tmp/s"
grep -q '^data: {.*"role":"assistant"' "$tmp/s" || fail "no role chunk: $(head -c 300 "$tmp/s")"
grep -q '"finish_reason":"length"' "$tmp/s" || fail "no finish_reason"
[ "$(grep -c '^data: ' "$tmp/s")" -ge 4 ] || fail "too few events"
tail -n 2 "$tmp/s" | grep -q '^data: \[DONE\]$' || fail "no [DONE]"

# Cancellation: a client that disconnects mid-stream frees its sequence.
curl -sN -m 2 -H 'Content-Type: application/json' "$api/completions" --data-binary \
  '{"model":"apr-tiny","prompt":"def f(x):","max_tokens":3000,"stream":true}' >/dev/null || true
running=1
for _ in $(seq 1 100); do
  running=$(curl -s "$metrics" | awk '$1 == "apr_running_sequences" {print $2}')
  [ "$running" = 0 ] && break
  sleep 0.1
done
[ "$running" = 0 ] || fail "the disconnected stream's sequence is still running ($running)"

# The official SDK.
NODE_PATH="$sdk/node_modules" node tests/openai/sdk_check.cjs "$api" "$expected" ||
  fail "the OpenAI SDK check"
echo "openai_api_test: curl and the OpenAI SDK got what they asked for"

# HTTPS and bearer tokens, as on gRPC: the front end's certificate serves the OpenAI port,
# and a request without a known token is 401 (models included).
kill -TERM $launcher; wait $launcher || true
rm -f "$tmp/ready"
(cd "$tmp" &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 30 -subj /CN=apr-test-ca &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
    -out server.csr -subj /CN=localhost &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.pem) >"$tmp/openssl.log" 2>&1 || fail "openssl: $(cat "$tmp/openssl.log")"
echo "alice s3cret-token" >"$tmp/tokens"
sed -e "0,/metrics_port: 0/s|metrics_port: 0|metrics_port: 0\n  tls { cert_file: \"$tmp/server.pem\" key_file: \"$tmp/server.key\" ca_file: \"$tmp/ca.pem\" }\n  auth { tokens_file: \"$tmp/tokens\" }|" \
    -e "s|models/apr-tiny|$PWD/models/apr-tiny|" configs/local.textproto >"$tmp/tls.textproto"
cluster/launch --config="$tmp/tls.textproto" --ready_file="$tmp/ready" --bin_dir="$PWD/cluster" \
  >"$tmp/launch_tls.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do
  [ -f "$tmp/ready" ] && break
  kill -0 $launcher 2>/dev/null || { cat "$tmp/launch_tls.log"; fail "the TLS cluster did not start"; }
  sleep 0.1
done
[ -f "$tmp/ready" ] || fail "the TLS cluster did not start in time"
https="https://127.0.0.1:$(port openai_port)/v1"
[ "$(status "$tmp/t" --cacert "$tmp/ca.pem" "$https/models")" = 401 ] || fail "no token: $(cat "$tmp/t")"
grep -q '"type":"authentication_error"' "$tmp/t" || fail "401 body: $(cat "$tmp/t")"
[ "$(status "$tmp/t" --cacert "$tmp/ca.pem" -H 'Authorization: Bearer s3cret-token' "$https/models")" = 200 ] ||
  fail "with the token: $(cat "$tmp/t")"
[ "$(status "$tmp/t" --cacert "$tmp/ca.pem" -H 'Authorization: Bearer s3cret-token' \
  -H 'Content-Type: application/json' "$https/completions" \
  --data-binary '{"model":"apr-tiny","prompt":"def fibonacci(n):","max_tokens":16,"temperature":0}')" = 200 ] ||
  fail "completion over HTTPS: $(cat "$tmp/t")"
grep -qF "$(printf '%s' "$expected" | head -n 1)" "$tmp/t" || fail "HTTPS text: $(cat "$tmp/t")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(port openai_port)/v1/models")" != 200 ] ||
  fail "plain HTTP was answered on the TLS port"
echo "openai_api_test: HTTPS with bearer tokens works as on gRPC"
