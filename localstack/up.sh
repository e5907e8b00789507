#!/usr/bin/env bash
# Brings up the local AWS environment for the hub: starts LocalStack (installing it on first use),
# applies infra/ to it, and writes .local/hub.env and .local/hub-settings.json, what the local
# gateway and the tests read (endpoints, credentials, names, each function's environment and the
# event source settings, all from the Terraform outputs).
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

source "$REPO_ROOT/scripts/lib/hub-env.sh"
write_hub_env "$LS_DIR/terraform.sh" "$LS_URL" "$HUB_LOCAL"
log "environment written to $HUB_LOCAL/hub.env and $HUB_LOCAL/hub-settings.json"
