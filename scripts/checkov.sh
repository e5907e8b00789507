#!/usr/bin/env bash
# checkov (PyPI, pinned in scripts/checkov/requirements.lock, its own venv) over infra/, offline.
# Fails on any finding; a finding may be skipped only in the code, with a written reason
# (`#checkov:skip=CKV_ID:why`), and a skip without one fails too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source localstack/common.sh

venv=$HUB_LOCAL/checkov
lock=scripts/checkov/requirements.lock
marker=$venv/.installed-$(sha256sum "$lock" | cut -c1-16)
if [ ! -f "$marker" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --no-deps -r "$lock"
  touch "$marker"
fi
if [ "${1:-}" = --install-only ]; then exit 0; fi

if grep -rnE 'checkov:skip=[A-Z0-9_]+[[:space:]]*(:[[:space:]]*)?$' infra; then
  echo "checkov skips above carry no reason: write why after the check id (#checkov:skip=ID:why)" >&2
  exit 1
fi
"$venv/bin/checkov" --directory infra --framework terraform --skip-download --compact --quiet
