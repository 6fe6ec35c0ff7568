#!/usr/bin/env bash
# Bounded libFuzzer run over the gossip decoders (UDP packets, TCP streams,
# the stream reader under small size limits and buffer budgets, serf
# messages): builds the CMake target with clang (it links weft_gossip, in a
# build dir of its own, see scripts/lib/fuzz_build.sh) and fuzzes for a
# fixed time. A crash or sanitizer report fails the test.
set -euo pipefail
src=${WEFT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${WEFT_FUZZ_SECONDS:-45}
work=$(mktemp -d /tmp/weft-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
source "$src/scripts/lib/fuzz_build.sh"
fuzzer=$(fuzz_build gossip_decode_fuzz)
fuzz_run "$fuzzer" "$work" "$seconds"
echo "fuzzed gossip decoders for ${seconds}s without a crash"
