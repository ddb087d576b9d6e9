"""What operators see of the worker: per job, its lease and its latest runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from ..settings import Settings
from .models import JobLease, JobRun
from .runner import Job
from .schemas import JobOut, JobsOut, LeaseOut, RunOut


def shown_outcome(run: JobRun, lease: JobLease | None, now_held: bool) -> str:
    """A run still marked running whose lease has moved on (or lapsed) was lost with its
    worker: it never finished."""
    if run.outcome != "running":
        return run.outcome
    if lease is not None and lease.fence == run.fence and now_held:
        return "running"
    return "lost"


async def jobs_overview(
    session: AsyncSession, catalog: Sequence[Job], settings: Settings, runs_per_job: int
) -> JobsOut:
    now = utcnow()
    leases = {row.name: row for row in await session.scalars(select(JobLease))}
    recorded = set(await session.scalars(select(JobRun.job).distinct()))
    specs = {job.name: job for job in catalog}
    names = list(specs) + sorted((set(leases) | recorded) - set(specs))
    jobs = []
    for name in names:
        lease = leases.get(name)
        held = lease is not None and lease.holder is not None and lease.expires_at > now
        runs = list(
            await session.scalars(
                select(JobRun)
                .where(JobRun.job == name)
                .order_by(JobRun.id.desc())
                .limit(runs_per_job)
            )
        )
        last = {
            outcome: await session.scalar(
                select(func.max(JobRun.started_at)).where(
                    JobRun.job == name, JobRun.outcome == outcome
                )
            )
            for outcome in ("ok", "error")
        }
        spec = specs.get(name)
        jobs.append(
            JobOut(
                name=name,
                in_catalog=spec is not None,
                interval_s=spec.interval_s(settings) if spec else None,
                lease_s=spec.lease_seconds(settings) if spec else None,
                lease=LeaseOut(
                    holder=lease.holder,
                    fence=lease.fence,
                    acquired_at=lease.acquired_at,
                    expires_at=lease.expires_at,
                    held=held,
                )
                if lease is not None
                else None,
                last_ok_at=last["ok"],
                last_error_at=last["error"],
                runs=[
                    RunOut(
                        id=run.id,
                        holder=run.holder,
                        fence=run.fence,
                        started_at=run.started_at,
                        finished_at=run.finished_at,
                        duration_ms=run.duration_ms,
                        outcome=shown_outcome(run, lease, held),
                        error=run.error,
                        details=run.details,
                    )
                    for run in runs
                ],
            )
        )
    return JobsOut(now=now, jobs=jobs)
