"""Liveness and identity of this coordinator process: /health, /version, JWKS."""

from __future__ import annotations

import logging
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from . import __version__
from .accounts.auth import Context
from .routing import DocumentedRoute

router = APIRouter(route_class=DocumentedRoute, tags=["service"])
log = logging.getLogger("streamr.health")


@cache
def git_commit() -> str | None:
    """The commit this code came from: STREAMR_GIT_COMMIT (set in images) or the checkout."""
    if os.environ.get("STREAMR_GIT_COMMIT"):
        return os.environ["STREAMR_GIT_COMMIT"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


@router.get("/health")
async def health(ctx: Context) -> JSONResponse:
    """Health: 200 when the database (and Redis, if configured) answer; 503 otherwise."""
    checks: dict[str, Any] = {}
    healthy = True
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        healthy = False
        checks["database"] = f"unreachable: {type(exc).__name__}"
        log.warning("health: database unreachable", extra={"error": type(exc).__name__})
    if ctx.settings.redis_url is None:
        checks["redis"] = "not configured"
    else:
        try:
            await ctx.presence.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            healthy = False
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


@router.get("/version")
async def version() -> dict[str, str | None]:
    """The coordinator's package version and git commit."""
    return {"name": "streamr-coordinator", "version": __version__, "commit": git_commit()}


@router.get("/.well-known/jwks.json")
async def jwks(ctx: Context) -> dict[str, Any]:
    """Public keys that verify access tokens, so other services can check them offline."""
    return ctx.keys.jwks()
