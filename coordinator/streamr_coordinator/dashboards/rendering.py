"""Rendering the pages: one Jinja environment with autoescaping always on, and the headers
every page is sent with.

Autoescaping is on for every template, whatever its name, so a stream title or node name like
``<img src=x onerror=alert(1)>`` is shown as text. The Content-Security-Policy allows scripts,
styles and requests only from this coordinator, so even a value that escaped escaping could not
run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .formatting import format_bps, format_bytes, format_duration, format_when, slug

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/dashboards"
CHART_JS_PREFIX = "/static/vendor/chart.js"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # A row template (``Blank`` below) renders its cells empty rather than "None".
    finalize=lambda value: "" if value is None else value,
)
_env.filters["bytes"] = format_bytes
_env.filters["bps"] = format_bps
_env.filters["when"] = format_when
_env.filters["slug"] = slug
_env.filters["duration"] = format_duration
_env.globals["static"] = STATIC_PREFIX
_env.globals["chart_js"] = f"{CHART_JS_PREFIX}/chart.umd.min.js"


class Blank:
    """Stands in for a row in the ``<template>`` a page's script fills: every field is None."""

    def __getattr__(self, name: str) -> None:
        if name.startswith("__"):  # e.g. __html__: a Blank is never rendered itself
            raise AttributeError(name)
        return None


_env.globals["blank"] = Blank()


class PageError(Exception):
    """An error on a page: shown as an HTML page with the status and a message to act on."""

    def __init__(
        self,
        status: int,
        message: str,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title
        self.headers = headers or {}


def page_headers(private: bool) -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        # Private pages may hold a key shown once; no cache should keep them.
        "Cache-Control": "no-store" if private else "no-cache",
    }


def render(
    request: Request, template: str, *, status: int = 200, private: bool = True, **context: Any
) -> HTMLResponse:
    html = _env.get_template(template).render(path=request.url.path, **context)
    return HTMLResponse(html, status_code=status, headers=page_headers(private))
