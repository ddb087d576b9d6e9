"""The single-file friend node built by scripts/build-node.sh: the file alone joins and relays."""

from __future__ import annotations

import signal
import stat
import subprocess
import tomllib
from pathlib import Path

import httpx
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


@pytest.fixture(scope="session")
def binary() -> Path:
    return node_binary()


def test_the_file_is_named_for_its_platform_and_tells_its_version(binary):
    assert binary.parent == ROOT / "dist"
    assert binary.name.startswith("streamr-node-linux-")
    version = tomllib.loads((ROOT / "node-client/pyproject.toml").read_text())["project"]["version"]
    shown = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert (shown.returncode, shown.stdout) == (0, f"streamr-node {version}\n")


def test_a_second_build_keeps_the_file():
    again = subprocess.run(
        [str(ROOT / "scripts/build-node.sh")], capture_output=True, text=True, timeout=1200
    )
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr
    assert again.stdout.strip() == str(node_binary())


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["jion"], 2, "invalid choice: 'jion'"),
        (["join", "http://127.0.0.1:9"], 2, "--invite"),
        (["run"], 1, "has not joined a stream yet"),
    ],
)
def test_mistakes_are_one_readable_line(binary, tmp_path, args, status, says):
    env = clean_env(tmp_path / "home", STREAMR_NODE_DATA_DIR=str(tmp_path / "node"))
    result = subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert result.returncode == status
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr


def test_the_file_joins_and_relays(binary, start_coordinator, tmp_path):
    coordinator, _ = start_coordinator(allow_private_node_urls="true")
    code = create_invite(coordinator)
    port = free_port()
    data_dir = tmp_path / "node"
    env = clean_env(
        tmp_path / "home", STREAMR_NODE_DATA_DIR=str(data_dir), STREAMR_NODE_PASSWORD=PASSWORD
    )

    join = [str(binary), "join", coordinator, "--invite", code, "--email", "friend@example.com"]
    joined = subprocess.run(
        [*join, "--create-account", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert joined.returncode == 0, joined.stderr
    config_file = data_dir / "config.toml"
    settings = tomllib.loads(config_file.read_text())
    node_id, token = settings["node_id"], settings["node_token"]
    assert f"as node {node_id}" in joined.stdout
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    log_path = tmp_path / "node.log"
    with log_path.open("w") as log:
        node = subprocess.Popen([str(binary), "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_for_health(port, node)
        assert health["node_id"] == node_id
        assert health["stream"] == "friends-live"
        seen = wait_until_online(coordinator, node_id, token)
        assert seen["online"], seen
        assert seen["public_url"].rstrip("/") == f"http://127.0.0.1:{port}"
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            status = node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    log = log_path.read_text()
    assert status == 0, log
    assert "node stopped" in log

    # A clean stop leaves routing at once, but the node stays registered: the next `run` needs
    # no new invite.
    after = httpx.get(
        f"{coordinator}/api/v1/nodes/{node_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert after.status_code == 200, after.text
    assert after.json()["online"] is False
    for secret in (PASSWORD, token):
        assert secret not in joined.stdout + joined.stderr + log
