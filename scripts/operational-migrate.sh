#!/usr/bin/env bash
usage="Usage: scripts/operational-migrate.sh --stage beta|gamma|prod [--prod]
                                       [--current | --history | --upgrade [REV] | --downgrade REV]

Run database migrations (streamr db ...) in the cloud, as one ECS task of the stage's ops
task definition: the coordinator's image, in the private subnets, with the database's
credentials from Secrets Manager. Deploys already run 'streamr db upgrade' once each (see
deploy-stage.sh); this is for looking and for exceptions.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  --current         show the schema revision (the default)
  --history         list the migrations
  --upgrade [REV]   upgrade to REV (default: the newest)
  --downgrade REV   downgrade to REV; asks first (the newer code may need the newer schema)
  --yes             do not ask
  -h, --help        this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

command=(db current)
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --current) command=(db current); shift ;;
    --history) command=(db history); shift ;;
    --upgrade)
      command=(db upgrade)
      if (($# >= 2)) && [[ "$2" != --* ]]; then command+=("$2"); shift; fi
      shift
      ;;
    --downgrade)
      (($# >= 2)) || usage_error "--downgrade needs a revision"
      command=(db downgrade "$2")
      shift 2
      ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
if [ "${command[1]}" = downgrade ]; then
  confirm "About to downgrade the $STAGE database to ${command[2]}." "$STAGE"
fi
overrides="$(ops_overrides_file -- "${command[@]}")"
trap 'rm -rf "$(dirname "$overrides")"' EXIT
echo "$SCRIPT: streamr ${command[*]} on $STAGE" >&2
run_ops_task "$overrides" || die "streamr ${command[*]} failed on $STAGE"
