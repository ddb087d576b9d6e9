"""Verification's worker jobs (the catalog in jobs/ schedules them, each under its lease).

- ``run_prober`` (every few seconds): probes the nodes whose random time has come; the prober
  keeps its own per-node schedule, so probe times stay unpredictable whatever the job interval.
- ``run_reconciliation``: every finished interval since the watermark.
- ``run_trust_update``: new probes and reconciliations into the nodes' trust.

Writes that must not happen twice call the run's ``guard`` before committing, and are also
protected by unique keys and conditional watermark updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .prober import run_due_probes
from .reconcile_service import reconcile_due
from .trust_service import update_trust

if TYPE_CHECKING:
    from ..context import AppContext
    from ..jobs.runner import Run


async def run_prober(ctx: AppContext, run: Run) -> dict[str, Any]:
    return await run_due_probes(ctx)


async def run_reconciliation(ctx: AppContext, run: Run) -> dict[str, Any]:
    return await reconcile_due(ctx, guard=run.guard)


async def run_trust_update(ctx: AppContext, run: Run) -> dict[str, Any]:
    return await update_trust(ctx, guard=run.guard)
