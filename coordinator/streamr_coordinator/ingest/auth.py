"""The shared secret between the ingest and the coordinator."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from ..errors import Forbidden

SECRET_HEADER = "x-streamr-ingest-secret"  # noqa: S105 - a header name
SECRET_FILE = "ingest-secret"  # noqa: S105 - a file name


def load_ingest_secret(data_dir: Path, configured: str | None) -> str:
    """The configured secret, or the one in ``<data_dir>/ingest-secret`` (created if missing).

    The file lets the demo run coordinator and ingest from one data directory with nothing to
    configure; in production both sides get ``STREAMR_INGEST_SECRET``.
    """
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # the ingest, started at the same moment, wrote it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


async def require_ingest(request: Request) -> None:
    """Refuse anyone but the ingest. The same answer for a missing and a wrong secret."""
    expected: str = request.app.state.ctx.ingest_secret
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("Only the ingest server may call this route.")
