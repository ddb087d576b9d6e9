#!/usr/bin/env bash
# Build the friend node (node-client/ + protocol/) as one executable file with PyInstaller:
# dist/streamr-node-<os>-<arch>. It carries its own Python interpreter and every dependency
# (pydantic-core and cryptography are compiled extensions, which a zipapp cannot import from
# inside its zip), so a friend needs no Python. Why PyInstaller: docs/friend.md.
#
# Builds in its own venv (build/node-venv) so the project's .venv stays as it is. Idempotent: a
# build whose inputs (sources, dependency lists, this script, the interpreter) did not change
# is kept as it is. Progress goes to stderr; the last line on stdout is the file's path.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/build-node.sh [--python PY] [--out DIR] [--force]

Build the friend node as one executable file: DIR/streamr-node-<os>-<arch> (DIR: dist/).

  --python PY  the Python (3.11+) to build with and to bundle (default: python3); on Linux it
               must be built with --enable-shared, as Debian's python3 is
  --out DIR    where the file goes (default: dist/ in the repository)
  --force      rebuild even when nothing changed
  -h, --help   this help

A binary runs on the operating system and CPU it was built on (no cross-compiling), and on
Linux only with a glibc at least as new as the build machine's: build on the oldest system
you want to support. Details: docs/friend.md.
EOF
}

die() {
  echo "build-node: $*" >&2
  exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
out="$root/dist"
force=0
need() { (($# >= 2)) || die "$1 needs a value (see 'scripts/build-node.sh --help')"; }
while (($#)); do
  case "$1" in
    --python) need "$@"; python="$2"; shift 2 ;;
    --out) need "$@"; out="$2"; shift 2 ;;
    --force) force=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see 'scripts/build-node.sh --help')" ;;
  esac
done
mkdir -p "$out" "$root/build"
out="$(cd "$out" && pwd)"
# One build at a time per checkout: a second build started meanwhile (another terminal, tests
# run in parallel) waits for the first, then finds its result up to date.
exec 9>"$root/build/.build-node.lock"
flock 9
# Build products ignore themselves, so that they never show up as changes to commit.
[ -e "$root/build/.gitignore" ] || echo '*' >"$root/build/.gitignore"
[ "$out" != "$root/dist" ] || [ -e "$out/.gitignore" ] || echo '*' >"$out/.gitignore"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=macos ;;
  MINGW* | MSYS* | CYGWIN*) os=windows ;;
  *) die "unsupported operating system $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64 | AMD64) arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
name="streamr-node-$os-$arch"
binary="$out/$name"
[ "$os" = windows ] && binary="$binary.exe"

command -v "$python" >/dev/null || die "no '$python' found; install Python 3.11+ or give --python"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))"
if [ "$os" = linux ]; then
  "$python" -c 'import sys, sysconfig; sys.exit(not sysconfig.get_config_var("Py_ENABLE_SHARED"))' ||
    die "$python has no shared libpython, which PyInstaller bundles; use Debian's /usr/bin/python3" \
      "or a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
  # PyInstaller reads shared libraries' dependencies with objdump and strips them with strip.
  if ! command -v objdump >/dev/null || ! command -v strip >/dev/null; then
    command -v apt-get >/dev/null || die "PyInstaller needs objdump and strip: install binutils"
    echo "build-node: installing the Debian package binutils (objdump, strip)" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends binutils >/dev/null
  fi
fi
interpreter="$("$python" -c 'import sys; print(sys.executable, sys.version)')"

pyinstaller_req='pyinstaller>=6.10,<7'
sources=(protocol/pyproject.toml node-client/pyproject.toml)
while IFS= read -r file; do sources+=("$file"); done < <(
  cd "$root" && find protocol/streamr_protocol node-client/streamr_node -type f \
    \( -name '*.py' -o -name 'py.typed' \) -not -path '*/__pycache__/*' | LC_ALL=C sort
)
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
hash_of() { sha256 | cut -d' ' -f1; }
deps_want="$({
  echo "$interpreter $pyinstaller_req"
  cat "$root/protocol/pyproject.toml" "$root/node-client/pyproject.toml"
} | hash_of)"
build_want="$({
  echo "$interpreter $pyinstaller_req $name"
  cat "${BASH_SOURCE[0]}"
  (cd "$root" && sha256 "${sources[@]}")
} | hash_of)"

build="$root/build"
venv="$build/node-venv"
stamp="$build/$name.stamp"
report() {
  local size
  size="$(du -k "$binary" | cut -f1)"
  echo "build-node: $1: $binary ($((size / 1024)) MiB)" >&2
  echo "$binary"
}
if ((!force)) && [ -x "$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$build_want" ]; then
  report "up to date"
  exit 0
fi

# pip builds a project in place (leaving build/ folders beside its sources), so it builds copies.
staging="$build/node-src"
rm -rf "$staging"
for part in protocol node-client; do
  mkdir -p "$staging/$part"
  cp "$root/$part/pyproject.toml" "$staging/$part/"
done
cp -R "$root/protocol/streamr_protocol" "$staging/protocol/"
cp -R "$root/node-client/streamr_node" "$staging/node-client/"
find "$staging" -name __pycache__ -prune -exec rm -rf {} +
# The entry script sits outside the package: PyInstaller searches the script's folder first, and
# the package's own modules (http.py, config.py, ...) must not pass for top-level ones.
mkdir -p "$staging/entry"
cp "$root/node-client/streamr_node/__main__.py" "$staging/entry/streamr-node.py"

venv_bin="$venv/bin"
[ "$os" = windows ] && venv_bin="$venv/Scripts"
deps_stamp="$venv/.streamr-deps"
if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_want" ]; then
  rm -rf "$venv"
  echo "build-node: creating $venv (PyInstaller and the node's dependencies from PyPI)" >&2
  "$python" -m venv "$venv"
  # The UPnP extra goes in: a friend with the binary cannot pip-install it later.
  pip_args=(install "$pyinstaller_req" "$staging/protocol" "$staging/node-client[upnp]")
else
  pip_args=(install --no-deps --force-reinstall "$staging/protocol" "$staging/node-client")
fi
log="$build/node-venv-pip.log"
if ! "$venv_bin/python" -m pip --disable-pip-version-check "${pip_args[@]}" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "pip install failed; the whole log is in $log"
fi
echo "$deps_want" >"$deps_stamp"

echo "build-node: building $name with PyInstaller" >&2
# Stripping symbols takes several MiB off the size on Linux; PyInstaller advises against it on
# Windows, and macOS builds (signed after the fact) are left as PyInstaller makes them.
strip=()
[ "$os" != linux ] || strip=(--strip)
rm -f "$binary" "$stamp"
log="$build/pyinstaller.log"
if ! "$venv_bin/pyinstaller" --onefile ${strip[@]+"${strip[@]}"} --noconfirm --log-level WARN \
  --name "$name" --distpath "$out" --workpath "$build/pyinstaller" --specpath "$build/pyinstaller" \
  --collect-submodules streamr_node --collect-submodules streamr_protocol \
  --collect-submodules async_upnp_client \
  --copy-metadata streamr-node --copy-metadata streamr-protocol \
  "$staging/entry/streamr-node.py" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "PyInstaller failed; the whole log is in $log"
fi
# A binary that cannot even start is not a build.
"$binary" --version >/dev/null || die "the built $binary does not start; see $log"
echo "$build_want" >"$stamp"
report "built"
