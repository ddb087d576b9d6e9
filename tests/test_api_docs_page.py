"""/docs renders in a real headless Chromium, with every asset served by the coordinator."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_docs_page_renders_offline(start_coordinator, tmp_path):
    base, _ = start_coordinator()
    requested: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base}/docs")
            title = page.locator(".swagger-ui .info .title")
            title.wait_for(timeout=15_000)
            assert "StreamrP2P coordinator" in title.inner_text()
            page.get_by_text("/api/v1/nodes/{node_id}/heartbeat").first.wait_for()
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        finally:
            browser.close()
    hosts = {urlparse(url).hostname for url in requested if url.startswith("http")}
    assert hosts == {"127.0.0.1"}, f"the page reached beyond the coordinator: {hosts}"
    assert any(url.endswith("/openapi.json") for url in requested)
