"""Interactive API documentation at /docs, served entirely from this coordinator.

FastAPI's default page loads Swagger UI from a CDN; ours serves the copy npm installed
(``swagger-ui-dist``, see package.json), so /docs works offline and leaks no visits.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .errors import error_response

ASSET_PREFIX = "/static/vendor/swagger-ui"


def install_api_docs(app: FastAPI, node_modules: Path) -> None:
    assets = node_modules / "swagger-ui-dist"
    available = (assets / "swagger-ui-bundle.js").is_file()
    if available:
        app.mount(ASSET_PREFIX, StaticFiles(directory=assets), name="swagger-ui")

    @app.get("/docs", include_in_schema=False, response_model=None)
    async def docs() -> HTMLResponse:
        if not available:
            return error_response(  # type: ignore[return-value]
                503,
                "docs_unavailable",
                f"Swagger UI is not installed at {assets}; run scripts/bootstrap.sh "
                "(it runs npm ci). The schema itself is at /openapi.json.",
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_PREFIX}/favicon-32x32.png",
        )
