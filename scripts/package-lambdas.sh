#!/usr/bin/env bash
# Zips this checkout's built function binaries as Lambda packages (<dir>/<function>/bootstrap.zip,
# the layout infra/ expects), for an emulator that runs them on this machine:
#   scripts/package-lambdas.sh --debug <dir>     from target/debug (what `make test` built)
#   scripts/package-lambdas.sh --release <dir>   from target/release
# For AWS use scripts/build-lambdas.sh (cross-compiled release builds for the Lambda runtime).
# A package is rewritten only when its binary is newer, so applies stay no-ops between runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
  --debug) profile=debug ;;
  --release) profile=release ;;
  *) echo "usage: $0 --debug|--release <dir>" >&2; exit 2 ;;
esac
out=${2:?usage: $0 --debug|--release <dir>}

for function in authorize registry ingest commands analytics dashboard router archiver; do
  binary=target/$profile/$function
  [ -x "$binary" ] || { echo "missing $binary: build the workspace first (cargo build --workspace)" >&2; exit 1; }
  zip=$out/$function/bootstrap.zip
  if [ -f "$zip" ] && [ "$zip" -nt "$binary" ]; then continue; fi
  mkdir -p "$out/$function"
  work=$(mktemp -d)
  cp "$binary" "$work/bootstrap"
  (cd "$work" && zip -q -1 -X bootstrap.zip bootstrap)
  mv "$work/bootstrap.zip" "$zip"
  rm -rf "$work"
done
