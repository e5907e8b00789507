#!/usr/bin/env bash
# Runs Terraform on infra/ against LocalStack with the local settings (infra/environments/local.tfvars),
# keeping its state and working files under .local/terraform. Offline: where a filesystem mirror of
# the hashicorp/aws provider exists on this machine, Terraform installs from it; elsewhere the
# public registry is used as usual.
#   localstack/terraform.sh apply       create or update the local hub's resources
#   localstack/terraform.sh <args...>   any other terraform command (plan, output -json, ...)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TF_HOME=$HUB_LOCAL/terraform
# TF_STATE_FILE lets the tests plan against a fresh state without touching the running hub's.
TF_STATE=${TF_STATE_FILE:-$TF_HOME/local.tfstate}
mkdir -p "$TF_HOME"
export TF_DATA_DIR=$TF_HOME/data TF_IN_AUTOMATION=1 TF_INPUT=0

# Finds a filesystem mirror holding hashicorp/aws.
find_provider_mirror() {
  local dir
  for dir in ${TF_PROVIDER_MIRROR:-} /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
    "$HOME/.terraform.d/plugins" "$HOME/.local/share/terraform/plugins"; do
    if compgen -G "$dir/registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*" >/dev/null; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if mirror=$(find_provider_mirror); then
  cat >"$TF_HOME/cli.tfrc" <<HCL
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
HCL
  export TF_CLI_CONFIG_FILE=$TF_HOME/cli.tfrc
elif [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then
  unset TF_CLI_CONFIG_FILE # points at nothing; Terraform would only warn about it
fi

tf() { terraform -chdir="$REPO_ROOT/infra" "$@"; }

# (Re)initialise when a .tf file changed since the last init (new modules, provider versions).
marker=$TF_DATA_DIR/.initialized
if [ ! -f "$marker" ] || [ -n "$(find "$REPO_ROOT/infra" -name '*.tf' -newer "$marker" -print -quit)" ]; then
  tf init -input=false >/dev/null
  touch "$marker"
fi

local_vars=(-var-file=environments/local.tfvars -var "aws_endpoint_url=$LS_URL")
case "${1:-}" in
  apply)
    shift
    tf apply -auto-approve -compact-warnings -state="$TF_STATE" "${local_vars[@]}" "$@"
    ;;
  output | show)
    cmd=$1
    shift
    if [ "$cmd" = output ]; then tf output -state="$TF_STATE" "$@"; else tf show "$@"; fi
    ;;
  plan | destroy)
    cmd=$1
    shift
    tf "$cmd" -state="$TF_STATE" "${local_vars[@]}" "$@"
    ;;
  *)
    tf "$@"
    ;;
esac
