#!/usr/bin/env bash
# Builds the release Lambda packages: target/lambda/<function>/bootstrap.zip, as infra/ expects.
# cargo-lambda and zig (for cross-compiling) come pinned from PyPI into .local/cargo-lambda.
#   scripts/build-lambdas.sh            arm64 (Graviton; needs the rustup target aarch64-unknown-linux-gnu)
#   scripts/build-lambdas.sh --x86-64   x86_64
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source localstack/common.sh

venv=$HUB_LOCAL/cargo-lambda
if [ ! -x "$venv/bin/cargo-lambda" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'cargo-lambda==1.9.2' 'ziglang==0.15.1'
fi
export PATH="$venv/bin:$PATH"

arch=(--arm64)
if [ "${1:-}" = "--x86-64" ]; then
  arch=(--x86-64)
elif ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  echo "the rustup target aarch64-unknown-linux-gnu is missing: run 'rustup target add aarch64-unknown-linux-gnu' or pass --x86-64" >&2
  exit 1
fi

for function in authorize registry ingest commands analytics dashboard router archiver; do
  cargo lambda build --release "${arch[@]}" --output-format zip --bin "$function" --locked
done
ls -l target/lambda/*/bootstrap.zip
