#!/usr/bin/env bash
# Stops the host-mode LocalStack started by start.sh, with its engines (DynamoDB Local, kinesis-mock).
# LocalStack starts the engines in sessions of their own, so the whole process tree is collected
# first. SIGTERM, then SIGKILL after a grace period: LocalStack sometimes hangs on shutdown.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid=$(localstack_pid) || { log "not running"; rm -f "$LS_PIDFILE"; exit 0; }
grace=${LOCALSTACK_STOP_GRACE_SECONDS:-10}

descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}
tree="$pid $(descendants "$pid" | tr '\n' ' ')"

kill -TERM $tree 2>/dev/null || true
for _ in $(seq $((grace * 4))); do
  alive=0
  for p in $tree; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.25
done
if [ $alive -eq 1 ]; then
  log "still running after ${grace}s; sending SIGKILL"
  kill -KILL $tree 2>/dev/null || true
fi
rm -f "$LS_PIDFILE"
log "stopped"
