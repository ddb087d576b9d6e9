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


def test_status_shows_trust_and_puts_a_warning_first(capsys):
    from streamr_node.cli import _print_standing

    _print_standing(
        {"level": "vetting", "score": 0.95, "pay_bps": 5000, "message": "Your node is new."}
    )
    good = capsys.readouterr().out
    assert "trust:        95% (vetting, earns 50% of the rate)" in good
    assert "Your node is new." in good and "WARNING" not in good
    _print_standing(
        {
            "level": "warned",
            "score": 0.7,
            "pay_bps": 10000,
            "message": "Warning: check its connection.",
        }
    )
    warned = capsys.readouterr().out
    assert "  WARNING:      Warning: check its connection." in warned
    _print_standing(None)
    assert capsys.readouterr().out == ""


def test_status_shows_what_the_node_is_owed_and_a_spent_budget(capsys):
    from streamr_node.cli import _print_earnings

    earnings = {
        "node": {"balance_usd": "0.054180", "below_minimum": True},
        "economics": {"rate_usd_per_gb": "0.050000", "minimum_payout_usd": "1.000000"},
        "payouts": [
            {"status": "sent", "amount_usd": "1.020400"},
            {"status": "carried_over", "amount_usd": "0.000000"},
        ],
        "budget": {"state": "exhausted", "message": "The stream's budget is used up."},
    }
    _print_earnings(earnings)
    out = capsys.readouterr().out
    assert (
        "earnings:     $0.054180 owed, last payout $1.020400 "
        "(rate $0.050000/GB, payouts from $1.000000)"
    ) in out
    assert "carries over to the next period" in out
    assert "budget:       The stream's budget is used up." in out
    _print_earnings(earnings | {"budget": {"state": "ok", "message": "Funded."}, "payouts": []})
    out = capsys.readouterr().out
    assert "last payout" not in out and "budget:" not in out
    _print_earnings(None)
    assert "not available" in capsys.readouterr().out
