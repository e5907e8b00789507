#!/usr/bin/env bash
# Brings up the local AWS environment for the hub: starts LocalStack (installing it on first use),
# applies infra/ to it, and writes .local/hub.env, the environment the local gateway and the tests
# read (endpoints, credentials, table and stream names from the Terraform outputs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

started_here=0
localstack_healthy || started_here=1
"$LS_DIR/start.sh"
log "applying infra/ to LocalStack"
apply_log=$HUB_LOCAL/terraform/apply.log
mkdir -p "$(dirname "$apply_log")"
started=$SECONDS
apply() { "$LS_DIR/terraform.sh" apply -no-color >"$apply_log" 2>&1; }
if ! apply; then
  # A LocalStack starved of CPU (e.g. beside a cold cargo build) can answer a create late; the
  # provider's retry then meets "already exists" for a resource its state does not hold. A
  # LocalStack this script started keeps nothing worth saving (in memory only): start it afresh
  # and apply once more. One that was already running may hold someone's data: stop there.
  if [ "$started_here" = 1 ]; then
    cp "$apply_log" "$apply_log.failed"
    log "terraform apply failed ($(grep -m1 '^Error' "$apply_log" || echo 'see log')); restarting LocalStack and applying once more"
    "$LS_DIR/stop.sh"
    "$LS_DIR/start.sh"
  fi
  if [ "$started_here" = 0 ] || ! apply; then
    tail -n 40 "$apply_log" >&2
    die "terraform apply failed (full log: $apply_log); \`localstack/stop.sh\` and a new start give a clean slate"
  fi
fi
log "terraform apply done in $((SECONDS - started))s"

outputs=$("$LS_DIR/terraform.sh" output -json)
output() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]]["value"])' "$1" <<<"$outputs"; }

cat >"$HUB_LOCAL/hub.env" <<ENV
# Written by localstack/up.sh from the Terraform outputs of the local apply. Do not edit.
AWS_ENDPOINT_URL=$LS_URL
AWS_REGION=$(output region)
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_EC2_METADATA_DISABLED=true
HUB_HOST_NAME=$(output hub_host_name)
HUB_REGISTRY_TABLE=$(output registry_table_name)
HUB_POLICIES_TABLE=$(output policies_table_name)
HUB_TWINS_TABLE=$(output twins_table_name)
HUB_REGISTRY_EVENTS_QUEUE_URL=$(output registry_events_queue_url)
HUB_TELEMETRY_STREAM=$(output telemetry_stream_name)
HUB_COMMANDS_TABLE=$(output commands_table_name)
HUB_FEEDBACK_QUEUE_URL=$(output feedback_queue_url)
HUB_C2D_DEAD_LETTER_QUEUE_URL=$(output c2d_dead_letter_queue_url)
HUB_COMMAND_REQUESTS_QUEUE_URL=$(output command_requests_queue_url)
HUB_COMMAND_REQUESTS_DLQ_URL=$(output command_requests_dead_letter_queue_url)
HUB_ANALYTICS_TABLE=$(output analytics_table_name)
HUB_ALERTS_TABLE=$(output alerts_table_name)
HUB_RULES_TABLE=$(output rules_table_name)
HUB_ALERTS_QUEUE_URL=$(output alerts_queue_url)
HUB_ANALYTICS_DLQ_URL=$(output analytics_dead_letter_queue_url)
HUB_ANALYTICS_FAILURES_QUEUE_URL=$(output analytics_failed_batches_queue_url)
HUB_ANALYTICS_WINDOWS=1m,1h
ENV
log "environment written to $HUB_LOCAL/hub.env"
