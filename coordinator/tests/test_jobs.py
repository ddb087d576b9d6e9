"""The worker: leases (exclusive, fenced, taken over from a dead worker), recorded runs, the
schedule shared by several workers, clean stops, the jobs themselves and the operators' view."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from streamr_coordinator.context import AppContext
from streamr_coordinator.database import create_engine, session_factory, utcnow
from streamr_coordinator.jobs import leases
from streamr_coordinator.jobs.catalog import CATALOG
from streamr_coordinator.jobs.housekeeping import run_retention, run_stream_timers
from streamr_coordinator.jobs.leases import LeaseLost
from streamr_coordinator.jobs.models import JobLease, JobRun, NodeStats, UsageHourly
from streamr_coordinator.jobs.presence_reaper import run_presence_reaper
from streamr_coordinator.jobs.rollups import hour_of, run_rollups
from streamr_coordinator.jobs.runner import Job, Run, Worker, compact, one_line, select_jobs
from streamr_coordinator.jobs.stats_collector import run_stats_collector
from streamr_coordinator.main import create_app
from streamr_coordinator.migrations import runner as migrations
from streamr_coordinator.nodes.last_seen import LastSeenRecorder
from streamr_coordinator.nodes.models import Node as NodeRow
from streamr_coordinator.streams.models import Stream
from streamr_coordinator.usage.models import UsageReport
from streamr_coordinator.verification.models import ReceiptTally, ReconciliationSession
from streamr_coordinator.viewers.models import ViewerSession
from tests.servers import free_port

from .conftest import Api, assert_error, make_settings

# ---------------------------------------------------------------- a bare database per backend


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bare_db(request: pytest.FixtureRequest, tmp_path_factory: Any) -> tuple[Path, str | None]:
    """A migrated database without a coordinator: the workers here are the only ones."""
    data_dir = tmp_path_factory.mktemp("jobs")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    settings = make_settings(data_dir, url)
    migrations.upgrade(settings.sqlalchemy_url)
    return data_dir, url


def with_ctx(bare_db: tuple[Path, str | None], scenario: Callable[[AppContext], Awaitable[Any]]):
    data_dir, url = bare_db

    async def run() -> Any:
        ctx = AppContext.from_settings(make_settings(data_dir, url, worker_stop_grace_s=0))
        try:
            return await scenario(ctx)
        finally:
            await ctx.close()

    return asyncio.run(run())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def runs_of(ctx: AppContext, name: str) -> list[JobRun]:
    async with ctx.sessions() as session:
        return list(
            await session.scalars(select(JobRun).where(JobRun.job == name).order_by(JobRun.id))
        )


async def lease_of(ctx: AppContext, name: str) -> JobLease:
    async with ctx.sessions() as session:
        row = await session.get(JobLease, name)
        assert row is not None
        return row


# ---------------------------------------------------------------- leases


def test_lease_is_exclusive_fenced_and_released(bare_db):
    async def scenario(ctx: AppContext) -> None:
        name = unique("lease")
        await leases.ensure_row(ctx.sessions, name)
        await leases.ensure_row(ctx.sessions, name)  # a second first use inserts nothing
        now = utcnow()
        a = await leases.acquire(ctx.sessions, name, "a", 30, now)
        assert a is not None and a.fence == 1
        assert await leases.acquire(ctx.sessions, name, "b", 30, now) is None, "held by a"
        a = await leases.renew(ctx.sessions, a, 30, utcnow())
        await leases.release(ctx.sessions, a, utcnow())
        assert (await lease_of(ctx, name)).expires_at <= utcnow()

        b = await leases.acquire(ctx.sessions, name, "b", 30, utcnow())
        assert b is not None and b.fence == 2, "every acquisition moves the fence"
        with pytest.raises(LeaseLost):
            await leases.renew(ctx.sessions, a, 30, utcnow())
        await leases.release(ctx.sessions, a, utcnow())  # a stale release changes nothing
        row = await lease_of(ctx, name)
        assert (row.holder, row.fence) == ("b", 2) and row.expires_at > utcnow()
        async with ctx.sessions() as session:
            with pytest.raises(LeaseLost):
                await leases.check_fence(session, a)
            await leases.check_fence(session, b)

        # Not due: the latest run started after ``due_before``, whoever ran it.
        await leases.release(ctx.sessions, b, utcnow())
        early = b.acquired_at - timedelta(seconds=1)
        assert await leases.acquire(ctx.sessions, name, "c", 30, utcnow(), due_before=early) is None
        assert await leases.acquire(ctx.sessions, name, "c", 30, utcnow(), due_before=utcnow())

    with_ctx(bare_db, scenario)


def test_racing_acquisitions_have_one_winner(bare_db):
    async def scenario(ctx: AppContext) -> None:
        for _ in range(3):
            name = unique("race")
            await asyncio.gather(*(leases.ensure_row(ctx.sessions, name) for _ in range(5)))
            now = utcnow()
            won = await asyncio.gather(
                *(leases.acquire(ctx.sessions, name, f"w{i}", 30, now) for i in range(8))
            )
            winners = [lease for lease in won if lease is not None]
            assert len(winners) == 1 and winners[0].fence == 1
            assert (await lease_of(ctx, name)).holder == winners[0].holder

    with_ctx(bare_db, scenario)


# ---------------------------------------------------------------- runs


class Overlap:
    """Counts runs going on at once across workers; a job function that records it."""

    def __init__(self, enough: int = 0) -> None:
        self.active = 0
        self.most = 0
        self.fences: list[int] = []
        self.enough = enough
        self.reached = asyncio.Event()

    async def job(self, ctx: AppContext, run: Run) -> dict[str, object]:
        self.active += 1
        self.most = max(self.most, self.active)
        self.fences.append(run.fence)
        if len(self.fences) >= self.enough:
            self.reached.set()
        try:
            for _ in range(3):
                await asyncio.sleep(0.01)
                await run.renew()
        finally:
            self.active -= 1
        return {"fence": run.fence}


def test_two_workers_never_run_a_job_at_once(bare_db):
    async def scenario(ctx: AppContext) -> None:
        overlap = Overlap(enough=15)
        job = Job(unique("shared"), overlap.job, every=0.02, lease_s=5)
        first, second = Worker(ctx, [job]), Worker(ctx, [job])
        assert first.holder != second.holder
        for _ in range(5):  # both want it now: one runs, the other is told it is held
            results = await asyncio.gather(
                first.run_job(job, force=True), second.run_job(job, force=True)
            )
            assert any(r is not None and r.outcome == "ok" for r in results)

        loops = [asyncio.create_task(w.run_forever()) for w in (first, second)]
        await overlap.reached.wait()
        first.stop()
        second.stop()
        await asyncio.gather(*loops)

        assert overlap.most == 1, "two runs of one job overlapped"
        runs = await runs_of(ctx, job.name)
        assert [r.fence for r in runs] == sorted({r.fence for r in runs}), "fences only grow"
        assert {r.holder for r in runs} <= {first.holder, second.holder}
        for before, after in itertools.pairwise(runs):
            assert before.finished_at is not None and before.finished_at <= after.started_at
        for run in runs:  # a run going on when its worker stopped is abandoned, never lost
            assert (run.outcome, run.details) == ("ok", {"fence": run.fence}) or (
                run.outcome == "abandoned" and run.error == "the worker stopped mid-run"
            ), run

    with_ctx(bare_db, scenario)


def test_workers_share_the_schedule(bare_db):
    """A job that just ran is not run again by another worker before its interval."""

    async def scenario(ctx: AppContext) -> None:
        overlap = Overlap()
        job = Job(unique("hourly"), overlap.job, every=3600, lease_s=5)
        first, second = Worker(ctx, [job]), Worker(ctx, [job])
        assert (await first.run_job(job)) is not None
        assert await second.run_job(job) is None, "not due: the first worker ran it just now"
        assert await first.run_job(job) is None
        assert (await second.run_job(job, force=True)) is not None, "--once forces a run"

    with_ctx(bare_db, scenario)


def test_a_failing_job_never_stops_the_others(bare_db, caplog):
    async def scenario(ctx: AppContext) -> None:
        async def broken(ctx: AppContext, run: Run) -> dict[str, object]:
            raise RuntimeError(
                "cannot reach postgresql://worker:s3cret@db.internal/streamr\nsecond line"
            )

        fine_runs = asyncio.Semaphore(0)

        async def fine(ctx: AppContext, run: Run) -> dict[str, object]:
            fine_runs.release()
            return {"done": True, "when": utcnow()}

        bad, good = Job(unique("broken"), broken, every=0.01), Job(unique("fine"), fine, every=0.01)
        worker = Worker(ctx, [bad, good])
        results = await worker.run_once()
        assert results[bad.name].outcome == "error"
        error = results[bad.name].error
        assert error == "RuntimeError: cannot reach postgresql://***@db.internal/streamr"
        assert results[good.name].outcome == "ok" and results[good.name].details["done"] is True

        loop = asyncio.create_task(worker.run_forever())
        for _ in range(4):
            await fine_runs.acquire()
        worker.stop()
        await loop
        failed = await runs_of(ctx, bad.name)
        assert len(failed) >= 2 and {r.outcome for r in failed} == {"error"}
        assert all(r.error == error and "s3cret" not in (r.error or "") for r in failed)
        assert (await lease_of(ctx, bad.name)).expires_at <= utcnow(), "released after errors"

    with_ctx(bare_db, scenario)
    logged = [r for r in caplog.records if r.name == "streamr.jobs"]
    assert any(getattr(r, "traceback", None) for r in logged), "where it failed is logged"
    assert all("s3cret" not in json.dumps(vars(r), default=str) for r in logged)


def test_a_run_that_lost_its_lease_is_abandoned(bare_db):
    async def scenario(ctx: AppContext) -> None:
        taken, started = asyncio.Event(), asyncio.Event()
        seen: list[Run] = []

        async def slow(ctx: AppContext, run: Run) -> dict[str, object]:
            assert run.still_holding()
            seen.append(run)
            started.set()
            await taken.wait()
            assert not run.still_holding(), "guard() found out, below"
            await run.renew()
            return {"finished": True}

        job = Job(unique("slow"), slow, every=60, lease_s=30)
        worker = Worker(ctx, [job])
        running = asyncio.create_task(worker.run_job(job, force=True))
        await started.wait()
        # Another worker takes over (as it would once the lease expired).
        async with ctx.sessions() as session:
            await session.execute(
                update(JobLease).where(JobLease.name == job.name).values(expires_at=utcnow())
            )
            await session.commit()
        other = await leases.acquire(ctx.sessions, job.name, "other", 30, utcnow())
        assert other is not None and other.fence == seen[0].fence + 1
        async with ctx.sessions() as session:
            with pytest.raises(LeaseLost):
                await seen[0].guard(session)
        taken.set()
        result = await running
        assert result is not None and result.outcome == "abandoned"
        assert "lost" in (result.error or "")
        row = await lease_of(ctx, job.name)
        assert (row.holder, row.fence) == ("other", other.fence), "the new holder keeps it"

    with_ctx(bare_db, scenario)


def test_stop_abandons_the_running_job_and_releases_its_lease(bare_db):
    async def scenario(ctx: AppContext) -> None:
        started = asyncio.Event()

        async def forever(ctx: AppContext, run: Run) -> dict[str, object]:
            started.set()
            await asyncio.Event().wait()
            return {}

        job = Job(unique("forever"), forever, every=60, lease_s=30)
        worker = Worker(ctx, [job])
        loop = asyncio.create_task(worker.run_forever())
        await started.wait()
        worker.stop()  # worker_stop_grace_s is 0 here: the run is abandoned at once
        await loop
        (run,) = await runs_of(ctx, job.name)
        assert run.outcome == "abandoned" and run.error == "the worker stopped mid-run"
        assert run.finished_at is not None and run.duration_ms is not None
        assert (await lease_of(ctx, job.name)).expires_at <= utcnow()
        # Released, so the next worker may run it at once (forced: as `--once` would).
        assert await Worker(ctx, [job]).run_job(job, force=False) is None, "not due yet"

    with_ctx(bare_db, scenario)


WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from streamr_coordinator.context import AppContext
    from streamr_coordinator.jobs.runner import Job, Worker
    from streamr_coordinator.settings import Settings

    async def hang(ctx, run):
        print("started", run.fence, flush=True)
        await asyncio.Event().wait()

    async def main():
        settings = Settings(data_dir=sys.argv[1], database_url=sys.argv[2] or None)
        ctx = AppContext.from_settings(settings)
        await Worker(ctx, [Job(sys.argv[3], hang, every=60, lease_s=float(sys.argv[4]))]).run_once()

    asyncio.run(main())
    """
)


