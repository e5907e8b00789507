#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read what callers send (fuzz/src/lib.rs): libFuzzer
# through cargo-fuzz, on the nightly toolchain (installed with this machine's Rust; cargo-fuzz
# itself is installed here from crates.io, pinned).
#   scripts/fuzz.sh smoke [SECONDS]       every target for SECONDS (default 10) from the committed
#                                         corpus; what it finds new goes to a temporary folder
#   scripts/fuzz.sh run TARGET [SECONDS] [LIBFUZZER-OPTION...]
#                                         one target for SECONDS (default 600), adding what it
#                                         learns to fuzz/corpus/TARGET; prints the executions
#   scripts/fuzz.sh cmin TARGET           minimizes fuzz/corpus/TARGET before it is committed
#   scripts/fuzz.sh list                  the targets
# A crash stops the run with the input saved under fuzz/artifacts/TARGET/ and the command to
# reproduce it; add the input to the target's corpus once fixed (tests/corpora.rs replays every
# corpus input in `cargo test`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.1
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzzing needs the nightly toolchain (rustup toolchain list shows none)" >&2
  exit 1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# The release profile's LTO and stripping (small Lambda binaries) lose the sanitizer coverage's
# symbols at link time.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_STRIP=false

fuzz() { cargo +nightly fuzz "$1" --fuzz-dir fuzz --features libfuzzer "${@:2}"; }
targets() { awk '/^\[\[bin\]\]/ { bin = 1 } bin && /^name = / { gsub(/"/, "", $3); print $3; bin = 0 }' fuzz/Cargo.toml; }

# Runs TARGET for SECONDS over CORPUS (new inputs are written to its first folder); prints
# "TARGET: N executions in S s (R/s)".
# Options after `--` go to libFuzzer (e.g. -max_len=1024).
run_target() {
  local target=$1 seconds=$2 log corpora=() options=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do corpora+=("$1"); shift; done
  [ $# -gt 0 ] && shift && options=("$@")
  log=$(mktemp)
  if ! fuzz run "$target" "${corpora[@]}" -- -max_total_time="$seconds" -print_final_stats=1 "${options[@]}" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed: see the input and the command above" >&2
    rm -f "$log"
    return 1
  fi
  awk -v t="$target" '
    /^stat::number_of_executed_units:/ { n = $2 }
    /^stat::average_exec_per_sec:/ { r = $2 }
    END { printf "%s: %d executions (%d/s)\n", t, n, r }' "$log"
  rm -f "$log"
}

case ${1:-} in
  list) targets ;;
  smoke)
    seconds=${2:-10}
    fuzz build >/dev/null
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for target in $(targets); do
      mkdir -p "$scratch/$target"
      run_target "$target" "$seconds" "$scratch/$target" "fuzz/corpus/$target"
    done
    ;;
  run)
    target=${2:?usage: $0 run TARGET [SECONDS] [LIBFUZZER-OPTION...]}
    run_target "$target" "${3:-600}" "fuzz/corpus/$target" -- "${@:4}"
    ;;
  cmin)
    target=${2:?usage: $0 cmin TARGET}
    fuzz cmin "$target" "fuzz/corpus/$target"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
