#!/usr/bin/env bash
# The full-stack stage's environment: MiniStack with the complete infra/ applied to it (functions,
# HTTP API and authorizer, event source mappings, schedule, alarms), the functions being this
# checkout's debug binaries (`cargo build --workspace` first). Writes .local/ministack/hub.env and
# hub-settings.json for the end-to-end tests (HUB_API_URL is the emulated API Gateway).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# MiniStack keeps everything in memory: a state file from an earlier instance describes
# resources this one does not have.
fresh=0
ministack_healthy || fresh=1
"$MS_DIR/start.sh"
if [ "$fresh" = 1 ]; then rm -f "$HUB_LOCAL/terraform/ministack.tfstate" "$HUB_LOCAL/terraform/ministack.tfstate.backup"; fi
"$REPO_ROOT/scripts/package-lambdas.sh" --debug "$MS_LAMBDA_DIR"
log "applying infra/ to MiniStack"
apply_log=$MS_HOME/apply.log
started=$SECONDS
apply() { "$MS_DIR/terraform.sh" apply -no-color >"$apply_log" 2>&1; }
if ! apply; then
  # As for LocalStack: a MiniStack starved of CPU (the test stage runs beside this apply) can
  # answer a create late, and the provider's retry then meets "already exists" (seen: a Lambda
  # permission's statement id, 409) for a resource its state does not hold. A MiniStack this
  # script started holds nothing else (in memory only): start it afresh and apply once more.
  if [ "$fresh" = 1 ]; then
    cp "$apply_log" "$apply_log.failed"
    log "terraform apply failed ($(grep -m1 '^Error' "$apply_log" || echo 'see log')); restarting MiniStack and applying once more"
    "$MS_DIR/stop.sh"
    "$MS_DIR/start.sh"
    rm -f "$HUB_LOCAL/terraform/ministack.tfstate" "$HUB_LOCAL/terraform/ministack.tfstate.backup"
  fi
  if [ "$fresh" = 0 ] || ! apply; then
    tail -n 40 "$apply_log" >&2
    die "terraform apply failed (full log: $apply_log); \`ministack/stop.sh\` and a new start give a clean slate"
  fi
fi
log "terraform apply done in $((SECONDS - started))s ($(grep -c 'Creation complete' "$apply_log" || true) resources created)"

source "$REPO_ROOT/scripts/lib/hub-env.sh"
write_hub_env "$MS_DIR/terraform.sh" "$MS_URL" "$MS_HOME"
log "environment written to $MS_HOME/hub.env"
