#!/usr/bin/env bash
# Waits until LocalStack is healthy and its engines answer real calls (DynamoDB Local and
# kinesis-mock start lazily; the first call to each takes seconds). Fails loudly on timeout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout_s=${LOCALSTACK_WAIT_SECONDS:-180}
deadline=$((SECONDS + timeout_s))

fail() {
  log "not ready after ${timeout_s}s; last lines of $LS_LOGFILE:"
  tail -n 30 "$LS_LOGFILE" >&2 2>/dev/null || true
  exit 1
}

until localstack_healthy; do
  [ $SECONDS -lt $deadline ] || fail
  if [ -f "$LS_PIDFILE" ] && ! localstack_pid >/dev/null; then
    log "LocalStack exited during start"
    fail
  fi
  sleep 0.5
done

# A signed JSON call per engine. Any credentials work against LocalStack.
aws_call() {
  local target=$1 service=$2 body=$3 prefix=$4
  curl -fsS --max-time 60 -X POST "$LS_URL/" \
    -H "Content-Type: application/x-amz-json-$prefix" \
    -H "X-Amz-Target: $target" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/$service/aws4_request, SignedHeaders=host, Signature=0" \
    -d "$body" >/dev/null 2>&1
}

until aws_call DynamoDB_20120810.ListTables dynamodb '{}' 1.0 &&
  aws_call Kinesis_20131202.ListStreams kinesis '{}' 1.1 &&
  aws_call AmazonSQS.ListQueues sqs '{}' 1.0; do
  [ $SECONDS -lt $deadline ] || fail
  sleep 1
done
log "ready at $LS_URL"