def test_a_killed_worker_process_loses_the_job_to_another(bare_db):
    """Two OS processes: while the first runs the job the second cannot; killed (no release,
    no record), its lease runs out and the second takes the job over with a new fence."""
    data_dir, url = bare_db
    name = unique("crash")
    lease_s = 1.0
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(data_dir), url or "", name, str(lease_s)],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("started"), line
        dead_fence = int(line.split()[1])

        async def scenario(ctx: AppContext) -> None:
            ran: list[int] = []

            async def job_fn(ctx: AppContext, run: Run) -> dict[str, object]:
                ran.append(run.fence)
                return {}

            job = Job(name, job_fn, every=60, lease_s=5)
            worker = Worker(ctx, [job])
            assert await worker.run_job(job, force=True) is None, "the other process holds it"
            await asyncio.to_thread(os.kill, child.pid, signal.SIGKILL)
            await asyncio.to_thread(child.wait)
            while not ran:  # it expires lease_s after the child's last renewal
                assert await lease_of(ctx, name) is not None
                await worker.run_job(job, force=True)
                await asyncio.sleep(0.1)
            assert ran == [dead_fence + 1]
            runs = await runs_of(ctx, name)
            assert [r.outcome for r in runs] == ["running", "ok"], "the dead run never finished"

            from streamr_coordinator.jobs.service import jobs_overview

            async with ctx.sessions() as session:
                view = await jobs_overview(session, [job], ctx.settings, 10)
            (shown,) = [j for j in view.jobs if j.name == name]
            assert [r.outcome for r in shown.runs] == ["ok", "lost"]

        with_ctx(bare_db, scenario)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ---------------------------------------------------------------- pure helpers


