#!/usr/bin/env bash
# Terraform on infra/ against MiniStack with infra/environments/ministack.tfvars (see
# scripts/lib/terraform.sh): `ministack/terraform.sh apply`, `... output -json`, ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TF_ENVIRONMENT=ministack TF_ENDPOINT=$MS_URL
TF_EXTRA_VARS=(-var "lambda_artifacts_dir=$MS_LAMBDA_DIR")
source "$REPO_ROOT/scripts/lib/terraform.sh"
