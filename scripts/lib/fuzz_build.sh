# shellcheck shell=bash
# Builds libFuzzer targets of fuzz/CMakeLists.txt with clang and prints each
# program's path, one a line. Build output goes to stderr. All targets share
# one build dir, so the libraries they have in common are compiled once; a
# lock on it makes fuzz scripts that ctest runs at once take turns building
# (ctest builds them all first, in the test integration.fuzz_targets).
#   source "$WEFT_SRC/scripts/lib/fuzz_build.sh"
#   fuzzer=$(fuzz_build gossip_decode_fuzz)
# WEFT_FUZZ_BUILD_DIR overrides the parent dir (default <source>/build-fuzz).
fuzz_build() {
  local targets=("$@") target
  local src=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  local dir=${WEFT_FUZZ_BUILD_DIR:-$src/build-fuzz}/all
  command -v clang++ >/dev/null || { echo "clang++ missing: run scripts/setup" >&2; return 1; }
  local launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  mkdir -p "$dir"
  (
    flock 9
    CC=clang CXX=clang++ cmake -S "$src" -B "$dir" -DWEFT_BUILD_FUZZ=ON -DWEFT_BUILD_BENCH=OFF \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
      "${launcher[@]}" >&2 &&
      cmake --build "$dir" -j "${WEFT_BUILD_JOBS:-2}" --target "${targets[@]}" >&2
  ) 9>"$dir.lock" || return 1
  for target in "${targets[@]}"; do echo "$dir/bin/$target"; done
}

# fuzz_run FUZZER WORK_DIR SECONDS [LIBFUZZER_ARGS...]: fuzzes for SECONDS
# from the corpus in WORK_DIR/corpus (created if missing), artifacts in
# WORK_DIR; on a crash, a sanitizer report or a time-out prints the log's end
# and the offending inputs, and fails.
fuzz_run() {
  local fuzzer=$1 work=$2 seconds=$3 f
  shift 3
  mkdir -p "$work/corpus"
  if ! "$fuzzer" -max_len=4096 -max_total_time="$seconds" -rss_limit_mb=2048 "$@" \
    -artifact_prefix="$work/" "$work/corpus" 2>"$work/log"; then
    tail -40 "$work/log"
    for f in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
      [[ -e $f ]] && { echo "input: $f"; head -c 300 "$f" | od -c | head -20; }
    done
    return 1
  fi
  grep -E "^Done|stat::number_of_executed_units" "$work/log" || tail -3 "$work/log"
}
