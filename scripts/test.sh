#!/usr/bin/env bash
# Run every check the project has: lint, format, then the whole test suite (SQLite, PostgreSQL
# and Redis servers are started by the tests themselves, on loopback). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
