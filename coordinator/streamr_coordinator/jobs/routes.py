from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..accounts.auth import Context, Session, require_admin
from ..accounts.models import Account
from ..routing import DocumentedRoute
from .catalog import CATALOG
from .schemas import JobsOut
from .service import jobs_overview

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1/admin", tags=["admin"])


@router.get("/jobs", response_model=JobsOut)
async def jobs_route(
    _admin: Annotated[Account, Depends(require_admin)],
    ctx: Context,
    session: Session,
    runs: int = Query(default=10, ge=1, le=100, description="Latest runs shown per job"),
) -> JobsOut:
    """The worker's jobs: who holds each lease, and each job's latest runs. Admins only.

    Per run: start, duration, outcome (ok, error, abandoned, running, or lost when its
    worker died mid-run), a one-line error and the small summary the job returned.
    """
    return await jobs_overview(session, CATALOG, ctx.settings, runs)
