"""The shared secret between the ingest and the coordinator."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from streamr_protocol.ingest import (
    SECRET_FILE_NAME,
    SECRET_HEADER,
    check_secret,
    read_or_create_secret,
)

from ..errors import Forbidden


def load_ingest_secret(data_dir: Path, configured: str | None) -> str:
    """The configured secret, or the one in ``<data_dir>/ingest-secret`` (created if missing).

    The file lets the demo run coordinator and ingest from one data directory with nothing to
    configure; in production both sides get ``STREAMR_INGEST_SECRET``. Both sides use the same
    helper, so whichever starts first creates it and the other reads the same value.
    """
    if configured:
        return check_secret(configured, "STREAMR_INGEST_SECRET")
    return read_or_create_secret(data_dir / SECRET_FILE_NAME)


async def require_ingest(request: Request) -> None:
    """Refuse anyone but the ingest. The same answer for a missing and a wrong secret."""
    expected: str = request.app.state.ctx.ingest_secret
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("Only the ingest server may call this route.")
