#!/usr/bin/env bash
# Starts LocalStack in host mode (no Docker) on 127.0.0.1:4566 in the background, installing it
# first if needed, and waits until DynamoDB, Kinesis and SQS answer. Reuses a running instance.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if localstack_healthy; then
  log "already running at $LS_URL"
  exec "$LS_DIR/wait.sh"
fi

"$LS_DIR/install.sh"
mkdir -p "$LS_ROOT"

# Why each setting:
#  OVERRIDE_IN_DOCKER=0 DNS_ADDRESS=0: these machines have /.dockerenv; without them LocalStack thinks
#    it is in a container, binds 0.0.0.0 and rewrites /etc/resolv.conf.
#  GATEWAY_SERVER=hypercorn: the default server ignores the host part of GATEWAY_LISTEN.
#  SKIP_SSL_CERT_DOWNLOAD=1: the certificate download fails offline and only delays start.
#  KINESIS_LATENCY=0: kinesis-mock otherwise adds 500 ms to every stream state change.
#  DYNAMODB_IN_MEMORY=1: nothing is persisted between runs; the local set-up re-applies Terraform.
export OVERRIDE_IN_DOCKER=0 DNS_ADDRESS=0 \
  GATEWAY_LISTEN="$LS_HOST:$LS_PORT" GATEWAY_SERVER=hypercorn \
  LOCALSTACK_HOST="$LS_HOST:$LS_PORT" FILESYSTEM_ROOT="$LS_ROOT" \
  SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 DYNAMODB_IN_MEMORY=1 KINESIS_LATENCY=0 \
  SERVICES=dynamodb,kinesis,sqs,iam,sts,logs,sns,cloudwatch,events,s3 \
  EAGER_SERVICE_LOADING=${EAGER_SERVICE_LOADING:-1} \
  LS_LOG=${LOCALSTACK_LOG_LEVEL:-warn}

log "starting on $LS_URL (log: $LS_LOGFILE)"
# setsid: own process group, so stop.sh can end LocalStack and its engines together.
setsid "$LS_VENV/bin/python" -m localstack.runtime.main >"$LS_LOGFILE" 2>&1 </dev/null &
echo $! >"$LS_PIDFILE"

exec "$LS_DIR/wait.sh"
