#!/usr/bin/env bash
# Terraform on infra/ against LocalStack with infra/environments/local.tfvars (see
# scripts/lib/terraform.sh): `localstack/terraform.sh apply`, `... output -json`, ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TF_ENVIRONMENT=local TF_ENDPOINT=$LS_URL
source "$REPO_ROOT/scripts/lib/terraform.sh"
