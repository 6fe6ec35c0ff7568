#!/usr/bin/env bash
# Bounded libFuzzer run over the gossip decoders (UDP packets, TCP streams,
# the stream reader under small size limits and buffer budgets, serf
# messages): builds the target with clang and fuzzes for a fixed time.
# A crash or sanitizer report fails the test.
set -euo pipefail
src=${WEFT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${WEFT_FUZZ_SECONDS:-45}
work=$(mktemp -d /tmp/weft-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
command -v clang++ >/dev/null || { echo "clang++ missing: run scripts/setup" >&2; exit 1; }
cd "$src"
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
  fuzz/gossip_decode_fuzz.cpp control/gossip/*.cpp \
  -lssl -lcrypto -lfmt -lspdlog -lboost_system -o "$work/gossip_decode_fuzz"
mkdir -p "$work/corpus"
"$work/gossip_decode_fuzz" -max_len=4096 -max_total_time="$seconds" -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work/corpus" 2> "$work/log" || { tail -40 "$work/log"; exit 1; }
grep -E "^Done|stat::number_of_executed_units" "$work/log" || tail -3 "$work/log"
echo "fuzzed gossip decoders for ${seconds}s without a crash"
