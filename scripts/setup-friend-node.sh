#!/usr/bin/env bash
# Install the StreamrP2P friend node for this user and join a stream, in one command (Linux and
# macOS; Windows: setup-friend-node.ps1). Nothing outside the user's home is touched:
#   ~/.local/bin/streamr-node            the command (a single-file binary, or a link into a venv)
#   ~/.local/share/streamr-node/venv     the venv, when installing from a source checkout
#   ~/.config/streamr-node/config.toml   the node's settings and token, written by `join`
# Safe to run again: it reinstalls (an upgrade), keeps an earlier join unless told --force, and
# rewrites the service. The password never passes through this script: the node reads
# STREAMR_NODE_PASSWORD, or asks for it in the terminal.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: setup-friend-node.sh --coordinator URL --invite CODE [options]

Install the StreamrP2P friend node for this user and join a stream with an invite.

  --coordinator URL      the coordinator's address, from the streamer
  --invite CODE          the invite code, from the streamer (or STREAMR_NODE_INVITE)
  --email E              your account's email (asked for when missing)
  --create-account       create the account if it does not exist yet
  --name N               a label for this node that the streamer sees
  --port N               the TCP port viewers connect to (default 8090)
  --host ADDR            the address to listen on (default 0.0.0.0: every interface)
  --public-url U         where viewers reach this node, e.g. http://203.0.113.5:8090
  --egress-cap-mbps M    the most upload (Mbit/s) the node may use
  --from PATH            what to install: a streamr-node binary (from scripts/build-node.sh or
                         your streamer), or a StreamrP2P source checkout (installed into a venv;
                         needs Python 3.11+). Default: the checkout this script is in.
  --python PY            the Python for a source install (default: python3)
  --upnp                 ask the router to forward the port (UPnP) when the node runs
  --service              run the node now and at login as a systemd user service
  --force                join again with this invite, replacing an earlier join
  -h, --help             this help

The password comes from STREAMR_NODE_PASSWORD, or the node asks for it. Re-running is safe.
Settings live in ${STREAMR_NODE_DATA_DIR:-~/.config/streamr-node}. Guide: docs/friend.md.
EOF
}

die() {
  echo "setup-friend-node: $*" >&2
  exit 1
}
say() { echo "setup-friend-node: $*"; }

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
coordinator="" invite="${STREAMR_NODE_INVITE:-}" email="" from="" python="python3"
create_account=0 upnp=0 service=0 force=0
serving=() # flags that join saves into the settings file
need() { (($# >= 2)) || die "$1 needs a value (see 'setup-friend-node.sh --help')"; }
while (($#)); do
  case "$1" in
    --coordinator) need "$@"; coordinator="$2"; shift 2 ;;
    --invite) need "$@"; invite="$2"; shift 2 ;;
    --email) need "$@"; email="$2"; shift 2 ;;
    --create-account) create_account=1; shift ;;
    --name | --port | --host | --public-url | --egress-cap-mbps)
      need "$@"; serving+=("$1" "$2"); shift 2 ;;
    --from) need "$@"; from="$2"; shift 2 ;;
    --python) need "$@"; python="$2"; shift 2 ;;
    --upnp) upnp=1; shift ;;
    --service) service=1; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see 'setup-friend-node.sh --help')" ;;
  esac
done

[ -n "${HOME:-}" ] || die "HOME is not set; run this as the user who will run the node"
bin_dir="${XDG_BIN_HOME:-$HOME/.local/bin}"
share="${XDG_DATA_HOME:-$HOME/.local/share}/streamr-node"
data_dir="${STREAMR_NODE_DATA_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/streamr-node}"
config="$data_dir/config.toml"
command_path="$bin_dir/streamr-node"

# The settings file names the node and its stream; only those two (no secret) are read here.
setting() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$config" 2>/dev/null | head -n 1; }
joined_node="" joined_stream=""
if [ -f "$config" ] && grep -q '^node_token = ' "$config"; then
  joined_node="$(setting node_id)"
  joined_stream="$(setting stream)"
fi
join=1
if [ -n "$joined_node" ] && ((!force)); then
  join=0
elif [ -z "$coordinator" ] || [ -z "$invite" ]; then
  die "give the coordinator's address and your invite: --coordinator URL --invite CODE"
fi

# Decided before anything is installed, so that a refusal leaves nothing half done.
if ((service)); then
  if ! { command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; }
  then
    die "--service needs systemd's user manager (systemctl --user), which is not available" \
      "here; leave out --service and start the node with: streamr-node run"
  fi
fi

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=macos ;;
  *) die "this script is for Linux and macOS; on Windows use setup-friend-node.ps1" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
if [ -z "$from" ]; then
  if [ -f "$script_dir/../node-client/pyproject.toml" ]; then
    from="$script_dir/.."
  elif [ -f "$script_dir/streamr-node-$os-$arch" ]; then
    from="$script_dir/streamr-node-$os-$arch"
  else
    die "give --from: a streamr-node binary for $os-$arch, or a StreamrP2P source checkout"
  fi
fi
[ -e "$from" ] || die "--from $from: no such file or folder"

