"""The `streamr` command line, run as a real process: useful output, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamr_coordinator.cli import build_parser

STREAMR = str(Path(sys.executable).parent / "streamr")
PASSWORD = "a long enough password"


def run(
    args: list[str], data_dir: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    environment.update({"STREAMR_DATA_DIR": str(data_dir), **env})
    return subprocess.run(
        [STREAMR, *args], input=stdin, capture_output=True, text=True, env=environment, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streamr")
    assert needle in lines[0]


def test_operator_flow(tmp_path):
    created = run(
        ["admin", "create", "--email", "op@example.com", "--password-stdin"],
        tmp_path,
        PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "admin op@example.com created" in created.stdout

    stream = run(["stream", "create", "ops-demo", "--owner", "op@example.com", "--test"], tmp_path)
    assert stream.returncode == 0, stream.stderr
    assert "rtmp://127.0.0.1:1935/live" in stream.stdout
    key = next(line.split()[-1] for line in stream.stdout.splitlines() if "stream key" in line)
    assert key.startswith("sk_")

    rotated = run(["stream", "rotate-key", "ops-demo"], tmp_path)
    assert rotated.returncode == 0
    assert key not in rotated.stdout and "sk_" in rotated.stdout

    invite = run(
        ["invite", "create", "ops-demo", "--max-uses", "5", "--expires-in", "12h"], tmp_path
    )
    assert invite.returncode == 0, invite.stderr
    assert "for 5 node(s)" in invite.stdout and "streamr-node join" in invite.stdout

    listing = run(["stream", "list"], tmp_path)
    assert "ops-demo" in listing.stdout and "READY" in listing.stdout and "(test)" in listing.stdout

    current = run(["db", "current"], tmp_path)
    assert "(head)" in current.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bogus"], "invalid choice"),
        (
            ["stream", "create", "Bad_Name", "--owner", "x@example.com"],
            "stream name 'Bad_Name' is invalid",
        ),
        (
            ["stream", "create", "fine-name", "--owner", "nobody@example.com"],
            "no account has email",
        ),
        (["stream", "rotate-key", "missing"], "No stream is named 'missing'"),
        (["invite", "create", "missing", "--expires-in", "5y"], "not a duration"),
        (["invite", "create", "missing", "--max-uses", "0"], "max_uses"),
        (["admin", "create", "--email", "not-an-email", "--password-stdin"], "not a valid email"),
        (["db", "downgrade"], "the following arguments are required"),
    ],
)
def test_errors_are_one_readable_line(tmp_path, args, needle):
    one_line_error(run(args, tmp_path, PASSWORD + "\n"), needle)


def test_short_admin_password_is_refused(tmp_path):
    one_line_error(
        run(
            ["admin", "create", "--email", "a@example.com", "--password-stdin"], tmp_path, "short\n"
        ),
        "10 to 256 characters",
    )


def test_unreachable_database_is_one_line(tmp_path):
    result = run(["db", "upgrade"], tmp_path, STREAMR_DATABASE_URL="postgresql://u@127.0.0.1:1/x")
    one_line_error(result, "cannot reach the database")


def test_invalid_setting_is_one_line(tmp_path):
    one_line_error(run(["stream", "list"], tmp_path, STREAMR_PORT="eighty"), "STREAMR_PORT")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["coordinator"],
        ["demo"],
        ["db"],
        ["db", "upgrade"],
        ["admin", "create"],
        ["stream"],
        ["stream", "create"],
        ["stream", "list"],
        ["stream", "rotate-key"],
        ["invite", "create"],
        ["keys", "rotate-jwt"],
    ],
)
def test_help_everywhere(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: streamr")
