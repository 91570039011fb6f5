#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang (-fsanitize=fuzzer,address) outside
# Bazel, straight from the sources, and runs each for a bounded time on its committed
# seed corpus (tests/fuzz/corpus/<target>/). docs/RELIABILITY.md, "Fuzzing".
#
#   tools/fuzz/run_fuzzers.sh [--seconds=20] [--targets=a,b] [--out=DIR] [--keep_corpus]
#
# Targets: safetensors, model_config, tokenizer_json, tokenize, cluster_config,
# generate_request, openai_request. Exits 1 when a fuzzer finds a crash (the input is left in
# OUT/artifacts/) or does not build. Why outside Bazel: Bazel 4's auto-configured
# toolchain is gcc, and switching the compiler needs --repo_env and a second toolchain
# for the whole build; the parsers' sources compile directly in a few seconds each.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_TARGET=20
TARGETS="safetensors,model_config,tokenizer_json,tokenize,cluster_config,generate_request,openai_request"
OUT="${TMPDIR:-/tmp}/apr-fuzz"
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --seconds=*) SECONDS_PER_TARGET="${arg#*=}" ;;
    --targets=*) TARGETS="${arg#*=}" ;;
    --out=*) OUT="${arg#*=}" ;;
    --keep_corpus) KEEP=1 ;;  # merge new inputs back into tests/fuzz/corpus/<target>
    *) echo "run_fuzzers: unknown argument $arg" >&2; exit 2 ;;
  esac
done

CXX="${CXX_FUZZ:-clang++}"
command -v "$CXX" >/dev/null || { echo "run_fuzzers: $CXX not found (tools/setup.sh installs clang)" >&2; exit 1; }
mkdir -p "$OUT/obj" "$OUT/gen" "$OUT/bin" "$OUT/artifacts" "$OUT/logs"

# Generated protobuf messages (no gRPC services are needed).
protoc -I. --cpp_out="$OUT/gen" cluster/config.proto rpc/generation/v1/generation.proto

CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address
          -I. -I"$OUT/gen" -Wno-deprecated-declarations)
ABSL_LIBS=$(sed -n '/^ABSL_LIBS = \[/,/^\]/p' third_party/system.BUILD | grep -o '"[a-z0-9_]*"' | tr -d '"' | sed 's/^/-labsl_/' | tr '\n' ' ')
LIBS=($ABSL_LIBS -lprotobuf -lpcre2-8 -licuuc -licudata -lpthread)

RUNTIME=(runtime/dtype.cc runtime/json_util.cc runtime/file_util.cc runtime/safetensors.cc
         runtime/model_config.cc runtime/fuzz/invariants.cc)
TOKENIZER=($(ls runtime/tokenizer/*.cc | grep -v -e '_test.cc$' -e 'tokenize_main.cc$'))
PROTOS=("$OUT/gen/cluster/config.pb.cc" "$OUT/gen/rpc/generation/v1/generation.pb.cc")

sources_for() {
  case "$1" in
    safetensors) echo runtime/fuzz/safetensors_fuzzer.cc "${RUNTIME[@]}" ;;
    model_config) echo runtime/fuzz/model_config_fuzzer.cc "${RUNTIME[@]}" ;;
    tokenizer_json) echo runtime/fuzz/tokenizer_json_fuzzer.cc "${TOKENIZER[@]}" ;;
    tokenize) echo runtime/fuzz/tokenize_fuzzer.cc "${TOKENIZER[@]}" ;;
    cluster_config) echo cluster/fuzz/config_fuzzer.cc cluster/config.cc "${PROTOS[@]}" ;;
    generate_request) echo cluster/fuzz/generate_request_fuzzer.cc cluster/request_validation.cc \
        runtime/sampling.cc "${RUNTIME[@]}" "${TOKENIZER[@]}" "${PROTOS[@]}" ;;
    openai_request) echo cluster/fuzz/openai_request_fuzzer.cc cluster/openai/protocol.cc \
        cluster/openai/stop_strings.cc $(ls cluster/openai/chat_template*.cc | grep -v _test.cc) ;;
    *) echo "run_fuzzers: unknown target $1" >&2; return 1 ;;
  esac
}

# One object per source, shared by the targets; rebuilt when the source is newer.
object_for() {
  local src="$1" name
  name=$(echo "$src" | sed "s|^$OUT/||; s|/|_|g; s|\.cc$|.o|")
  echo "$OUT/obj/$name"
}

build() {
  local target="$1" objs=() src obj
  for src in $(sources_for "$target"); do
    obj=$(object_for "$src")
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
      "$CXX" "${CXXFLAGS[@]}" -c "$src" -o "$obj"
    fi
    objs+=("$obj")
  done
  "$CXX" -fsanitize=fuzzer,address "${objs[@]}" "${LIBS[@]}" -o "$OUT/bin/${target}_fuzzer"
}

status=0
IFS=',' read -r -a LIST <<< "$TARGETS"
printf '%-17s %10s %8s %6s %6s %7s  %s\n' target execs exec/s cov ft corpus result
for t in "${LIST[@]}"; do
  if ! build "$t" >"$OUT/logs/$t.build.log" 2>&1; then
    echo "run_fuzzers: $t does not build:"; tail -20 "$OUT/logs/$t.build.log"; status=1; continue
  fi
  seeds="tests/fuzz/corpus/$t"
  work="$OUT/corpus/$t"
  mkdir -p "$work"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  timeout $((SECONDS_PER_TARGET + 60)) "$OUT/bin/${t}_fuzzer" "$work" "$seeds" \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" >"$OUT/logs/$t.log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/logs/$t.log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$OUT/logs/$t.log" | grep -o '[0-9]*$' || echo 0)
  last=$(grep -E '^#[0-9]+' "$OUT/logs/$t.log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
  corpus=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (exit $rc, $OUT/logs/$t.log)"; status=1; fi
  printf '%-17s %10s %8s %6s %6s %7s  %s\n' "$t" "${execs:-0}" "${rate:-0}" "$cov" "$ft" "$corpus" "$result"
  if [ $rc -ne 0 ]; then grep -E 'ERROR|SUMMARY|==ERROR|accepted|differs|outside' "$OUT/logs/$t.log" | head -5; fi
  if [ $KEEP -eq 1 ] && [ $rc -eq 0 ]; then
    mkdir -p "$seeds"
    "$OUT/bin/${t}_fuzzer" -merge=1 "$seeds" "$work" >/dev/null 2>&1 || true
  fi
done
exit $status
