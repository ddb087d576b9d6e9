"""Runs the catalog's jobs: each on its own schedule, each run under the job's lease.

Any number of workers (``streamr worker`` processes, coordinators with run_background_jobs)
may run the same catalog: a run starts only when its worker takes the job's lease
(jobs/leases.py), and the lease also carries the schedule (a job is due ``interval`` after the
latest run of any worker started), so the workers share one schedule rather than each running
every job. While a run goes on its lease is renewed in the background; if that fails for too
long, or another worker took the job over, the run is cancelled. Every run is recorded
(``job_runs``) and logged as one line. A failing job never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import secrets
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from . import leases
from .leases import Lease, LeaseLost
from .models import JobLease, JobRun

# Jitter from a generator of our own: the process-wide one belongs to whoever embeds us
_jitter = random.Random()  # noqa: S311 - spreading, not secrecy

if TYPE_CHECKING:
    from ..context import AppContext
    from ..settings import Settings

log = logging.getLogger("streamr.jobs")

JITTER = 0.1  # each wait is the interval +/- 10 %, so workers started together drift apart
MAX_DETAILS_CHARS = 2000
MAX_ERROR_CHARS = 300
STOP_BOOKKEEPING_S = 10.0  # to record and release abandoned runs at a stop

JobFn = Callable[["AppContext", "Run"], Awaitable[dict[str, object]]]


@dataclass(frozen=True)
class Job:
    """One periodic job: ``fn(ctx, run)`` every ``every`` seconds (a number, or the name of the
    setting that holds it), under a lease of ``lease_s`` seconds that is renewed while it runs
    (so ``lease_s`` is how soon another worker takes over after this one died, not a limit on
    how long a run may take). ``lease_s`` too may name a setting."""

    name: str
    fn: JobFn
    every: float | str
    lease_s: float | str = 60.0

    def interval_s(self, settings: Settings) -> float:
        if isinstance(self.every, str):
            return float(getattr(settings, self.every))
        return float(self.every)

    def lease_seconds(self, settings: Settings) -> float:
        if isinstance(self.lease_s, str):
            return float(getattr(settings, self.lease_s))
        return float(self.lease_s)


@dataclass(frozen=True)
class RunResult:
    job: str
    outcome: str  # ok, error, abandoned
    fence: int
    duration_ms: int
    details: dict[str, object]
    error: str | None = None


def new_holder() -> str:
    """hostname:pid:random — unique per worker object, readable by operators."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class Run:
    """What a running job knows about its lease. Long jobs call ``await run.renew()`` (or
    check ``run.still_holding()``) between steps; writes that must never happen twice under
    two workers call ``await run.guard(session)`` in their transaction before committing."""

    def __init__(self, worker: Worker, job: Job, lease: Lease, run_id: int) -> None:
        self._worker = worker
        self.job = job.name
        self.lease_s = job.lease_seconds(worker.ctx.settings)
        self.run_id = run_id
        self.lease = lease
        self.lost = False

    @property
    def holder(self) -> str:
        return self.lease.holder

    @property
    def fence(self) -> int:
        return self.lease.fence

    @property
    def started_at(self) -> datetime:
        return self.lease.acquired_at

    def still_holding(self) -> bool:
        return not self.lost and utcnow() < self.lease.expires_at

    async def renew(self) -> None:
        """Extend the lease now; LeaseLost when another worker has taken the job over."""
        if self.lost:
            raise LeaseLost(f"job {self.job}: the lease was lost")
        try:
            self.lease = await leases.renew(
                self._worker.ctx.sessions, self.lease, self.lease_s, utcnow()
            )
        except LeaseLost:
            self.lost = True
            raise

    async def guard(self, session: AsyncSession) -> None:
        """In ``session``'s transaction: LeaseLost unless this run still holds the lease."""
        try:
            await leases.check_fence(session, self.lease)
        except LeaseLost:
            self.lost = True
            raise


def one_line(exc: BaseException) -> str:
    """An error as one short line for operators: the exception's type and first line, with any
    password in a URL masked (database errors can quote a connection string)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    first = text.splitlines()[0] if text else ""
    first = re.sub(r"://[^/@\s]*@", "://***@", first)
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line[:MAX_ERROR_CHARS]


def compact(details: object) -> dict[str, object]:
    """The job's result as small plain JSON (dates as text); anything larger is summarised."""
    if not isinstance(details, dict):
        details = {"result": details}
    text = json.dumps(details, default=str, sort_keys=True)
    if len(text) > MAX_DETAILS_CHARS:
        return {"truncated": True, "keys": sorted(str(k) for k in details)[:20]}
    loaded: dict[str, object] = json.loads(text)
    return loaded


