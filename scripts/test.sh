#!/usr/bin/env bash
# The test command (README, CI): static checks, the local AWS environments, every test.
#   1. cargo fmt, terraform fmt, the dashboard's lint and unit tests, clippy with warnings as
#      errors, checkov over infra/
#   2. LocalStack (installed on first use) with infra/ applied, started beside the build:
#      unit tests, the integration suite (local gateway over HTTP and HTTPS, the real function
#      binaries under a Lambda Runtime API, Terraform validate/plan and the applied policies), the
#      dashboard in headless Chromium with a simulated fleet, and the end-to-end suite through the
#      local gateway, every AWS call the functions make recorded
#   3. the IAM audit: every recorded call is granted by the function's role, every grant used
#   4. the full-stack stage: MiniStack with the complete infra/ applied (functions from this
#      build, API Gateway with the authorizer, event source mappings, schedule, alarms; IAM
#      enforced), applied before stage 2 (not beside it: a starved MiniStack fails creates),
#      and the end-to-end suite through its API Gateway
#   5. a fuzzing smoke run: every parser target under libFuzzer for a few seconds (the corpora
#      themselves are replayed by `cargo test` in stage 2)
# Emulators this script started are stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source localstack/common.sh

export AWS_EC2_METADATA_DISABLED=true CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }
started=$SECONDS
mkdir -p "$HUB_LOCAL"

step "formatting"
cargo fmt --all -- --check
terraform fmt -check -recursive infra

step "local AWS environment and tools (in the background)"
started_localstack=0
localstack_healthy || started_localstack=1
started_ministack=0
curl -fsS --max-time 2 "http://127.0.0.1:${MINISTACK_PORT:-4567}/_ministack/health" >/dev/null 2>&1 || started_ministack=1
localstack/up.sh >"$HUB_LOCAL/up.log" 2>&1 &
up_pid=$!
scripts/checkov.sh --install-only >"$HUB_LOCAL/checkov-install.log" 2>&1 &
checkov_pid=$!
scripts/install-chromium.sh >"$HUB_LOCAL/chromium-install.log" 2>&1 &
chromium_pid=$!
cleanup() {
  if [ "$started_ministack" = 1 ]; then ministack/stop.sh >/dev/null 2>&1 || true; fi
  if [ "$started_localstack" = 1 ]; then localstack/stop.sh || true; fi
}
trap cleanup EXIT

step "Azure's Node.js SDKs for the compatibility test (pinned by tests/azure-sdk/package-lock.json)"
npm ci --prefix tests/azure-sdk --no-audit --no-fund --silent

step "dashboard: lint, unit tests and build (pinned by dashboard/package-lock.json)"
scripts/build-dashboard.sh --check

# nice: the build yields the CPU to LocalStack while infra/ is being applied to it (a starved
# LocalStack answers late and Terraform's retries then trip over their own first attempts).
step "clippy"
nice -n 10 cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
nice -n 10 scripts/build.sh

step "checkov"
wait "$checkov_pid" || { cat "$HUB_LOCAL/checkov-install.log" >&2; exit 1; }
scripts/checkov.sh

step "waiting for the local AWS environment"
if ! wait "$up_pid"; then
  cat "$HUB_LOCAL/up.log" >&2
  echo "the local AWS environment did not come up" >&2
  exit 1
fi
cat "$HUB_LOCAL/up.log"

# Not beside the tests: a MiniStack starved of CPU by the suites (and their browsers) answered
# creates so late that the provider retried them into "already exists", on two runs in three.
step "full-stack environment: MiniStack with the whole infra/"
if ! ministack/up.sh >"$HUB_LOCAL/ministack-up.log" 2>&1; then
  cat "$HUB_LOCAL/ministack-up.log" >&2
  echo "the full-stack environment did not come up" >&2
  exit 1
fi
cat "$HUB_LOCAL/ministack-up.log"

step "browser for the dashboard tests (Debian's chromium and chromium-driver)"
wait "$chromium_pid" || { cat "$HUB_LOCAL/chromium-install.log" >&2; exit 1; }
tail -n 2 "$HUB_LOCAL/chromium-install.log"

step "unit, integration, dashboard (headless Chromium) and end-to-end tests against LocalStack"
calls=$HUB_LOCAL/aws-calls
rm -rf "$calls"
HUB_AWS_CALL_LOG=$calls cargo test --workspace --locked -- --color never --test-threads 4

step "IAM audit of the recorded calls"
HUB_AWS_CALL_LOG=$calls cargo test --workspace --locked --test iam_audit -- --ignored --color never

step "end-to-end tests through MiniStack's API Gateway (full stack)"
HUB_ENV_FILE=$HUB_LOCAL/ministack/hub.env cargo test --workspace --locked --test e2e -- --color never --test-threads 8

step "fuzzing smoke run: every target 10 s (libFuzzer, nightly; long runs: scripts/fuzz.sh run)"
scripts/fuzz.sh smoke 10

echo
echo "all checks passed in $((SECONDS - started))s"
