"""scripts/setup-friend-node.sh installs the node for one user and joins, in a throwaway HOME."""

from __future__ import annotations

import signal
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.friend_install import (
    PASSWORD,
    ROOT,
    clean_env,
    create_invite,
    node_binary,
    wait_for_health,
    wait_until_online,
)
from tests.servers import free_port

SETUP = str(ROOT / "scripts/setup-friend-node.sh")


def setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SETUP, *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def fake_systemctl(folder: Path, *, user_manager: bool) -> Path:
    """A ``systemctl`` that records its arguments (and may say there is no user manager)."""
    folder.mkdir()
    calls = folder / "calls"
    script = folder / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        + ("" if user_manager else 'test "$2" = show-environment && exit 1\n')
    )
    script.chmod(0o755)
    return calls


def test_install_from_the_source_tree_then_run_again(start_coordinator, tmp_path):
    coordinator, _ = start_coordinator(allow_private_node_urls="true")
    code = create_invite(coordinator)
    home, port = tmp_path / "home", free_port()
    env = clean_env(home, STREAMR_NODE_PASSWORD=PASSWORD)
    left_over = [ROOT / part / "build" for part in ("node-client", "protocol")]
    before = [path.exists() for path in left_over]

    first = setup(
        env,
        *("--coordinator", coordinator, "--invite", code, "--email", "friend@example.com"),
        *("--create-account", "--port", str(port), "--host", "127.0.0.1", "--from", str(ROOT)),
    )
    assert first.returncode == 0, first.stdout + first.stderr
    command = home / ".local/bin/streamr-node"
    venv = home / ".local/share/streamr-node/venv"
    assert command.resolve() == (venv / "bin/streamr-node").resolve()
    config_file = home / ".config/streamr-node/config.toml"
    settings = tomllib.loads(config_file.read_text())
    assert settings["stream"] == "friends-live"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert "streamr-node run" in first.stdout
    assert f"TCP port {port}" in first.stdout
    # The node is a copy, not a link into the checkout, and the checkout is left clean.
    assert [path.exists() for path in left_over] == before
    assert "site-packages" in subprocess.check_output(
        [str(venv / "bin/python"), "-c", "import streamr_node; print(streamr_node.__file__)"],
        text=True,
    )

    again = setup(env, "--from", str(ROOT))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already joined stream 'friends-live' as node {settings['node_id']}" in again.stdout
    assert tomllib.loads(config_file.read_text()) == settings

    log_path = tmp_path / "node.log"
    with log_path.open("w") as log:
        node = subprocess.Popen([str(command), "run"], env=env, stdout=log, stderr=log)
    try:
        assert wait_for_health(port, node)["node_id"] == settings["node_id"]
        assert wait_until_online(coordinator, settings["node_id"], settings["node_token"])["online"]
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            status = node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    assert status == 0, log_path.read_text()
    shown = first.stdout + first.stderr + again.stdout + again.stderr + log_path.read_text()
    assert PASSWORD not in shown
    assert settings["node_token"] not in shown


def test_install_the_single_file_as_a_service(start_coordinator, tmp_path):
    binary = node_binary()
    coordinator, _ = start_coordinator(allow_private_node_urls="true")
    code = create_invite(coordinator)
    home, port = tmp_path / "home", free_port()
    calls = fake_systemctl(tmp_path / "stub", user_manager=True)
    env = clean_env(home, STREAMR_NODE_PASSWORD=PASSWORD)
    env["PATH"] = f"{tmp_path / 'stub'}:{env['PATH']}"

    done = setup(
        env,
        *("--coordinator", coordinator, "--invite", code, "--email", "friend@example.com"),
        *("--create-account", "--port", str(port), "--from", str(binary), "--service"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    command = home / ".local/bin/streamr-node"
    assert not command.is_symlink()
    assert command.read_bytes() == binary.read_bytes()
    assert command.stat().st_mode & stat.S_IXUSR
    unit = (home / ".config/systemd/user/streamr-node.service").read_text()
    assert f'ExecStart="{command}" run\n' in unit
    assert f'Environment="STREAMR_NODE_DATA_DIR={home}/.config/streamr-node"' in unit
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable --quiet streamr-node.service",
        "--user restart streamr-node.service",
    ]
    assert "systemctl --user status streamr-node" in done.stdout
    assert tomllib.loads((home / ".config/streamr-node/config.toml").read_text())["port"] == port


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give the coordinator's address and your invite"),
        (
            ["--coordinator", "http://127.0.0.1:9", "--invite", "x", "--from", "/nonexistent"],
            "no such file or folder",
        ),
        (["--coordinator", "http://127.0.0.1:9", "--invite", "x", "--service"], "systemd"),
        (["--portt", "1"], "unknown argument '--portt'"),
        (["--coordinator"], "--coordinator needs a value"),
    ],
)
def test_mistakes_stop_before_installing_anything(tmp_path, args, says):
    fake_systemctl(tmp_path / "stub", user_manager=False)
    env = clean_env(tmp_path / "home")
    env["PATH"] = f"{tmp_path / 'stub'}:{env['PATH']}"
    result = setup(env, *args)
    assert result.returncode != 0
    assert result.stderr.startswith("setup-friend-node: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr
    assert not (tmp_path / "home/.local").exists()
