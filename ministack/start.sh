#!/usr/bin/env bash
# Starts MiniStack on 127.0.0.1:$MINISTACK_PORT (4567) in the background, installing it first if
# needed, and waits until it answers. Reuses a running instance.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ministack_healthy; then
  log "already running at $MS_URL"
  exit 0
fi
"$MS_DIR/install.sh"
mkdir -p "$MS_HOME/home"

# Why each setting:
#  env -i: function processes inherit MiniStack's environment; each must see only what Lambda
#    gives it (its own variables from Terraform, region, credentials), as in AWS.
#  AUTH=true: MiniStack evaluates each function's IAM role on every call it makes, so a
#    permission missing from infra/ fails the end-to-end tests.
#  AWS_ENDPOINT_URL: the functions' SDK calls come back to this MiniStack.
#  BIND_HOST: it binds 0.0.0.0 otherwise.
log "starting on $MS_URL (log: $MS_LOGFILE)"
setsid env -i \
  PATH=/usr/local/bin:/usr/bin:/bin \
  HOME="$MS_HOME/home" \
  LANG=C.UTF-8 \
  GATEWAY_PORT="$MS_PORT" BIND_HOST="$MS_HOST" \
  AUTH=true \
  AWS_ENDPOINT_URL="$MS_URL" AWS_EC2_METADATA_DISABLED=true \
  AWS_DEFAULT_REGION=us-east-1 \
  LOG_LEVEL="${MINISTACK_LOG_LEVEL:-INFO}" \
  "$MS_VENV/bin/ministack" >"$MS_LOGFILE" 2>&1 </dev/null &
echo $! >"$MS_PIDFILE"

deadline=$((SECONDS + ${MINISTACK_WAIT_SECONDS:-60}))
until ministack_healthy; do
  if ! ministack_pid >/dev/null; then
    tail -n 30 "$MS_LOGFILE" >&2 || true
    die "MiniStack exited during start"
  fi
  [ $SECONDS -lt $deadline ] || die "not healthy after ${MINISTACK_WAIT_SECONDS:-60}s (log: $MS_LOGFILE)"
  sleep 0.2
done
log "ready at $MS_URL"
