"""Periodic housekeeping: in the coordinator process on one machine, or in ``streamr worker``.

Each job is idempotent (it reads the state and makes it right), so running it twice — on two
replicas, or after a crash mid-run — does no harm. In production the coordinator replicas run
with ``STREAMR_RUN_BACKGROUND_JOBS=false`` and one or more ``streamr worker`` processes do this.
"""

from __future__ import annotations

import asyncio
import logging
import random

from .attestation.service import prune_segments
from .context import AppContext
from .streams.timers import age_streams
from .viewers.service import prune_sessions

log = logging.getLogger("streamr.background")


async def run_once(ctx: AppContext) -> dict[str, object]:
    settings = ctx.settings
    async with ctx.sessions() as session:
        aged = await age_streams(session, settings.stale_after_s, settings.archive_after_s)
    async with ctx.sessions() as session:
        pruned = await prune_segments(session, settings.segment_retention_s)
    async with ctx.sessions() as session:
        # Kept as long again as they lived: no report about them can still be on its way.
        sessions = await prune_sessions(session, settings.viewer_session_ttl_s)
    result: dict[str, object] = {
        "aged": aged,
        "pruned_segments": pruned,
        "pruned_viewer_sessions": sessions,
    }
    log.log(
        logging.INFO if aged or pruned or sessions else logging.DEBUG, "housekeeping", extra=result
    )
    return result


async def run_forever(ctx: AppContext, *, first_now: bool = False) -> None:
    """Run the jobs every ``background_interval_s`` until cancelled; a failed run is retried at
    the next interval. ``first_now`` runs once straight away (a worker that just started)."""
    interval = ctx.settings.background_interval_s
    delay = 0.0 if first_now else interval
    while True:
        # A little jitter keeps replicas that started together from running in lockstep.
        await asyncio.sleep(delay * random.uniform(0.9, 1.1))  # noqa: S311
        delay = interval
        try:
            await run_once(ctx)
        except Exception:
            log.exception("housekeeping failed; retrying next interval")
