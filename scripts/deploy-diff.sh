#!/usr/bin/env bash
usage="Usage: scripts/deploy-diff.sh --stage beta|gamma|prod [--prod] [--image-tag TAG]

Show what deploying would change in a stage: CloudFormation differences per stack, with
security-group and IAM changes called out. Reads the deployed stacks, so AWS credentials for
the stage's account are needed; changes nothing.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  --image-tag TAG   the images to compare with (default: the checked-out commit)
  -h, --help        this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

tag=""
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --image-tag) (($# >= 2)) || usage_error "--image-tag needs a value"; tag="$2"; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
tag="${tag:-$(current_commit)}"

cdk diff -c "stage=$STAGE" -c "image_tag=$tag" "$STAGE/*"
