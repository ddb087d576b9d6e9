# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with the scripts
# Shared by scripts/deploy-*.sh and scripts/operational-*.sh; sourced, never run. Each script
# sets `usage` (its --help text) before sourcing this file and calls `parse_common "$@"`.
#
# What every script gets here:
#   --stage beta|gamma|prod   required; prod also needs --prod, so that prod is never the
#                             result of a typo, a stale shell history line or a default
#   --prod                    the explicit "yes, production" flag
#   --yes                     answer confirmations (non-prod; prod still needs --prod too)
#   -h, --help                the script's usage
# and helpers for the stage's region, CloudFormation outputs, the CDK CLI and confirmations.
# Tools can be replaced for tests and unusual setups: STREAMR_AWS (aws), STREAMR_CDK (the CDK
# CLI, default: node_modules/.bin/cdk from package.json), STREAMR_DOCKER (docker).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA="$ROOT/infrastructure"
PYTHON="$ROOT/.venv/bin/python"
AWS="${STREAMR_AWS:-aws}"
CDK="${STREAMR_CDK:-$ROOT/node_modules/.bin/cdk}"
DOCKER="${STREAMR_DOCKER:-docker}"
SCRIPT="$(basename "$0")"

STAGE=""
PROD=0
YES=0
ARGS=()  # what parse_common did not recognise, for the script's own options

die() {
  echo "$SCRIPT: $*" >&2
  exit 1
}

usage_error() {
  echo "$SCRIPT: $* (see '$SCRIPT --help')" >&2
  exit 2
}

parse_common() {
  while (($#)); do
    case "$1" in
      -h | --help)
        printf '%s\n' "$usage"
        exit 0
        ;;
      --stage)
        (($# >= 2)) || usage_error "--stage needs a value: beta, gamma or prod"
        STAGE="$2"
        shift 2
        ;;
      --stage=*)
        STAGE="${1#--stage=}"
        shift
        ;;
      --prod)
        PROD=1
        shift
        ;;
      --yes)
        YES=1
        shift
        ;;
      *)
        ARGS+=("$1")
        shift
        ;;
    esac
  done
  case "$STAGE" in
    beta | gamma | prod) ;;
    "") usage_error "--stage is required: beta, gamma or prod" ;;
    *) usage_error "unknown stage '$STAGE': use beta, gamma or prod" ;;
  esac
  if [ "$STAGE" = prod ] && [ "$PROD" -ne 1 ]; then
    die "refusing to run against prod without --prod (add it if production is what you mean)"
  fi
  if [ "$STAGE" != prod ] && [ "$PROD" -eq 1 ]; then
    usage_error "--prod given, but the stage is $STAGE"
  fi
  [ -x "$PYTHON" ] || die "$PYTHON is missing; run scripts/bootstrap.sh first"
}

# The stage's setting from infrastructure/config/stages.toml (or STREAMR_INFRA_CONFIG).
stage_setting() {
  (cd "$INFRA" && "$PYTHON" -m streamr_infra.config "$STAGE" --get "$1")
}

region() {
  stage_setting region
}

# Refuse stand-in values (example.com, the documentation account) before touching AWS.
check_config_for_deploy() {
  (cd "$INFRA" && "$PYTHON" -m streamr_infra.config "$STAGE" --for-deploy) >&2
}

stack_name() {
  echo "streamr-$STAGE-$1"
}

# stack_output foundation|application|monitoring OUTPUT_KEY
stack_output() {
  local value
  value="$("$AWS" cloudformation describe-stacks --region "$(region)" \
    --stack-name "$(stack_name "$1")" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text)" ||
    die "cannot read $(stack_name "$1"); is the stage deployed and are AWS credentials set?"
  if [ -z "$value" ] || [ "$value" = None ]; then
    die "$(stack_name "$1") has no output $2"
  fi
  echo "$value"
}

cdk() {
  [ -x "$CDK" ] || die "the CDK CLI ($CDK) is missing; run scripts/bootstrap.sh first"
  (cd "$INFRA" && "$CDK" "$@")
}

# confirm "what will happen" WORD: the operator types WORD to go on. --yes answers it.
confirm() {
  local answer
  if [ "$YES" -eq 1 ]; then
    return 0
  fi
  [ -t 0 ] || die "$1: needs a confirmation; run it in a terminal or add --yes"
  printf '%s\nType "%s" to go on: ' "$1" "$2" >&2
  read -r answer
  [ "$answer" = "$2" ] || die "not confirmed; nothing was done"
}

# A private scratch directory for secret values on their way to AWS: never on a command line.
private_dir() {
  local dir
  dir="$(mktemp -d)"
  chmod 700 "$dir"
  echo "$dir"
}

current_commit() {
  git -C "$ROOT" rev-parse --short=12 HEAD
}

# run_ops_task OVERRIDES_FILE: one task of the stage's ops task definition (the coordinator's
# image, database access only) with the given command, waited for; its exit status is ours.
run_ops_task() {
  local overrides="$1" region cluster taskdef subnets group task status
  region="$(region)"
  cluster="$(stack_output application ClusterName)"
  taskdef="$(stack_output application OpsTaskDefinitionArn)"
  subnets="$(stack_output foundation PrivateSubnets)"
  group="$(stack_output foundation OpsSecurityGroup)"
  task="$("$AWS" ecs run-task --region "$region" --cluster "$cluster" \
    --task-definition "$taskdef" --launch-type FARGATE --count 1 --started-by "$SCRIPT" \
    --network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$group],assignPublicIp=DISABLED}" \
    --overrides "file://$overrides" --query 'tasks[0].taskArn' --output text)"
  if [ -z "$task" ] || [ "$task" = None ]; then
    die "the task did not start (see the ECS console)"
  fi
  echo "$SCRIPT: started $task; waiting for it to finish" >&2
  "$AWS" ecs wait tasks-stopped --region "$region" --cluster "$cluster" --tasks "$task"
  status="$("$AWS" ecs describe-tasks --region "$region" --cluster "$cluster" --tasks "$task" \
    --query "tasks[0].containers[?name=='migrate'].exitCode | [0]" --output text)"
  echo "$SCRIPT: the task exited with status $status; its output:" \
    "scripts/operational-logs.sh --stage $STAGE --service migrate --since 1h" >&2
  [ "$status" = 0 ]
}

# ops_overrides_file [--monitor-account | STREAMR_ARGS...]: the overrides, in a private file.
ops_overrides_file() {
  local dir
  dir="$(private_dir)"
  (cd "$INFRA" && "$PYTHON" -m streamr_infra.container_commands "$@") >"$dir/overrides.json"
  echo "$dir/overrides.json"
}

# force_new_deployment SERVICE...: restart services (new tasks read the secrets again), waited.
force_new_deployment() {
  local region cluster
  region="$(region)"
  cluster="$(stack_output application ClusterName)"
  for service in "$@"; do
    "$AWS" ecs update-service --region "$region" --cluster "$cluster" --service "$service" \
      --force-new-deployment --query 'service.serviceName' --output text >/dev/null
    echo "$SCRIPT: $service is restarting" >&2
  done
  "$AWS" ecs wait services-stable --region "$region" --cluster "$cluster" --services "$@"
  echo "$SCRIPT: $* running again" >&2
}
