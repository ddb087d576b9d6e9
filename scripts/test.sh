#!/usr/bin/env bash
# Run every check the project has: lint, format, then the whole test suite (SQLite, PostgreSQL
# and Redis servers are started by the tests themselves, on loopback). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Test modules run in parallel processes (one module stays in one process, so its shared
# servers start once). Most of the end-to-end time is waiting on live video in real time,
# which is why 3 processes pay off even on 2 cores. STREAMR_TEST_WORKERS=0 runs them in one.
exec .venv/bin/pytest -n "${STREAMR_TEST_WORKERS:-3}" --dist loadfile "$@"
