#!/usr/bin/env bash
# The one build `make run` and `make test` share: every target of the workspace, so both resolve
# the same features (tests and benches unify dev-dependency features into the SDK crates; a
# binaries-only build would compile those crates a second time) and neither rebuilds after the
# other. The web dashboard is built first (the dashboard function embeds it). Extra arguments go
# to cargo (e.g. --quiet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The dashboard function embeds the front end's build.
scripts/build-dashboard.sh
exec cargo build --workspace --all-targets --locked "$@"
