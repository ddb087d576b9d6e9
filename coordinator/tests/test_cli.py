"""The `streamr` command line, run as a real process: useful output, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from streamr_coordinator.cli import build_parser
from streamr_coordinator.database import create_engine, session_factory, utcnow
from streamr_coordinator.settings import Settings
from streamr_coordinator.streams.models import Stream
from streamr_coordinator.viewers.models import ViewerSession

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
        ["worker"],
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


def _seed_expired_viewer_session(data_dir: Path, stream: str) -> None:
    """A viewer session that expired two days ago: the worker's first cycle prunes it."""

    async def seed() -> None:
        engine = create_engine(Settings(data_dir=data_dir, database_url=None).sqlalchemy_url)
        try:
            async with session_factory(engine)() as session:
                stream_id = await session.scalar(select(Stream.id).where(Stream.name == stream))
                assert stream_id is not None
                expired = utcnow() - timedelta(days=2)
                session.add(ViewerSession(stream_id=stream_id, expires_at=expired))
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(seed())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_worker_runs_its_jobs_until_stopped(tmp_path, stop_signal):
    admin = run(
        ["admin", "create", "--email", "op@example.com", "--password-stdin"],
        tmp_path,
        PASSWORD + "\n",
    )
    assert admin.returncode == 0, admin.stderr
    created = run(["stream", "create", "worker-demo", "--owner", "op@example.com"], tmp_path)
    assert created.returncode == 0, created.stderr
    _seed_expired_viewer_session(tmp_path, "worker-demo")

    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    environment |= {
        "STREAMR_DATA_DIR": str(tmp_path),
        "STREAMR_RETENTION_INTERVAL_S": "0.2",
        "STREAMR_LOG_LEVEL": "DEBUG",
    }
    worker = subprocess.Popen(
        [STREAMR, "worker", "--jobs", "retention,stream_timers"],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: queue.Queue[dict] = queue.Queue()

    def read() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            if line.startswith("{") and line.rstrip().endswith("}"):
                with contextlib.suppress(ValueError):
                    events.put(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        cycles = []
        deadline = time.monotonic() + 30
        while len(cycles) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                event = events.get(timeout=0.5)
                if event.get("event") == "job run" and event.get("job") == "retention":
                    cycles.append(event)
        assert len(cycles) == 2, "the worker ran no retention runs"
        assert cycles[0]["outcome"] == "ok" and cycles[0]["duration_ms"] >= 0, cycles[0]
        assert cycles[0]["details"]["pruned_viewer_sessions"] == 1, cycles[0]
        assert cycles[1]["details"]["pruned_viewer_sessions"] == 0, "pruning is idempotent"
        worker.send_signal(stop_signal)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    reader.join(timeout=5)
    remaining = []
    while not events.empty():
        remaining.append(events.get().get("event"))
    assert "worker stopped" in remaining


def test_worker_once_runs_each_job_and_exits(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    environment["STREAMR_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [STREAMR, "worker", "--once", "--jobs", "stream_timers,retention"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["stream_timers: ok", "retention: ok"]
    unknown = subprocess.run(
        [STREAMR, "worker", "--jobs", "retention,nope"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("streamr: error: unknown job(s) nope; the jobs are:")
