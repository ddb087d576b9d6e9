#!/usr/bin/env bash
# Start the StreamrP2P ingest in the foreground: nginx-rtmp (RTMP in, HLS origin out), the origin
# watcher and the reconciler, from ingest_config.yaml next to this script unless another file is
# given with --config. STREAMR_INGEST_* environment variables override the file. Ctrl-C (or
# SIGTERM) stops everything cleanly. Run from the repository root so that ./data is shared with
# the coordinator.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

ingest="$root/.venv/bin/streamr-ingest"
if [ ! -x "$ingest" ]; then
  echo "start-ingest: $ingest is missing; run scripts/bootstrap.sh first" >&2
  exit 1
fi
for arg in "$@"; do
  if [ "$arg" = "--config" ] || [[ "$arg" == --config=* ]]; then
    exec "$ingest" "$@"
  fi
done
exec "$ingest" --config "$here/ingest_config.yaml" "$@"
