#!/usr/bin/env bash
usage="Usage: scripts/operational-monitor-account.sh --stage beta|gamma|prod [--prod]

Create the admin account the metrics collector logs in as (its email and generated password
are in the stage's MonitorAccount secret), so the dashboard shows the friends' share of the
bytes. Runs once per stage, as a one-off ECS task; the password never leaves AWS.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  -h, --help        this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"
((${#ARGS[@]} == 0)) || usage_error "unknown option '${ARGS[0]}'"

overrides="$(ops_overrides_file --monitor-account)"
trap 'rm -rf "$(dirname "$overrides")"' EXIT
run_ops_task "$overrides" || die "the monitor account was not created (it may exist already)"
echo "$SCRIPT: the monitor account exists; the collector logs in within a minute" >&2
