"""Assembles the coordinator application from its domains. No logic lives here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from streamr_protocol.nodes import Heartbeat

from . import __version__
from .accounts.routes import router as accounts_router
from .apidocs import install_api_docs
from .attestation.routes import router as attestation_router
from .context import AppContext
from .dashboards.install import install_dashboards
from .errors import install_error_handlers
from .health import router as health_router
from .ingest.routes import router as ingest_router
from .invites.routes import router as invites_router
from .jobs.catalog import CATALOG
from .jobs.routes import router as jobs_router
from .jobs.runner import Worker, select_jobs
from .middleware import RequestContextMiddleware
from .migrations.runner import upgrade_to_head
from .nodes.heartbeats import HeartbeatShortcut
from .nodes.routes import router as nodes_router
from .payouts.routes import router as payouts_router
from .routing import publish_schemas
from .settings import Settings
from .streams.routes import router as streams_router
from .usage.routes import router as usage_router
from .verification.routes import router as verification_router
from .viewers.page import install_watch_page
from .viewers.routes import router as viewers_router

log = logging.getLogger("streamr.coordinator")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.prepare_data_dir()
        if settings.should_auto_migrate:
            await upgrade_to_head(settings.sqlalchemy_url)
        ctx = AppContext.from_settings(settings)
        app.state.ctx = ctx
        # One-machine mode: the worker's jobs run here (their leases keep them single even
        # beside `streamr worker` processes or other replicas that run them too).
        worker = (
            Worker(ctx, select_jobs(CATALOG, settings.worker_jobs))
            if settings.run_background_jobs
            else None
        )
        jobs = asyncio.create_task(worker.run_forever(first_now=False)) if worker else None
        log.info(
            "coordinator ready", extra={"settings": settings.describe(), "version": __version__}
        )
        try:
            yield
        finally:
            if worker is not None and jobs is not None:
                worker.stop()
                await asyncio.gather(jobs, return_exceptions=True)
            await ctx.close()

    app = FastAPI(
        title="StreamrP2P coordinator",
        version=__version__,
        description="Streams, friend nodes and viewers of StreamrP2P. Errors always have the "
        'shape {"error": {"status", "code", "message", "details"}}.',
        lifespan=lifespan,
        docs_url=None,  # served by apidocs.py from npm's copy, never a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    install_api_docs(app, settings.web_assets_dir)
    install_watch_page(app, settings.web_assets_dir)
    # Added first, so it runs inside the request context (request id, access log, body limit).
    app.add_middleware(HeartbeatShortcut)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    # FastAPI tries the routers in this order on every request, and heartbeats are nearly all
    # requests: the nodes router goes first, which keeps the heartbeat within half of the
    # framework's ceiling (docs/benchmarks.md). No paths overlap, so the order changes nothing
    # else (the API reference lists Nodes first).
    for router in (
        nodes_router,
        health_router,
        accounts_router,
        streams_router,
        invites_router,
        attestation_router,
        ingest_router,
        viewers_router,
        usage_router,
        verification_router,
        payouts_router,
        jobs_router,
    ):
        app.include_router(router)
    install_dashboards(app, settings)  # after the API routers, so API paths are tried first
    publish_schemas(app, Heartbeat)
    return app
