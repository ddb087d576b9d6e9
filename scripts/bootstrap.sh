#!/usr/bin/env bash
# The one install step behind both README commands. Idempotent and fast the second time:
#   - installs the Debian packages the project runs and tests with, when missing;
#   - creates .venv/ with every Python part installed editable, plus the test tools;
#   - leaves the command-line tools (`streamr`, and later `streamr-node`) in .venv/bin/
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Debian packages: PostgreSQL and Redis servers (the suite starts its own on loopback), nginx with
# the RTMP module and ffmpeg for the ingest (run as the project's own processes, never as the
# system's nginx service), Chromium for page tests, jq for the README walk-through, wrk for
# benchmarks. Node.js and npm are taken from Debian only when the machine has none (a newer Node
# is kept as it is).
debian_packages=(postgresql redis-server nginx libnginx-mod-rtmp ffmpeg chromium jq wrk curl)
command -v npm >/dev/null || debian_packages+=(nodejs npm)

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Browser code comes from npm (package-lock.json), never from a CDN.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.streamr-lock; then
  echo "bootstrap: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.streamr-lock
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv

# Reinstall only when a dependency list changed since the last successful install.
stamp=.venv/.bootstrap-stamp
want="$(cat protocol/pyproject.toml coordinator/pyproject.toml node-client/pyproject.toml \
  ingest-server/pyproject.toml requirements-test.txt infrastructure/requirements.txt \
  | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv/" >&2
  log=.venv/bootstrap-pip.log
  if ! .venv/bin/python -m pip install --disable-pip-version-check \
    -e protocol -e node-client -e ingest-server -e coordinator -r requirements-test.txt \
    -r infrastructure/requirements.txt \
    >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed; the whole log is in $log" >&2
    exit 1
  fi
  .venv/bin/python -c 'import streamr_coordinator, streamr_ingest, streamr_node, streamr_protocol'
  echo "$want" >"$stamp"
fi
