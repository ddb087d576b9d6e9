"""Adds the dashboards to the application: pages, JSON routes, their static files and
Chart.js from npm (``web_assets_dir``, as /docs serves Swagger UI: never a CDN)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from .pages import LoginRequired
from .pages import router as pages_router
from .rendering import CHART_JS_PREFIX, STATIC_DIR, STATIC_PREFIX, PageError, render
from .routes import router as api_router
from .sessions import web_session


def install_dashboards(app: FastAPI, settings: Settings) -> None:
    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="dashboards-static")
    chart_js = settings.web_assets_dir / "chart.js" / "dist"
    # Without it (npm ci not run) the pages still work; their scripts say the charts are missing.
    if (chart_js / "chart.umd.min.js").is_file():
        app.mount(CHART_JS_PREFIX, StaticFiles(directory=chart_js), name="chart-js")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        if isinstance(exc, LoginRequired):
            query = f"?{urlencode({'next': exc.back_to})}" if exc.back_to else ""
            return RedirectResponse(f"/login{query}", status_code=303)
        async with request.app.state.ctx.sessions() as session:
            web = await web_session(request, session)
        response = render(
            request,
            "error.html",
            status=exc.status,
            web=web,
            title=exc.title or _TITLES.get(exc.status, "Something went wrong"),
            message=exc.message,
        )
        response.headers.update(exc.headers)
        return response


_TITLES = {
    400: "The form could not be used",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    429: "Too many attempts",
}