def test_select_jobs_and_the_catalog():
    names = [job.name for job in CATALOG]
    assert len(names) == len(set(names))
    for job in CATALOG:  # every interval names a real setting
        assert job.interval_s(make_settings(Path("."), None)) > 0
    assert [j.name for j in select_jobs(CATALOG, "retention, presence_reaper")] == [
        "presence_reaper",
        "retention",
    ]
    assert select_jobs(CATALOG, None) == CATALOG == select_jobs(CATALOG, " ")
    with pytest.raises(ValueError, match="unknown job"):
        select_jobs(CATALOG, "retention,nope")


def test_details_and_errors_stay_small():
    assert compact({"n": 1, "at": utcnow().replace(microsecond=0)})["n"] == 1
    assert compact({"big": "x" * 5000}) == {"truncated": True, "keys": ["big"]}
    assert one_line(ValueError("")) == "ValueError"
    assert len(one_line(ValueError("y" * 1000))) == 300


# ---------------------------------------------------------------- the jobs, on a coordinator


def run_job_now(client: TestClient, fn: Any) -> dict[str, object]:
    """One run of ``fn`` under a lease of its own (so the app's own worker never holds it)."""

    async def go() -> dict[str, object]:
        ctx = client.app.state.ctx
        job = Job(unique(fn.__name__), fn, every=60, lease_s=30)
        result = await Worker(ctx, [job]).run_job(job, force=True)
        assert result is not None and result.outcome == "ok", result
        return result.details

    return client.portal.call(go)


