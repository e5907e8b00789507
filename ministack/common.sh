# Shared settings for the MiniStack scripts. Sourced, not executed.
# MiniStack (PyPI, pinned) is the full-stack emulator: it runs the real function bootstraps behind
# API Gateway v2 with the Lambda authorizer, the Kinesis and SQS event source mappings and the
# EventBridge schedule, so the whole of infra/ can be applied and driven end to end. Everything
# it installs or writes lives under $HUB_LOCAL/ministack (git-ignored).

MS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$MS_DIR/.." && pwd)
HUB_LOCAL=${HUB_LOCAL:-$REPO_ROOT/.local}

MS_HOME=$HUB_LOCAL/ministack
MS_VENV=$MS_HOME/venv
MS_PIDFILE=$MS_HOME/ministack.pid
MS_LOGFILE=$MS_HOME/ministack.log
# The function packages applied to it: host-architecture bootstraps of this checkout's build.
MS_LAMBDA_DIR=$MS_HOME/lambda

MS_HOST=127.0.0.1
MS_PORT=${MINISTACK_PORT:-4567}
MS_URL="http://$MS_HOST:$MS_PORT"

log() { printf '[ministack] %s\n' "$*" >&2; }
die() { printf '[ministack] error: %s\n' "$*" >&2; exit 1; }

ministack_healthy() {
  curl -fsS --max-time 2 "$MS_URL/_ministack/health" >/dev/null 2>&1
}

ministack_pid() {
  [ -f "$MS_PIDFILE" ] || return 1
  local pid
  pid=$(cat "$MS_PIDFILE")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}
