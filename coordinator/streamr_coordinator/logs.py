"""Structured logs: one JSON object a line, carrying the request, stream and node ids in play.

The line format is the one every StreamrP2P program writes (``streamr_protocol.logs``); the
coordinator adds the id of the request being served. Nothing secret is ever passed to a logger:
this module only adds context, it cannot redact.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from streamr_protocol import logs

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def _request_context() -> dict[str, Any]:
    request_id = request_id_var.get()
    return {"request_id": request_id} if request_id else {}


class JsonFormatter(logs.JsonFormatter):
    def __init__(self) -> None:
        super().__init__(context=_request_context)


def configure_logging(level: str = "INFO") -> None:
    logs.configure_logging(level, context=_request_context)
    # uvicorn's own access log would duplicate ours (and log query strings); ours is enough.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
