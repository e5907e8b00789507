# Runs Terraform on infra/ against a local emulator, keeping state and working files under
# .local/terraform. Sourced by localstack/terraform.sh and ministack/terraform.sh, which set
#   TF_ENVIRONMENT  name of the environment (its tfvars file is infra/environments/<name>.tfvars)
#   TF_ENDPOINT     the emulator's endpoint URL
#   TF_EXTRA_VARS   (array, optional) more -var arguments
# Offline: where a filesystem mirror of the hashicorp/aws provider exists on this machine,
# Terraform installs from it; elsewhere the public registry is used as usual.
#   <wrapper> apply       create or update the environment's resources
#   <wrapper> <args...>   any other terraform command (plan, output -json, ...)

TF_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TF_HOME=${HUB_LOCAL:-$TF_REPO_ROOT/.local}/terraform
# TF_STATE_FILE lets the tests plan against a fresh state without touching the running hub's.
TF_STATE=${TF_STATE_FILE:-$TF_HOME/$TF_ENVIRONMENT.tfstate}
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

tf() { terraform -chdir="$TF_REPO_ROOT/infra" "$@"; }

# (Re)initialise when a .tf file changed since the last init (new modules, provider versions).
# Both environments share the working directory; the lock keeps two inits from racing.
(
  flock 9
  marker=$TF_DATA_DIR/.initialized
  if [ ! -f "$marker" ] || [ -n "$(find "$TF_REPO_ROOT/infra" -name '*.tf' -newer "$marker" -print -quit)" ]; then
    tf init -input=false >/dev/null
    touch "$marker"
  fi
) 9>"$TF_HOME/init.lock"

local_vars=(-var-file="environments/$TF_ENVIRONMENT.tfvars" -var "aws_endpoint_url=$TF_ENDPOINT" ${TF_EXTRA_VARS[@]+"${TF_EXTRA_VARS[@]}"})
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
