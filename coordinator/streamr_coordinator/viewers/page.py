"""The watch page: ``/watch/{name}``, its scripts, and hls.js, all served by this coordinator.

The page is static apart from the stream's name, title and state, which are escaped into it (the
title is the streamer's free text). Everything else the page learns from the API. Its scripts
(``static/``) are served at ``/static/watch/``; hls.js comes from the copy npm installed (see
package.json), at ``/static/vendor/hls.js/``, never from a CDN. A strict Content-Security-Policy
backs up the escaping: no inline script runs, whatever a title holds.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select

from ..accounts.auth import Session
from ..streams.lifecycle import on_air
from ..streams.models import Stream
from ..streams.routes import StreamName

HERE = Path(__file__).resolve().parent
SCRIPTS_PREFIX = "/static/watch"
HLS_JS_PREFIX = "/static/vendor/hls.js"

# Segments come from nodes anywhere (connect-src), the native player reads the origin directly
# (media-src), and hls.js feeds the video from blob: URLs and runs its worker from one.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' http: https:",
        "media-src 'self' blob: http: https:",
        "worker-src blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

_PAGE = Template((HERE / "templates" / "watch.html").read_text())
_MISSING = Template((HERE / "templates" / "missing.html").read_text())


def _json_for_html(value: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' at all,
    so neither '</script>' nor '<!--' can end or bend the element."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(stream: Stream) -> str:
    config = {
        "stream": stream.name,
        "title": stream.title,
        "status": stream.status,
        "api": "/api/v1",
    }
    return _PAGE.substitute(
        title=html.escape(stream.title),
        name=html.escape(stream.name),
        status=html.escape(stream.status),
        status_class="live" if on_air(stream.status) else "off",
        config=_json_for_html(config),
        scripts=SCRIPTS_PREFIX,
        hls_js=f"{HLS_JS_PREFIX}/hls.min.js",
    )


def install_watch_page(app: FastAPI, node_modules: Path) -> None:
    app.mount(SCRIPTS_PREFIX, StaticFiles(directory=HERE / "static"), name="watch-scripts")
    hls_dist = node_modules / "hls.js" / "dist"
    if (hls_dist / "hls.min.js").is_file():
        app.mount(HLS_JS_PREFIX, StaticFiles(directory=hls_dist), name="hls-js")
    # Without hls.js the page still loads: browsers that play HLS themselves (Safari) play the
    # origin, and the others are told the player is missing.

    @app.get("/watch/{name}", include_in_schema=False, response_class=HTMLResponse)
    async def watch_page(name: StreamName, session: Session) -> HTMLResponse:
        stream = await session.scalar(select(Stream).where(Stream.name == name))
        if stream is None:
            body = _MISSING.substitute(name=html.escape(name), scripts=SCRIPTS_PREFIX)
            return HTMLResponse(body, status_code=404, headers=HEADERS)
        return HTMLResponse(render_page(stream), headers=HEADERS)
