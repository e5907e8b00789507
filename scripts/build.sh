#!/usr/bin/env bash
# The one build `make run` and `make test` share: every target of the workspace, so both resolve
# the same features (tests and benches unify dev-dependency features into the SDK crates; a
# binaries-only build would compile those crates a second time) and neither rebuilds after the
# other. Extra arguments go to cargo (e.g. --quiet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo build --workspace --all-targets --locked "$@"
