#!/usr/bin/env bash
# Stops the MiniStack started by start.sh, with the function processes it spawned.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid=$(ministack_pid) || { log "not running"; rm -f "$MS_PIDFILE"; exit 0; }
# start.sh ran it in a session of its own: the function processes are in its process group.
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 40); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.25
done
if kill -0 "$pid" 2>/dev/null; then
  log "still running after 10s; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
fi
pkill -KILL -f "$MS_HOME/" 2>/dev/null || true
rm -f "$MS_PIDFILE"
log "stopped"
