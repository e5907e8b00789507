#!/usr/bin/env bash
# The test command (README, CI): static checks, the local AWS environment, every test.
#   - cargo fmt, terraform fmt, clippy with warnings as errors
#   - LocalStack (installed on first use) with infra/ applied, started in parallel with the build;
#     stopped again at the end if this script started it
#   - unit tests, integration tests against LocalStack (gateway over HTTP and HTTPS, the real
#     function binaries under a Lambda Runtime API, terraform validate/plan)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source localstack/common.sh

export AWS_EC2_METADATA_DISABLED=true CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "formatting"
cargo fmt --all -- --check
terraform fmt -check -recursive infra

step "local AWS environment (in the background)"
started_localstack=0
localstack_healthy || started_localstack=1
mkdir -p "$HUB_LOCAL"
localstack/up.sh >"$HUB_LOCAL/up.log" 2>&1 &
up_pid=$!
cleanup() {
  if [ "$started_localstack" = 1 ]; then localstack/stop.sh || true; fi
}
trap cleanup EXIT

step "Azure's Node.js SDKs for the compatibility test (pinned by tests/azure-sdk/package-lock.json)"
npm ci --prefix tests/azure-sdk --no-audit --no-fund --silent

# nice: the build yields the CPU to LocalStack while infra/ is being applied to it (a starved
# LocalStack answers late and Terraform's retries then trip over their own first attempts).
step "clippy"
nice -n 10 cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
nice -n 10 cargo build --workspace --all-targets --locked

step "waiting for the local AWS environment"
if ! wait "$up_pid"; then
  cat "$HUB_LOCAL/up.log" >&2
  echo "the local AWS environment did not come up" >&2
  exit 1
fi
cat "$HUB_LOCAL/up.log"

step "tests"
cargo test --workspace --locked -- --color never

echo
echo "all checks passed in $((SECONDS - started))s"
