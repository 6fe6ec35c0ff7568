# shellcheck shell=bash
# What every bench/*/run.sh does first, as scripts/test does: install the
# packages it runs (scripts/setup) and build the programs it needs.
#   source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
#   bench_prepare weftd weft
# Afterwards WEFT_BIN names the programs' dir (default <source>/build/bin).
# A WEFT_BIN inside a CMake build tree is brought up to date there; one
# elsewhere (prebuilt programs) is only checked.
bench_prepare() {
  local src=${WEFT_SRC:?WEFT_SRC is not set} build_dir log program
  "$src/scripts/setup" || return 1
  export WEFT_BIN=${WEFT_BIN:-$src/build/bin}
  build_dir=$(dirname "$WEFT_BIN")
  log=$(mktemp /tmp/weft-bench-build.XXXXXX)
  if [[ $build_dir == "$src/build" ]]; then
    echo "bench: building $* (scripts/build)" >&2
    "$src/scripts/build" -- --target "$@" >"$log" 2>&1 || { tail -n 30 "$log" >&2; rm -f "$log"; return 1; }
  elif [[ -f $build_dir/CMakeCache.txt ]]; then
    echo "bench: building $* in $build_dir" >&2
    cmake --build "$build_dir" -j "${WEFT_BUILD_JOBS:-2}" --target "$@" >"$log" 2>&1 ||
      { tail -n 30 "$log" >&2; rm -f "$log"; return 1; }
  fi
  rm -f "$log"
  for program in "$@"; do
    [[ -x $WEFT_BIN/$program ]] || { echo "bench: $WEFT_BIN/$program not found" >&2; return 1; }
  done
}
