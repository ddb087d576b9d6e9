#!/usr/bin/env bash
usage="Usage: scripts/deploy-synth.sh --stage beta|gamma|prod [--prod] [--image-tag TAG]

Synthesize one stage's CloudFormation templates (foundation, application, monitoring) into
infrastructure/cdk.out/, offline: no AWS credentials are needed. The stage's configuration
(infrastructure/config/stages.toml) is validated on the way.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  --image-tag TAG   the images the services run (default: the checked-out commit)
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

cdk synth --quiet -c "stage=$STAGE" -c "image_tag=$tag"
echo "$SCRIPT: $STAGE synthesized with images :$tag into infrastructure/cdk.out/assembly-$STAGE/" >&2
