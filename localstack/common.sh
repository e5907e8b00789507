# Shared settings for the LocalStack scripts. Sourced, not executed.
# Everything installed or written lives under $HUB_LOCAL (git-ignored).

LS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LS_DIR/.." && pwd)
HUB_LOCAL=${HUB_LOCAL:-$REPO_ROOT/.local}

LS_HOME=$HUB_LOCAL/localstack
LS_VENV=$LS_HOME/venv
LS_ROOT=$LS_HOME/root            # LocalStack's FILESYSTEM_ROOT: engines under var/lib/localstack/lib
LS_LIB=$LS_ROOT/var/lib/localstack/lib
LS_PIDFILE=$LS_HOME/localstack.pid
LS_LOGFILE=$LS_HOME/localstack.log

LS_HOST=${LOCALSTACK_LISTEN_HOST:-127.0.0.1}
LS_PORT=${LOCALSTACK_PORT:-4566}
LS_URL="http://$LS_HOST:$LS_PORT"

# Pinned engine versions (npm registry). kinesis-local is the version LocalStack 2026.3.0 asks for.
LS_KINESIS_MOCK_VERSION=0.5.2
LS_DYNAMODB_LOCAL_NPM_VERSION=11.1.0
LS_CORE_VERSION=2026.3.0

log() { printf '[localstack] %s\n' "$*" >&2; }
die() { printf '[localstack] error: %s\n' "$*" >&2; exit 1; }

# LocalStack 2026.x needs Python >= 3.12. Prefer what is on PATH, then pyenv's installs.
find_python() {
  local candidate
  for candidate in python3.13 python3.12 \
    "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

localstack_healthy() {
  curl -fsS --max-time 2 "$LS_URL/_localstack/health" >/dev/null 2>&1
}

localstack_pid() {
  [ -f "$LS_PIDFILE" ] || return 1
  local pid
  pid=$(cat "$LS_PIDFILE")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}
