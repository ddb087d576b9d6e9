#!/usr/bin/env bash
usage="Usage: scripts/deploy-stage.sh --stage beta|gamma|prod [--prod] [--image-tag TAG]
                                 [--foundation-only] [--yes]

Deploy a stage: show the differences, ask, then deploy its stacks (foundation, application,
monitoring) with the images tagged TAG. The database migrations run once, as one task, before
the new version's services start (a failed migration rolls the deploy back). Rolling back a
release is deploying the previous tag again (docs/deployment.md).

Refuses stand-in configuration values (example.com, the documentation account) and images
that are not in the stage's ECR repositories yet (scripts/deploy-images.sh pushes them).

  --stage STAGE        beta, gamma or prod
  --prod               required with --stage prod
  --image-tag TAG      images to run (default: the checked-out commit)
  --foundation-only    only the network, data stores, secrets and ECR repositories (the first
                       step of a first deploy, before any image can be pushed)
  --yes                no questions (CI); for prod, only together with --prod
  -h, --help           this text

Prod always asks for the stage name to be typed unless --yes is given, and CloudFormation
changes that widen IAM permissions or security groups are asked about once more."
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

tag=""
foundation_only=0
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --image-tag) (($# >= 2)) || usage_error "--image-tag needs a value"; tag="$2"; shift 2 ;;
    --foundation-only) foundation_only=1; shift ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
tag="${tag:-$(current_commit)}"
check_config_for_deploy
region="$(region)"

if [ "$foundation_only" -eq 1 ]; then
  targets=("$STAGE/Foundation")
else
  targets=("$STAGE/*")
  for image in coordinator ingest; do
    "$AWS" ecr describe-images --region "$region" --repository-name "streamr-$STAGE/$image" \
      --image-ids "imageTag=$tag" >/dev/null 2>&1 ||
      die "image streamr-$STAGE/$image:$tag is not in ECR; push it with scripts/deploy-images.sh --stage $STAGE (a first deploy starts with --foundation-only)"
  done
fi

context=(-c "stage=$STAGE" -c "image_tag=$tag")
cdk diff "${context[@]}" "${targets[@]}"
confirm "About to deploy ${targets[*]} with images :$tag to $STAGE ($region)." "$STAGE"

approval=never
if [ "$STAGE" = prod ] && [ "$YES" -ne 1 ]; then
  approval=broadening
fi
cdk deploy "${context[@]}" --require-approval "$approval" "${targets[@]}"

if [ "$foundation_only" -eq 0 ]; then
  url="$(stack_output application PublicUrl)"
  echo "$SCRIPT: $STAGE runs :$tag" >&2
  echo "  API:        $url" >&2
  echo "  OBS server: $(stack_output application RtmpUrl)" >&2
  echo "  smoke test: STREAMR_BASE_URL=$url .venv/bin/python -m pytest tests/test_production_smoke.py" >&2
else
  echo "$SCRIPT: $STAGE foundation deployed; next: scripts/deploy-images.sh --stage $STAGE" >&2
fi
