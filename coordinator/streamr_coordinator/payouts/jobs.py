"""The payouts domain's jobs, as the worker runs them: ``fn(ctx, run) -> dict``.

``ctx`` is the process's AppContext (only ``ctx.sessions`` and ``ctx.settings`` are used);
``run`` is the job runner's record of this run and is not needed here: both jobs are safe to
run twice, or on two workers at once, because their writes are keyed (one accrual row per
reconciliation, one payout row per node and period, the ledger's keys), not because the lease
is held.
"""

from __future__ import annotations

from typing import Any

from ..context import AppContext
from .accrual import accrue_pending
from .cycle import run_cycle


async def run_accrual(ctx: AppContext, run: Any) -> dict[str, object]:
    """Price and post every reconciled interval not accrued yet."""
    result = await accrue_pending(ctx.sessions, ctx.settings)
    return result.as_dict()


async def run_payout_cycle(ctx: AppContext, run: Any) -> dict[str, object]:
    """Settle the latest ended payout period: pay balances at or over the minimum, carry
    the others over."""
    result = await run_cycle(ctx.sessions, ctx.settings)
    return result.as_dict()
