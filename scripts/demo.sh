#!/usr/bin/env bash
# Run the local demo network on the embedded defaults (SQLite under ./data, no Redis).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh
exec .venv/bin/streamr demo "$@"