class Worker:
    """Runs ``jobs`` for ``ctx``: all of them once (``run_once``) or on schedule until
    ``stop()`` (``run_forever``)."""

    def __init__(self, ctx: AppContext, jobs: Sequence[Job], *, holder: str | None = None) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.ctx = ctx
        self.jobs = list(jobs)
        self.holder = holder or new_holder()
        self._rows: set[str] = set()
        self._stopping = asyncio.Event()
        self._working: set[asyncio.Task[dict[str, object]]] = set()

    # ------------------------------------------------------------------ one run

    async def run_job(self, job: Job, *, force: bool = False) -> RunResult | None:
        """One run of ``job`` if its lease can be had (and, unless ``force``, it is due);
        None when another worker holds it or ran it lately. Job errors become the result."""
        sessions = self.ctx.sessions
        if job.name not in self._rows:
            await leases.ensure_row(sessions, job.name)
            self._rows.add(job.name)
        now = utcnow()
        interval = job.interval_s(self.ctx.settings)
        due_before = None if force else now - timedelta(seconds=interval * (1 - JITTER))
        lease_s = job.lease_seconds(self.ctx.settings)
        lease = await leases.acquire(
            sessions, job.name, self.holder, lease_s, now, due_before=due_before
        )
        if lease is None:
            log.debug("job not due or held elsewhere", extra={"job": job.name})
            return None
        if self._stopping.is_set():  # stop() came while the lease was being taken
            await self._release(lease)
            return None
        try:
            async with sessions() as session:
                record = JobRun(
                    job=job.name,
                    holder=self.holder,
                    fence=lease.fence,
                    started_at=lease.acquired_at,
                    outcome="running",
                )
                session.add(record)
                await session.commit()
        except BaseException:
            await self._release(lease)
            raise
        run = Run(self, job, lease, record.id)
        started = time.monotonic()
        work = asyncio.create_task(job.fn(self.ctx, run), name=f"job:{job.name}")
        self._working.add(work)
        work.add_done_callback(self._working.discard)
        keeper = asyncio.create_task(self._keep(run, work), name=f"lease:{job.name}")
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:  # the worker is stopping: abandon the run, cleanly
            work.cancel()
            await asyncio.wait({work})
            keeper.cancel()
            await self._finish(run, started, "abandoned", {}, "the worker stopped mid-run")
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if work.cancelled():
            why = "the lease was lost" if run.lost else "the worker stopped mid-run"
            return await self._finish(run, started, "abandoned", {}, why)
        exc = work.exception()
        if isinstance(exc, LeaseLost):
            return await self._finish(run, started, "abandoned", {}, one_line(exc))
        if exc is not None:
            # Where it failed, without the exception's own text (which may quote a secret,
            # such as a database URL); the one-line error is masked.
            log.error(
                "job failed",
                extra={
                    "job": job.name,
                    "fence": lease.fence,
                    "error": one_line(exc),
                    "traceback": "".join(traceback.format_tb(exc.__traceback__))[-4000:],
                },
            )
            return await self._finish(run, started, "error", {}, one_line(exc))
        return await self._finish(run, started, "ok", compact(work.result()), None)

    async def _keep(self, run: Run, work: asyncio.Task[Any]) -> None:
        """Renew the lease every third of it; cancel the run once it cannot be held safely."""
        every = run.lease_s / 3
        wait = every
        while not work.done():
            await asyncio.sleep(wait)
            try:
                await run.renew()
                wait = every
            except LeaseLost:
                break
            except Exception as exc:  # the database is unreachable: retry while time is left
                log.warning("lease renewal failed", extra={"job": run.job, "error": one_line(exc)})
                left = (run.lease.expires_at - utcnow()).total_seconds()
                if left <= every / 2:  # stop well before another worker may take over
                    run.lost = True
                    break
                wait = min(every / 6, left - every / 2)
        if not work.done():
            log.warning("lease lost; run cancelled", extra={"job": run.job, "fence": run.fence})
            work.cancel()

    async def _finish(
        self,
        run: Run,
        started: float,
        outcome: str,
        details: dict[str, object],
        error: str | None,
    ) -> RunResult:
        duration_ms = int((time.monotonic() - started) * 1000)
        result = RunResult(run.job, outcome, run.fence, duration_ms, details, error)
        try:
            async with self.ctx.sessions() as session:
                await session.execute(
                    update(JobRun)
                    .where(JobRun.id == run.run_id)
                    .values(
                        finished_at=utcnow(),
                        duration_ms=duration_ms,
                        outcome=outcome,
                        error=error,
                        details=details or None,
                    )
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
        except Exception as exc:  # the run happened; only its record is missing
            log.warning("could not record the run", extra={"job": run.job, "error": one_line(exc)})
        if not run.lost:
            await self._release(run.lease)
        level = {"ok": logging.INFO, "abandoned": logging.WARNING}.get(outcome, logging.ERROR)
        log.log(
            level,
            "job run",
            extra={
                "job": run.job,
                "outcome": outcome,
                "duration_ms": duration_ms,
                "fence": run.fence,
                "details": details,
                "error": error,
            },
        )
        return result

    async def _release(self, lease: Lease) -> None:
        try:
            await leases.release(self.ctx.sessions, lease, utcnow())
        except Exception as exc:  # it expires by itself
            log.warning(
                "could not release a lease", extra={"job": lease.name, "error": one_line(exc)}
            )

    # ------------------------------------------------------------------ schedules

    async def run_once(self) -> dict[str, RunResult | None]:
        """Each job once, now (due or not), one after the other; None for a job whose lease
        another worker holds. A job that cannot even start is logged and reported as None."""
        results: dict[str, RunResult | None] = {}
        for job in self.jobs:
            try:
                results[job.name] = await self.run_job(job, force=True)
            except Exception as exc:
                log.error("job could not start", extra={"job": job.name, "error": one_line(exc)})
                results[job.name] = RunResult(job.name, "error", 0, 0, {}, one_line(exc))
        return results

    def stop(self) -> None:
        """Ask ``run_forever`` to end: idle jobs at once, running ones within the grace."""
        self._stopping.set()

    async def run_forever(self, *, first_now: bool = True) -> None:
        """Run every job on its schedule until ``stop()`` (or cancellation). ``first_now`` runs
        each due job straight away (a worker that just started); otherwise after one interval."""
        loops = [
            asyncio.create_task(self._loop(job, first_now), name=f"schedule:{job.name}")
            for job in self.jobs
        ]
        try:
            await self._stopping.wait()
            _, running = await asyncio.wait(loops, timeout=self.ctx.settings.worker_stop_grace_s)
            if running:
                # Runs still going after the grace are cancelled; their loops then record them
                # as abandoned and release their leases before ending.
                for work in list(self._working):
                    work.cancel()
                await asyncio.wait(loops, timeout=STOP_BOOKKEEPING_S)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, job: Job, first_now: bool) -> None:
        interval = job.interval_s(self.ctx.settings)
        delay = 0.0 if first_now else interval * _jitter.uniform(1 - JITTER, 1 + JITTER)
        while not await self._stopped_within(delay):
            try:
                result = await self.run_job(job)
            except Exception as exc:  # the database is down, say: try again next interval
                log.error("job could not start", extra={"job": job.name, "error": one_line(exc)})
                result = None
                delay = interval
                continue
            if result is not None:
                delay = interval * _jitter.uniform(1 - JITTER, 1 + JITTER)
            else:
                delay = await self._until_available(job, interval)

    async def _stopped_within(self, delay: float) -> bool:
        if self._stopping.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(delay, 0.0))
        return self._stopping.is_set()

    async def _until_available(self, job: Job, interval: float) -> float:
        """Seconds until the lease can next be had: the job due again, and not held."""
        try:
            async with self.ctx.sessions() as session:
                row = await session.get(JobLease, job.name)
        except Exception:
            return interval
        now = utcnow()
        at = now
        if row is not None:
            if row.acquired_at is not None:
                at = max(at, row.acquired_at + timedelta(seconds=interval))
            if row.holder != self.holder:
                at = max(at, row.expires_at)
        spread = interval * _jitter.uniform(0, JITTER)
        return min((at - now).total_seconds() + spread, interval * 10)


def select_jobs(catalog: Iterable[Job], names: str | None) -> list[Job]:
    """The catalog's jobs named in a comma-separated list (all of them for None or empty)."""
    jobs = list(catalog)
    if not names or not names.strip():
        return jobs
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {job.name for job in jobs}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(
            f"unknown job(s) {', '.join(unknown)}; the jobs are: {', '.join(sorted(known))}"
        )
    return [job for job in jobs if job.name in wanted]
