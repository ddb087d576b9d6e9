"""The operator's economics, versioned: the latest row is current, else the Settings defaults.

A version is never changed in place; each accrual records the version it was priced with, so a
statement can always say which terms applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from ..errors import AppError
from ..settings import Settings
from .economics import Economics
from .models import EconomicsVersion

TERM_NAMES = tuple(f.name for f in fields(Economics))


class InvalidEconomics(AppError):
    status = 422
    code = "invalid_economics"


def from_settings(settings: Settings) -> Economics:
    return Economics(**{name: getattr(settings, name) for name in TERM_NAMES})


def from_row(row: EconomicsVersion) -> Economics:
    return Economics(**{name: getattr(row, name) for name in TERM_NAMES})


async def latest_version(session: AsyncSession) -> EconomicsVersion | None:
    return await session.scalar(select(EconomicsVersion).order_by(EconomicsVersion.id.desc()))


async def current_economics(
    session: AsyncSession, settings: Settings
) -> tuple[Economics, int | None]:
    """The terms in force and their version (None: the Settings defaults, nothing set yet)."""
    row = await latest_version(session)
    if row is None:
        return from_settings(settings), None
    return from_row(row), row.id


async def history(session: AsyncSession, limit: int = 50) -> Sequence[EconomicsVersion]:
    rows = await session.scalars(
        select(EconomicsVersion).order_by(EconomicsVersion.id.desc()).limit(limit)
    )
    return rows.all()


async def set_economics(
    session: AsyncSession,
    settings: Settings,
    changes: Mapping[str, int],
    *,
    actor: str,
    note: str = "",
) -> EconomicsVersion:
    """A new version: the current terms with ``changes`` applied. Refuses out-of-range values
    with every problem named, and a change that changes nothing."""
    unknown = sorted(set(changes) - set(TERM_NAMES))
    if unknown:
        raise InvalidEconomics(
            f"Unknown economics terms {unknown}; the terms are {list(TERM_NAMES)}."
        )
    current, _version = await current_economics(session, settings)
    proposed = replace(current, **changes)
    problems = proposed.problems()
    if problems:
        raise InvalidEconomics(
            "The economics were not changed: " + "; ".join(problems) + ".",
            details={"problems": problems},
        )
    if not changes:
        raise InvalidEconomics("Nothing to change: send at least one of " + ", ".join(TERM_NAMES))
    row = EconomicsVersion(**asdict(proposed), set_by=actor, set_at=utcnow(), note=note[:200])
    session.add(row)
    await session.commit()
    return row