mkdir -p "$bin_dir" "$share"
if [ -f "$from" ]; then
  # A single-file binary (a download has no execute bit yet): it must run here to be installed.
  install -m 0755 "$from" "$bin_dir/.streamr-node.new"
  version="$("$bin_dir/.streamr-node.new" --version 2>&1)" || {
    rm -f "$bin_dir/.streamr-node.new"
    die "$from does not run on this machine (${version:-no output}); is it for $os-$arch?"
  }
  mv -f "$bin_dir/.streamr-node.new" "$command_path" # atomic, even while the old one runs
  rm -rf "$share/venv"
  say "installed $version (single file) as $command_path"
elif [ -f "$from/node-client/pyproject.toml" ] && [ -f "$from/protocol/pyproject.toml" ]; then
  src="$(cd "$from" && pwd)"
  if ! { command -v "$python" >/dev/null &&
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; }; then
    die "a source install needs Python 3.11 or newer ('$python' is missing or older); install" \
      "it (Debian/Ubuntu: sudo apt install python3 python3-venv) or use a single-file binary"
  fi
  venv="$share/venv"
  if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv" >"$share/venv.log" 2>&1 ||
      die "could not create a venv with $python (Debian/Ubuntu: sudo apt install python3-venv);" \
        "details in $share/venv.log"
  fi
  # pip builds a project in place, leaving build/ folders behind: it gets copies.
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  for part in protocol node-client; do
    mkdir -p "$stage/$part"
    cp "$src/$part/pyproject.toml" "$stage/$part/"
  done
  cp -R "$src/protocol/streamr_protocol" "$stage/protocol/"
  cp -R "$src/node-client/streamr_node" "$stage/node-client/"
  extra=""
  ((upnp)) && extra="[upnp]"
  say "installing the node from $src into $venv (dependencies from PyPI)"
  # Both parts in one command: the node's streamr-protocol must be this one, never PyPI's.
  "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade \
    "$stage/protocol" "$stage/node-client$extra" >"$share/pip.log" 2>&1 || {
    tail -n 20 "$share/pip.log" >&2
    die "pip install failed; the whole log is in $share/pip.log"
  }
  ln -sfn "$venv/bin/streamr-node" "$command_path"
  say "installed $("$command_path" --version) as $command_path"
else
  die "--from $from is neither a streamr-node binary nor a StreamrP2P checkout" \
    "(a folder with node-client/ and protocol/)"
fi

if ((join)); then
  # ${a[@]+...}: macOS's bash 3.2 calls an empty array unbound under set -u.
  args=(join "$coordinator" --invite "$invite" ${serving[@]+"${serving[@]}"})
  [ -z "$email" ] || args+=(--email "$email")
  ((!create_account)) || args+=(--create-account)
  ((!force)) || args+=(--force)
  STREAMR_NODE_DATA_DIR="$data_dir" "$command_path" "${args[@]}" || exit $?
else
  say "already joined stream '$joined_stream' as node $joined_node; kept as it is" \
    "(join with a new invite: --force)"
  ((${#serving[@]} == 0)) || say "note: ${serving[*]}: such settings are saved when joining," \
    "so they were not applied now (edit $config, or add --force to join again)"
fi

port="$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$config" 2>/dev/null | head -n 1)"
port="${port:-8090}"
run_args=(run)
((!upnp)) || run_args+=(--upnp)

if ((service)); then
  unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  mkdir -p "$unit_dir"
  cat >"$unit_dir/streamr-node.service" <<EOF
# Written by setup-friend-node.sh; running it again rewrites this file.
[Unit]
Description=StreamrP2P friend node (relays a live stream to viewers)

[Service]
Environment="STREAMR_NODE_DATA_DIR=$data_dir"
ExecStart="$command_path" ${run_args[*]}
Restart=on-failure
RestartSec=30
# SIGTERM lets the node finish responses in flight and send its last usage report.
TimeoutStopSec=30

[Install]
WantedBy=default.target
EOF
  systemctl --user daemon-reload
  systemctl --user enable --quiet streamr-node.service
  systemctl --user restart streamr-node.service
  say "the node runs now as the systemd user service streamr-node, and again at each login"
fi

cat <<EOF

Done. What next:
EOF
if ((service)); then
  cat <<EOF
  see it:            systemctl --user status streamr-node; journalctl --user -u streamr-node -f
  keep it running while you are logged out:  loginctl enable-linger $(id -un)
EOF
else
  echo "  start relaying:    streamr-node ${run_args[*]}     (Ctrl-C stops it cleanly)"
fi
cat <<EOF
  check on it:       streamr-node status
  viewers connect to TCP port $port on this machine: forward that port on your router to this
                     machine and allow it in the firewall (or try --upnp); 'streamr-node status'
                     says whether the coordinator could reach it
  stop for good:     streamr-node leave
  settings:          $config
EOF
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "  note: $bin_dir is not on your PATH; add it, or type $command_path" ;;
esac
if [ "$data_dir" != "${XDG_CONFIG_HOME:-$HOME/.config}/streamr-node" ]; then
  echo "  note: keep STREAMR_NODE_DATA_DIR=$data_dir set when you run streamr-node"
fi
