"""Periodic housekeeping run inside the coordinator process on one machine.

Each job is idempotent (it reads the state and makes it right), so running it twice — on two
replicas, or after a crash mid-run — does no harm. Production moves these to the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random

from .attestation.service import prune_segments
from .context import AppContext
from .streams.timers import age_streams

log = logging.getLogger("streamr.background")


async def run_once(ctx: AppContext) -> dict[str, object]:
    settings = ctx.settings
    async with ctx.sessions() as session:
        aged = await age_streams(session, settings.stale_after_s, settings.archive_after_s)
    async with ctx.sessions() as session:
        pruned = await prune_segments(session, settings.segment_retention_s)
    if aged or pruned:
        log.info("housekeeping", extra={"aged": aged, "pruned_segments": pruned})
    return {"aged": aged, "pruned_segments": pruned}


async def run_forever(ctx: AppContext) -> None:
    interval = ctx.settings.background_interval_s
    while True:
        # A little jitter keeps replicas that started together from running in lockstep.
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311
        try:
            await run_once(ctx)
        except Exception:
            log.exception("housekeeping failed; retrying next interval")
