"""One JSON error shape for every 4xx and 5xx, with a message a person can act on.

Every error body looks like::

    {"error": {"status": 409, "code": "invalid_transition",
               "message": "...what was wrong and what to do...", "details": {...}}}

Validation errors never echo the submitted input: it may be a password or a key.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("streamr.errors")

# SQLSTATE classes that mean the database server is away, not that the statement was wrong:
# 08 connection exception, 57P operator intervention (shutting down, starting up, crashed).
# asyncpg's errors reach SQLAlchemy as plain DBAPIError, not OperationalError.
_OUTAGE_SQLSTATES = ("08", "57P")


def is_storage_outage(exc: DBAPIError) -> bool:
    """True when a database error says the server or the connection is gone (retryable)."""
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(state, str) and state.startswith(_OUTAGE_SQLSTATES)


def is_database_away(exc: BaseException) -> bool:
    """A database busy (SQLite's one writer at a time) or away (a refused or cut connection, a
    server shutting down): worth another try, unlike a wrong query or a broken constraint."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and is_storage_outage(exc)


class AppError(Exception):
    """An error the client can fix; raised by service code, rendered by the handler below."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class Gone(AppError):
    status = 410
    code = "gone"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"


class PayloadTooLarge(StarletteHTTPException):
    """The body grew past the size cap while it was being read (no or a false Content-Length).

    An HTTPException, because FastAPI's body parsing turns any other exception into a vague
    "There was an error parsing the body" 400.
    """

    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes; send less.")


def error_body(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, details), status, headers=headers)


def _describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path"} else loc)
        if err.get("type") == "json_invalid":
            message = "the request body is not valid JSON; send a JSON object"
            where = "body"
        elif err.get("type") == "missing":
            message = "this field is required"
        else:
            message = str(err.get("msg", "is invalid"))
        details.append(
            {"field": where or "body", "location": loc[0] if loc else "", "problem": message}
        )
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    return f"The request was not accepted: {summary}.", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _describe_validation(list(exc.errors()))
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        code = getattr(exc, "code", None) or phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) else phrase
        if exc.status_code == 404 and message == "Not Found":
            message = "No such path. The API lives under /api/v1; see /docs for every route."
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's words for a body it could not decode at all (e.g. bytes that are not UTF-8)
            message = "The request body could not be read; send a JSON object encoded as UTF-8."
        elif exc.status_code == 405:
            message = "This path does not accept that method; see /docs for the allowed ones."
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, _exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this only fires when two requests race.
        return error_response(
            409, "conflict", "That conflicts with a change made at the same moment; try again."
        )

    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        # A database or Redis outage is not the client's fault and not a bug: say so, and
        # when to come back, instead of answering 500.
        log.warning(
            "storage unavailable",
            extra={"error": type(exc).__name__, "path": request.url.path},
        )
        return error_response(
            503,
            "storage_unavailable",
            "The coordinator cannot reach its database or cache right now; retry shortly.",
            headers={"Retry-After": "5"},
        )

    for storage_error in (OperationalError, InterfaceError, OSError, RedisError):
        app.add_exception_handler(storage_error, _store_down)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # The client (or the load balancer, for a client that gave up) hung up before its body
        # arrived: nobody reads this answer. Not a bug, so no traceback: under overload these
        # came by the thousand and two tracebacks each cost the CPU the replica lacked.
        log.debug("client disconnected", extra={"path": request.url.path})
        return error_response(400, "client_disconnected", "The request was cut off; send it again.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(
            500,
            "internal_error",
            f"The coordinator failed unexpectedly; report request id {request_id}.",
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A restart of PostgreSQL cuts sessions (57P01) and refuses connections while it shuts
        # down or starts (57P03): retryable, like a refused connection.
        if is_storage_outage(exc):
            return await _store_down(request, exc)
        return await _unexpected(request, exc)
