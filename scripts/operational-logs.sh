#!/usr/bin/env bash
usage="Usage: scripts/operational-logs.sh --stage beta|gamma|prod [--prod]
                                    --service coordinator|worker|ingest|migrate
                                    [--since 10m] [--follow] [--filter PATTERN]

Tail a service's logs from CloudWatch Logs (/streamr/<stage>/<service>): JSON, one event a
line, with request, stream and node ids, never a secret.

  --stage STAGE       beta, gamma or prod
  --prod              required with --stage prod
  --service NAME      coordinator, worker, ingest or migrate (migrations and one-off tasks)
  --since DURATION    how far back to start, e.g. 10m, 2h, 1d (default 10m)
  --follow            keep printing new events
  --filter PATTERN    CloudWatch filter pattern, e.g. '{ \$.level = \"ERROR\" }'
  -h, --help          this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

service=""
since=10m
extra=()
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --service) (($# >= 2)) || usage_error "--service needs a value"; service="$2"; shift 2 ;;
    --since) (($# >= 2)) || usage_error "--since needs a value"; since="$2"; shift 2 ;;
    --follow) extra+=(--follow); shift ;;
    --filter) (($# >= 2)) || usage_error "--filter needs a pattern"; extra+=(--filter-pattern "$2"); shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
case "$service" in
  coordinator | worker | ingest | migrate) ;;
  "") usage_error "--service is required: coordinator, worker, ingest or migrate" ;;
  *) usage_error "unknown service '$service': use coordinator, worker, ingest or migrate" ;;
esac

exec "$AWS" logs tail "/streamr/$STAGE/$service" --region "$(region)" --since "$since" \
  --format short "${extra[@]+"${extra[@]}"}"
