#!/usr/bin/env bash
# Builds the web dashboard (dashboard/) into dashboard/dist, which the dashboard function embeds.
# Node packages come from dashboard/package-lock.json (pinned). Skips what is up to date, so that
# an unchanged dashboard does not make cargo rebuild the function and the local gateway.
#   scripts/build-dashboard.sh           install if needed, build if needed
#   scripts/build-dashboard.sh --check   also lint and unit-test the front end (the test command)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../dashboard"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
if [ "${1:-}" = --check ]; then
  npm run --silent lint
  npm run --silent test -- --reporter=dot
fi
if [ ! -f dist/index.html ] || [ -n "$(find src index.html package-lock.json vite.config.ts scripts -newer dist/index.html -print -quit)" ]; then
  npm run --silent build
fi
