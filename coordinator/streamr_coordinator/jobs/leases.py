"""Job leases: at most one worker runs a job at a time, however many workers share a database.

A lease row per job (inserted on first use, ``insert_once``). Acquiring is one conditional
UPDATE — the row is free, expired or already this holder's, and (unless forced) the job is due —
that also bumps the fence; renewing and releasing are conditional on holder and fence. The
database decides between racing workers: PostgreSQL re-checks the WHERE clause after the row
lock is released, SQLite has one writer at a time, so exactly one UPDATE matches.

Times are the workers' clocks (UTC); they must agree to well within a lease (NTP does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..database import insert_once
from .models import JobLease

NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class LeaseLost(Exception):
    """The lease moved to another worker (or could not be renewed in time): stop the run."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    fence: int
    acquired_at: datetime
    expires_at: datetime


async def ensure_row(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    """The job's lease row exists (free) afterwards; concurrent first uses insert it once."""
    async with sessions() as session:
        if await session.get(JobLease, name) is not None:
            return
        await insert_once(
            session,
            JobLease(name=name, holder=None, fence=0, acquired_at=None, expires_at=NEVER),
            JobLease.name == name,
        )
        await session.commit()


async def acquire(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    lease_s: float,
    now: datetime,
    *,
    due_before: datetime | None = None,
) -> Lease | None:
    """Take the lease, or None when another holder has it (or, with ``due_before``, when the
    latest run of anyone started after that time: the job is not due yet)."""
    expires = now + timedelta(seconds=lease_s)
    conditions = [
        JobLease.name == name,
        or_(JobLease.holder.is_(None), JobLease.expires_at <= now, JobLease.holder == holder),
    ]
    if due_before is not None:
        conditions.append(or_(JobLease.acquired_at.is_(None), JobLease.acquired_at <= due_before))
    async with sessions() as session:
        fence = await session.scalar(
            update(JobLease)
            .where(*conditions)
            .values(holder=holder, fence=JobLease.fence + 1, acquired_at=now, expires_at=expires)
            .returning(JobLease.fence)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    if fence is None:
        return None
    return Lease(name=name, holder=holder, fence=fence, acquired_at=now, expires_at=expires)


async def renew(
    sessions: async_sessionmaker[AsyncSession], lease: Lease, lease_s: float, now: datetime
) -> Lease:
    """Extend the lease; LeaseLost if another worker took it meanwhile (the fence moved).

    A lease that expired but was not taken is still renewed: the unchanged fence proves that
    nobody else ran the job in between.
    """
    expires = now + timedelta(seconds=lease_s)
    async with sessions() as session:
        result = await session.execute(
            update(JobLease)
            .where(
                JobLease.name == lease.name,
                JobLease.holder == lease.holder,
                JobLease.fence == lease.fence,
            )
            .values(expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {lease.name}: the lease (fence {lease.fence}) was taken over")
    return Lease(lease.name, lease.holder, lease.fence, lease.acquired_at, expires)


async def release(sessions: async_sessionmaker[AsyncSession], lease: Lease, now: datetime) -> None:
    """Let the next worker take the job at once. The holder stays, for operators to see."""
    async with sessions() as session:
        await session.execute(
            update(JobLease)
            .where(
                JobLease.name == lease.name,
                JobLease.holder == lease.holder,
                JobLease.fence == lease.fence,
            )
            .values(expires_at=min(now, lease.expires_at))
            .execution_options(synchronize_session=False)
        )
        await session.commit()


async def check_fence(session: AsyncSession, lease: Lease) -> None:
    """In the caller's transaction: LeaseLost unless the lease is still this run's.

    On PostgreSQL the lease row stays locked (FOR SHARE) until the caller commits, so no
    takeover can slip in between this check and the caller's writes; on SQLite a takeover
    committed meanwhile makes the caller's first write fail (one writer, snapshot isolation).
    """
    fence = await session.scalar(
        select(JobLease.fence)
        .where(JobLease.name == lease.name, JobLease.holder == lease.holder)
        .with_for_update(read=True)
    )
    if fence != lease.fence:
        raise LeaseLost(f"job {lease.name}: the lease (fence {lease.fence}) was taken over")