def db(client: TestClient, work: Callable[[Any], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with client.app.state.ctx.sessions() as session:
            answer = await work(session)
            await session.commit()
            return answer

    return client.portal.call(go)


def a_node(api: Api) -> tuple[Any, str, Any]:
    """A stream with one node, online (it sent a heartbeat)."""
    owner = api.register("streamer")
    stream, _ = api.create_stream(owner)
    node = api.register_node(api.register("friend"), api.invite(owner, stream))
    api.heartbeat(node)
    return owner, stream, node


def test_presence_reaper_records_the_last_heartbeat(api: Api, client: TestClient):
    _, _, node = a_node(api)
    _, _, gone = a_node(api)
    week_ago = utcnow() - timedelta(days=7)
    recent = utcnow() - timedelta(seconds=client.app.state.ctx.settings.presence_ttl_s)

    async def age(session: Any) -> None:
        await session.execute(
            update(NodeRow).where(NodeRow.id == node.id).values(last_seen_at=week_ago)
        )
        await client.app.state.ctx.presence.forget(gone.id, "")
        await session.execute(
            update(NodeRow).where(NodeRow.id == gone.id).values(last_seen_at=recent)
        )

    db(client, age)
    details = run_job_now(client, run_presence_reaper)
    assert details["last_seen_recorded"] >= 1 and details["went_offline"] >= 1
    assert gone.id in details["went_offline_nodes"] or details["went_offline"] > 20
    presence = client.portal.call(client.app.state.ctx.presence.get_many, [node.id])[node.id]
    row = db(client, lambda s: s.get(NodeRow, node.id))
    assert row.last_seen_at == presence.last_seen
    again = run_job_now(client, run_presence_reaper)
    assert db(client, lambda s: s.get(NodeRow, node.id)).last_seen_at == presence.last_seen
    assert again["online"] >= 1


def _durable_and_beat(client: TestClient, node_id: str, behind_s: float, beat_age_s: float):
    """Set the node's durable last-seen ``behind_s`` before a latest beat ``beat_age_s`` old."""
    ctx = client.app.state.ctx
    client.portal.call(ctx.last_seen.drain)  # the heartbeat's own write lands first
    live = client.portal.call(ctx.presence.get_many, [node_id])[node_id]
    beat = utcnow() - timedelta(seconds=beat_age_s)
    client.portal.call(ctx.presence.beat, replace(live, last_seen=beat), 60.0)
    durable = beat - timedelta(seconds=behind_s)

    async def set_durable(session: Any) -> None:
        await session.execute(
            update(NodeRow).where(NodeRow.id == node_id).values(last_seen_at=durable)
        )

    db(client, set_durable)
    return beat, durable


def test_the_reaper_writes_nothing_for_nodes_that_beat_on_time(api: Api, client: TestClient):
    # The heartbeat path keeps the durable time within a minute: a node beating on time, 30 s
    # ahead of its durable time, is no write for the reaper.
    _, _, node = a_node(api)
    _, durable = _durable_and_beat(client, node.id, behind_s=30, beat_age_s=0)
    run_job_now(client, run_presence_reaper)
    assert db(client, lambda s: s.get(NodeRow, node.id)).last_seen_at == durable


def test_the_reaper_records_a_node_about_to_leave_presence(api: Api, client: TestClient):
    settings = client.app.state.ctx.settings
    # Its presence would expire before the next run: its last beat is recorded now.
    _, _, stopped = a_node(api)
    beat, _ = _durable_and_beat(
        client, stopped.id, behind_s=30, beat_age_s=settings.presence_ttl_s - 0.5
    )
    # Merely late, more than a beat behind (replicas behind, a slow network): no write, which
    # would add to the load.
    expiring_s = settings.presence_ttl_s - settings.presence_reaper_interval_s * 1.2
    late_s = (settings.heartbeat_interval_s * 1.5 + expiring_s) / 2
    assert settings.heartbeat_interval_s * 1.5 < late_s < expiring_s
    _, _, late = a_node(api)
    _, durable = _durable_and_beat(client, late.id, behind_s=30, beat_age_s=late_s)
    details = run_job_now(client, run_presence_reaper)
    assert db(client, lambda s: s.get(NodeRow, stopped.id)).last_seen_at == beat
    assert db(client, lambda s: s.get(NodeRow, late.id)).last_seen_at == durable
    assert details["last_seen_recorded"] >= 1


def test_a_last_seen_batch_the_database_refused_waits_for_the_next_flush(
    api: Api, client: TestClient
):
    """A database that is busy or away loses no last-seen time: the batch is written by the
    next flush (here the first session goes to a port where nothing listens)."""
    ctx = client.app.state.ctx
    _, _, node = a_node(api)
    client.portal.call(ctx.last_seen.drain)
    nowhere = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    opened = []

    def sessions() -> Any:
        opened.append(1)
        return (session_factory(nowhere) if len(opened) == 1 else ctx.sessions)()

    recorder = LastSeenRecorder(sessions)  # type: ignore[arg-type]
    at = utcnow() + timedelta(minutes=5)  # later than anything the heartbeats wrote

    async def seen() -> None:
        recorder.seen(node.id, at, None, "9.9.9")

    client.portal.call(seen)
    client.portal.call(recorder.drain)  # refused: kept
    assert db(client, lambda s: s.get(NodeRow, node.id)).last_seen_at != at
    client.portal.call(recorder.drain)
    row = db(client, lambda s: s.get(NodeRow, node.id))
    assert (row.last_seen_at, row.version, len(opened)) == (at, "9.9.9", 2)
    client.portal.call(nowhere.dispose)


def test_a_node_that_leaves_is_last_seen_as_it_leaves(api: Api, client: TestClient):
    _, _, node = a_node(api)
    _durable_and_beat(client, node.id, behind_s=50, beat_age_s=0)
    before = utcnow()
    left = api.client.delete(f"/api/v1/nodes/{node.id}/presence", headers=node.headers)
    assert left.status_code == 204, left.text
    assert db(client, lambda s: s.get(NodeRow, node.id)).last_seen_at >= before


class _StatsHandler(BaseHTTPRequestHandler):
    """A node's /stats as streamr_node.node.Node.stats() shapes it, at /<mode>/<node id>."""

    def do_GET(self) -> None:
        mode, node_id, what = [*self.path.strip("/").split("/"), "", "", ""][:3]
        if what != "stats":
            self.send_error(404)
            return
        body: dict[str, Any] = {
            "node_id": node_id if mode == "ok" else "someone-else",
            "state": "ok",
            "uptime_s": 12.5,
            "viewers": {"connections": 4, "active_sessions": 3},
            "bytes": {"served_to_sessions": 123_456, "served_unattributed": 7, "egress_bps": 9000},
            "requests": {"total": 42, "by_status": {"200": 42}},
        }
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def stats_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatsHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_stats_collector_stores_what_each_node_reports(
    api: Api, client: TestClient, stats_host: str
):
    _, _, node = a_node(api)
    _, _, liar = a_node(api)
    api.heartbeat(node, public_url=f"{stats_host}/ok/{node.id}")
    api.heartbeat(liar, public_url=f"{stats_host}/other/{liar.id}")
    details = run_job_now(client, run_stats_collector)
    assert details["online"] >= 2 and details["collected"] >= 1

    async def snapshots(session: Any) -> dict[str, NodeStats]:
        rows = await session.scalars(
            select(NodeStats).where(NodeStats.node_id.in_([node.id, liar.id]))
        )
        return {row.node_id: row for row in rows}

    found = db(client, snapshots)
    good = found[node.id]
    assert good.error is None and good.latency_ms is not None and good.latency_ms >= 0
    assert (good.served_bytes, good.unattributed_bytes, good.requests) == (123_456, 7, 42)
    assert (good.connections, good.viewers, good.egress_bps, good.uptime_s) == (4, 3, 9000, 12)
    assert found[liar.id].error == "another node answered (node id 'someone-else')"
    assert found[liar.id].served_bytes is None


def test_stream_timers_age_offline_streams(api: Api, client: TestClient):
    owner = api.register("streamer")
    stream, _ = api.create_stream(owner)
    api.set_status(owner, stream, "LIVE")
    api.set_status(owner, stream, "OFFLINE")
    long_ago = utcnow() - timedelta(days=2)
    db(
        client,
        lambda s: s.execute(
            update(Stream).where(Stream.name == stream).values(offline_at=long_ago)
        ),
    )
    assert stream in run_job_now(client, run_stream_timers)["aged"]
    assert client.get(f"/api/v1/streams/{stream}").json()["status"] == "STALE"
    assert stream not in run_job_now(client, run_stream_timers)["aged"]


def test_rollups_are_idempotent_and_outlive_the_raw_rows(api: Api, client: TestClient):
    owner = api.register("streamer")
    stream, _ = api.create_stream(owner)
    api.set_status(owner, stream, "LIVE")
    node = api.register_node(api.register("friend"), api.invite(owner, stream))
    viewer = api.open_session(stream)
    sessions = [{"session_id": viewer["session_id"], "bytes": 1000, "segments": 1, "requests": 1}]
    for _ in range(2):
        sent = client.post(
            f"/api/v1/nodes/{node.id}/usage",
            json=api.usage_report(stream, sessions=sessions),
            headers=node.headers,
        )
        assert sent.status_code == 200, sent.text
    receipts = [
        {
            "source_kind": "node",
            "node_id": node.id,
            "segment": f"{n}.ts",
            "sequence": n,
            "bytes": 600,
            "ttfb_ms": 5,
            "download_ms": 9,
            "outcome": outcome,
        }
        for n, outcome in ((1, "ok"), (2, "ok"), (3, "error"))
    ]
    answer = client.post(
        f"/api/v1/sessions/{viewer['session_id']}/receipts",
        json={"batch_id": unique("b"), "receipts": receipts},
        headers={"Authorization": f"Bearer {viewer['token']}"},
    )
    assert answer.status_code in (200, 201), answer.text

    def hourly() -> list[tuple[Any, ...]]:
        async def read(session: Any) -> list[tuple[Any, ...]]:
            rows = await session.scalars(select(UsageHourly).where(UsageHourly.node_id == node.id))
            return [
                (
                    r.hour,
                    r.reports,
                    r.claimed_bytes,
                    r.receipts_ok,
                    r.receipted_ok_bytes,
                    r.receipts_failed,
                )
                for r in rows
            ]

        return db(client, read)

    run_job_now(client, run_rollups)
    first = hourly()
    assert first == [(hour_of(utcnow()), 2, 2000, 2, 1200, 1)] or (
        len(first) == 2 and sum(r[2] for r in first) == 2000  # the hour turned meanwhile
    )
    run_job_now(client, run_rollups)
    assert hourly() == first, "recomputing changes nothing"
    # The raw rows go (retention); what was rolled up stays.
    db(client, lambda s: s.execute(delete(UsageReport).where(UsageReport.node_id == node.id)))
    run_job_now(client, run_rollups)
    assert hourly() == first


def test_retention_prunes_old_rows_and_keeps_recent_ones(api: Api, client: TestClient):
    _, stream, node = a_node(api)
    settings = client.app.state.ctx.settings
    old = utcnow() - timedelta(seconds=settings.usage_retention_s + 3600)

    async def seed(session: Any) -> dict[str, Any]:
        stream_id = await session.scalar(select(Stream.id).where(Stream.name == stream))
        expired = ViewerSession(stream_id=stream_id, expires_at=utcnow() - timedelta(days=2))
        fresh = ViewerSession(stream_id=stream_id, expires_at=utcnow() + timedelta(hours=1))
        report = {
            "node_id": node.id,
            "stream_id": stream_id,
            "period_start": old,
            "period_end": old,
            "counted_bytes": 0,
            "counted_sessions": 0,
            "unknown_sessions": 0,
            "unattributed_bytes": 0,
            "unattributed_requests": 0,
        }
        session.add_all(
            [
                expired,
                fresh,
                UsageReport(report_id=unique("old"), received_at=old, **report),
                UsageReport(report_id=unique("new"), received_at=utcnow(), **report),
                NodeStats(node_id=node.id, collected_at=utcnow() - timedelta(days=30)),
                NodeStats(node_id=node.id, collected_at=utcnow()),
            ]
        )
        await session.flush()
        session.add_all(
            ReceiptTally(
                node_id=node.id,
                session_id=fresh.id,
                bucket_s=60,
                interval_start=at,
                stream_id=stream_id,
                first_at=at,
                last_at=at,
            )
            for at in (old, utcnow())
        )
        session.add_all(
            ReconciliationSession(
                node_id=node.id, session_id=sid, stream_id=stream_id, updated_at=at
            )
            for sid, at in ((expired.id, old), (fresh.id, utcnow()))
        )
        await session.flush()
        return {"expired": expired.id, "fresh": fresh.id}

    ids = db(client, seed)
    details = run_job_now(client, run_retention)
    assert details["pruned_viewer_sessions"] >= 1 and details["pruned_usage_reports"] >= 1
    assert details["pruned_node_stats"] >= 1 and details["pruned_receipt_tallies"] >= 1
    assert details["pruned_session_totals"] >= 1

    async def left(session: Any) -> tuple[Any, ...]:
        return (
            await session.get(ViewerSession, ids["expired"]),
            await session.get(ViewerSession, ids["fresh"]),
            list(await session.scalars(select(UsageReport).where(UsageReport.node_id == node.id))),
            list(await session.scalars(select(NodeStats).where(NodeStats.node_id == node.id))),
            list(await session.scalars(select(ReceiptTally).filter_by(node_id=node.id))),
            list(await session.scalars(select(ReconciliationSession).filter_by(node_id=node.id))),
        )

    expired, fresh, reports, stats, tallies, totals = db(client, left)
    assert expired is None and fresh is not None
    assert [r.report_id[:3] for r in reports] == ["new"] and len(stats) == 1
    assert len(tallies) == 1 and tallies[0].interval_start > old
    assert [t.session_id for t in totals] == [ids["fresh"]]


def test_operators_see_leases_and_runs(api: Api, client: TestClient):
    async def always_fails(ctx: AppContext, run: Run) -> dict[str, object]:
        raise ValueError("the disk is full")

    async def go() -> str:
        ctx = client.app.state.ctx
        job = Job(unique("ops"), always_fails, every=60)
        await Worker(ctx, [job]).run_once()
        return job.name

    name = client.portal.call(go)
    admin = api.make_admin()
    answer = client.get("/api/v1/admin/jobs", headers=admin.headers, params={"runs": 5})
    assert answer.status_code == 200, answer.text
    jobs = {job["name"]: job for job in answer.json()["jobs"]}
    assert {job.name for job in CATALOG} <= set(jobs)
    assert all(jobs[job.name]["in_catalog"] for job in CATALOG)
    failed = jobs[name]
    assert failed["in_catalog"] is False and failed["lease"]["held"] is False
    (run,) = failed["runs"]
    assert run["outcome"] == "error" and run["error"] == "ValueError: the disk is full"
    assert run["duration_ms"] >= 0 and failed["last_error_at"] and failed["last_ok_at"] is None
    assert_error(client.get("/api/v1/admin/jobs"), 401)
    streamer = api.register("streamer")
    assert_error(client.get("/api/v1/admin/jobs", headers=streamer.headers), 403)
    assert_error(client.get("/api/v1/admin/jobs?runs=0", headers=admin.headers), 422)


def test_the_coordinator_runs_the_jobs_in_process(tmp_path):
    """run_background_jobs (the one-machine mode, and `streamr demo`): the catalog runs inside
    the coordinator, and stops with it (leases released)."""
    settings = make_settings(
        tmp_path, None, stream_timers_interval_s=0.05, worker_jobs="stream_timers,retention"
    )
    with TestClient(create_app(settings)) as client:
        ctx = client.app.state.ctx
        deadline = time.monotonic() + 30
        runs: list[JobRun] = []
        while not runs and time.monotonic() < deadline:
            time.sleep(0.05)
            runs = [
                r for r in client.portal.call(runs_of, ctx, "stream_timers") if r.outcome == "ok"
            ]
        assert runs, "the in-process worker ran no jobs"
        assert client.portal.call(runs_of, ctx, "presence_reaper") == [], "not in worker_jobs"
    check = AppContext.from_settings(settings)
    try:
        lease = asyncio.run(lease_of(check, "stream_timers"))
        assert lease.expires_at <= utcnow(), "released when the coordinator stopped"
    finally:
        asyncio.run(check.close())
