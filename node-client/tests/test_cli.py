"""streamr-node's command line: every mistake is one readable line and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from streamr_node.config import NodeConfig, save


def run(args, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    environ |= {"STREAMR_NODE_DATA_DIR": str(tmp_path / "node"), **env}
    return subprocess.run(
        [sys.executable, "-m", "streamr_node", *args],
        env=environ,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "status", "says"),
    [
        (["run"], {}, 1, "has not joined a stream yet"),
        (["status"], {}, 1, "streamr-node join"),
        (["join", "http://127.0.0.1:1", "--invite", "abcdefgh"], {}, 1, "--email"),
        (
            ["join", "http://127.0.0.1:1", "--invite", "abcdefgh", "--email", "f@example.com"],
            {},
            1,
            "STREAMR_NODE_PASSWORD",
        ),
        (
            ["join", "http://127.0.0.1:{port}", "--invite", "abcdefgh", "--email", "f@e.com"],
            {"STREAMR_NODE_PASSWORD": "x"},
            1,
            "cannot reach the coordinator",
        ),
        (["run", "--port", "70000"], {}, 1, "setting 'port' is invalid"),
        (["run"], {"STREAMR_NODE_EGRESS_CAP_MBPS": "lots"}, 1, "egress_cap_mbps"),
        (["fly"], {}, 2, "invalid choice"),
    ],
)
def test_mistakes_are_one_line(tmp_path, args, env, status, says):
    args = [a.replace("{port}", str(closed_port())) for a in args]
    result = run(args, tmp_path, **env)
    assert result.returncode == status, result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_join_refuses_to_replace_an_earlier_join_without_force(tmp_path):
    save(
        NodeConfig(
            data_dir=tmp_path / "node",
            coordinator_url="http://127.0.0.1:1",
            node_id="n1",
            node_token="snt_secret_value",
            stream="s",
        )
    )
    result = run(["join", "http://127.0.0.1:1", "--invite", "abcdefgh"], tmp_path)
    assert result.returncode == 1
    assert "already joined stream 's'" in result.stderr and "--force" in result.stderr
    assert "snt_secret_value" not in result.stderr


def test_status_of_a_stopped_node_says_how_to_start_it(tmp_path):
    save(
        NodeConfig(
            data_dir=tmp_path / "node",
            coordinator_url=f"http://127.0.0.1:{closed_port()}",
            node_id="n1",
            node_token="snt_secret_value",
            stream="s",
            port=closed_port(),
        )
    )
    result = run(["status"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "running:      no" in result.stdout and "streamr-node run" in result.stdout
    assert "coordinator:  not reachable" in result.stdout
    assert "snt_secret_value" not in result.stdout + result.stderr
