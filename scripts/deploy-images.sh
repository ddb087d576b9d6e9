#!/usr/bin/env bash
usage="Usage: scripts/deploy-images.sh --stage beta|gamma|prod [--prod] [--tag TAG] [--allow-dirty]

Build the coordinator (also the worker's) and ingest images from this checkout and push them
to the stage's ECR repositories (created by the foundation stack), tagged with the commit.
Tags are immutable there: a tag always names the image that was built from that commit.
Needs Docker and AWS credentials.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  --tag TAG         tag to push (default: the checked-out commit, which deploy-stage.sh uses)
  --allow-dirty     build even with uncommitted changes (never for prod)
  -h, --help        this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

tag=""
dirty_ok=0
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --tag) (($# >= 2)) || usage_error "--tag needs a value"; tag="$2"; shift 2 ;;
    --allow-dirty) dirty_ok=1; shift ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
if [ -n "$(git -C "$ROOT" status --porcelain)" ]; then
  if [ "$dirty_ok" -ne 1 ] || [ "$STAGE" = prod ]; then
    die "the checkout has uncommitted changes; an image tagged with the commit would not be that commit (commit first, or --allow-dirty outside prod)"
  fi
fi
tag="${tag:-$(current_commit)}"
commit="$(git -C "$ROOT" rev-parse HEAD)"
region="$(region)"

registry=""
for image in coordinator ingest; do
  output="$(tr '[:lower:]' '[:upper:]' <<<"${image:0:1}")${image:1}RepositoryUri"
  repository="$(stack_output foundation "$output")"
  registry="${repository%%/*}"
  dockerfile="$image/Dockerfile"
  [ "$image" = ingest ] && dockerfile=ingest-server/Dockerfile
  echo "$SCRIPT: building $image from $dockerfile as $repository:$tag" >&2
  "$DOCKER" build --file "$ROOT/$dockerfile" --build-arg "GIT_COMMIT=$commit" \
    --tag "$repository:$tag" "$ROOT"
  if [ -z "${logged_in:-}" ]; then
    # The password goes through a pipe, never a command line.
    "$AWS" ecr get-login-password --region "$region" |
      "$DOCKER" login --username AWS --password-stdin "$registry"
    logged_in=1
  fi
  "$DOCKER" push "$repository:$tag"
done
echo "$SCRIPT: pushed :$tag to $registry; deploy it with scripts/deploy-stage.sh --stage $STAGE" >&2
