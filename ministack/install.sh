#!/usr/bin/env bash
# Installs MiniStack into its own venv from PyPI, pinned with its dependencies
# (ministack/requirements.lock). Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

marker=$MS_VENV/.installed-$(sha256sum "$MS_DIR/requirements.lock" | cut -c1-16)
[ -f "$marker" ] && exit 0
mkdir -p "$MS_HOME"
log "creating venv"
rm -rf "$MS_VENV"
python3 -m venv "$MS_VENV"
"$MS_VENV/bin/pip" install --quiet --no-deps -r "$MS_DIR/requirements.lock"
"$MS_VENV/bin/pip" check >/dev/null || die "pip check failed for $MS_VENV"
touch "$marker"
log "installed under $MS_VENV"
