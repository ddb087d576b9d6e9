r"""Smoke test of any deployment: read-only, safe to run against prod after every deploy.

    STREAMR_BASE_URL=https://api.example.org \
      .venv/bin/python -m pytest tests/test_production_smoke.py

Settings (environment): STREAMR_BASE_URL, the coordinator's public URL (without it every test
here is skipped); STREAMR_ORIGIN_URL, the HLS origin (default: the base URL, where the cloud's
load balancer serves /hls/); STREAMR_EXPECT_COMMIT, the commit that should be running.
tests/test_deployment_against_demo.py runs this module against the local demo network, so it
is known to pass on a healthy deployment. It creates nothing and needs no credentials.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import httpx
import pytest

BASE_URL = os.environ.get("STREAMR_BASE_URL", "").rstrip("/")
ORIGIN_URL = (os.environ.get("STREAMR_ORIGIN_URL") or BASE_URL).rstrip("/")

pytestmark = pytest.mark.skipif(
    not BASE_URL, reason="set STREAMR_BASE_URL to the deployment's public URL to run it"
)


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE_URL, timeout=15, follow_redirects=False) as client:
        yield client


def test_health_reports_database_and_redis(api):
    answer = api.get("/health")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] in ("ok", "not configured")
    assert answer.headers.get("x-request-id"), "every answer carries its request id"


def test_version_names_the_running_release(api):
    body = api.get("/version").json()
    assert body["name"] == "streamr-coordinator" and body["version"]
    expected = os.environ.get("STREAMR_EXPECT_COMMIT")
    if expected:
        assert (body["commit"] or "").startswith(expected), body


def test_signing_keys_are_published(api):
    jwks = api.get("/.well-known/jwks.json").json()
    assert jwks["keys"], "at least one access-token key"
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"]) == ("OKP", "Ed25519") and key["kid"]
        assert "d" not in key, "never the private part"
    attestation = api.get("/api/v1/attestation/key").json()
    assert attestation["algorithm"] == "Ed25519"
    raw = base64.urlsafe_b64decode(attestation["public_key"] + "==")
    assert len(raw) == 32


def test_public_stream_listing_shows_no_secret(api):
    answer = api.get("/api/v1/streams", params={"limit": 200})
    assert answer.status_code == 200
    body = answer.json()
    assert {"streams", "total", "limit", "offset"} <= set(body)
    assert "stream_key" not in answer.text and "sk_" not in answer.text


def test_errors_have_one_shape(api):
    answer = api.get("/api/v1/streams/no-such-stream-smoke")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["status"] == 404 and error["code"] and error["message"]


def test_ingest_routes_do_not_answer_the_public(api):
    """The ingest's routes need its secret (the cloud does not even route them publicly)."""
    answer = api.post("/api/v1/ingest/sync", json={"publishing": []})
    assert answer.status_code in (401, 403, 404), answer.status_code


def test_api_documentation_is_served_without_a_cdn(api):
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com"):
        assert cdn not in docs.text
    schema = api.get("/openapi.json").json()
    assert "/api/v1/streams" in schema["paths"]


def test_origin_answers_hls_requests_with_cors():
    with httpx.Client(timeout=15) as client:
        missing = client.get(f"{ORIGIN_URL}/hls/no-such-stream-smoke/index.m3u8")
        assert missing.status_code == 404
        assert missing.headers.get("access-control-allow-origin") == "*"
        preflight = client.options(
            f"{ORIGIN_URL}/hls/no-such-stream-smoke/index.m3u8",
            headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 204


def test_https_deployments_redirect_plain_http():
    if not BASE_URL.startswith("https://"):
        pytest.skip("the deployment is served over plain HTTP (no domain configured)")
    plain = httpx.get("http://" + BASE_URL.removeprefix("https://") + "/health", timeout=15)
    assert plain.status_code in (301, 308)
    assert plain.headers["location"].startswith("https://")
