#!/usr/bin/env bash
# Publish a test card to the ingest exactly as OBS would: ffmpeg's moving test pattern with a
# 440 Hz tone, H.264 + AAC, a keyframe every 2 seconds, in real time.
#
#   scripts/test-stream.sh NAME [--seconds N] [--rtmp rtmp://host:1935/live] [--size 640x360]
#
# The stream key comes from STREAMR_STREAM_KEY, or is asked for (not echoed); it is handed to the
# CLI on stdin so it stays out of this script's command line. (ffmpeg itself can only take it in
# its RTMP URL, so `ps` shows it while ffmpeg runs.) `--key KEY` works too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
streamr="$root/.venv/bin/streamr"
if [ ! -x "$streamr" ]; then
  echo "test-stream: $streamr is missing; run scripts/bootstrap.sh first" >&2
  exit 1
fi
for arg in "$@"; do
  if [ "$arg" = "--key" ] || [[ "$arg" == --key=* ]] || [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
    exec "$streamr" stream push-test "$@"
  fi
done
key="${STREAMR_STREAM_KEY:-}"
if [ -z "$key" ]; then
  if [ ! -t 0 ]; then
    echo "test-stream: set STREAMR_STREAM_KEY (or pass --key KEY)" >&2
    exit 2
  fi
  read -rsp "Stream key: " key
  echo >&2
fi
exec "$streamr" stream push-test "$@" --key - <<<"$key"
