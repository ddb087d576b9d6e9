"""The deployment tests, run against the local demo network so that they are known to work:
the smoke test and the stream lifecycle test (in a pytest of their own, given only URLs, as an
operator runs them against a cloud stage), and the cloud's metrics collector (its Lambda code,
with a stand-in for CloudWatch) reading a real coordinator."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["tests/test_production_smoke.py", "tests/test_stream_lifecycle_integration.py"]
# The only skip allowed: the demo serves plain HTTP, so there is no redirect to HTTPS to check.
EXPECTED_SKIPS = {"test_https_deployments_redirect_plain_http"}


def test_smoke_and_lifecycle_tests_pass_against_the_demo(start_demo, tmp_path):
    demo = start_demo("--no-test-card")
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_BASE_URL": demo.coordinator,
        "STREAMR_RTMP_URL": demo.rtmp,
        "STREAMR_ORIGIN_URL": demo.origin,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *MODULES,
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 - our own pytest wrote it
    outcomes = {
        case.get("name"): ("skipped" if case.find("skipped") is not None else "passed")
        for case in cases
    }
    assert {n for n, o in outcomes.items() if o == "skipped"} == EXPECTED_SKIPS, outcomes
    assert "test_publish_goes_live_with_signed_segments_then_offline" in outcomes
    assert sum(o == "passed" for o in outcomes.values()) >= 10
    # Nothing secret reached the output.
    assert "sk_" not in result.stdout + result.stderr


def load_collector() -> ModuleType:
    path = ROOT / "infrastructure/streamr_infra/lambdas/metrics/index.py"
    spec = importlib.util.spec_from_file_location("metrics_collector", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_collector_reads_a_real_coordinator(start_demo, monkeypatch):
    demo = start_demo()  # with its test card: the demo stream goes LIVE
    base = demo.coordinator
    collector = load_collector()
    # The monitor account, as scripts/operational-monitor-account.sh makes it in the cloud.
    monitor = {"email": "monitor@example.com", "password": "monitor passphrase 1"}
    created = subprocess.run(
        [
            str(ROOT / ".venv/bin/streamr"),
            "admin",
            "create",
            "--email",
            monitor["email"],
            "--display-name",
            "monitor",
            "--password-stdin",
        ],
        input=monitor["password"] + "\n",
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr

    # A friend's node on the demo stream, present through a heartbeat.
    password = re.search(r"demo login:\s+\S+ / (\S+)", demo.log.read_text())
    assert password, "the demo prints its streamer's password on the first start"
    http = httpx.Client(base_url=base, timeout=10)
    owner = http.post(
        "/api/v1/auth/login", json={"email": "demo@example.com", "password": password[1]}
    ).json()["access_token"]
    invite = http.post(
        "/api/v1/streams/demo/invites", json={}, headers={"Authorization": f"Bearer {owner}"}
    ).json()["code"]
    friend = http.post(
        "/api/v1/auth/register",
        json={
            "email": "another-friend@example.com",  # the demo's own friend runs its nodes
            "password": "friend passphrase",
            "display_name": "F",
            "role": "friend",
        },
    ).json()["access_token"]
    node = http.post(
        "/api/v1/nodes/register",
        json={"invite_code": invite, "name": "n1"},
        headers={"Authorization": f"Bearer {friend}"},
    ).json()
    http.post(
        f"/api/v1/nodes/{node['node_id']}/heartbeat",
        json={"connections": 0, "egress_bps": 0, "version": "test"},
        headers={"Authorization": f"Bearer {node['node_token']}"},
    ).raise_for_status()

    def live() -> bool:
        return http.get("/api/v1/streams/demo").json()["status"] == "LIVE"

    deadline = time.monotonic() + 60
    while not live():
        assert time.monotonic() < deadline, "the demo stream did not go LIVE"
        time.sleep(0.5)

    metrics = collector.collect(base, monitor=monitor)
    assert metrics["ApiHealthy"] == 1.0
    assert metrics["LiveStreams"] >= 1.0
    assert metrics["NodesRegistered"] >= 1.0 and metrics["NodesOnline"] >= 1.0
    assert metrics["MonitorLoginOk"] == 1.0
    assert metrics["FriendBytesLastHour"] == 0.0, "the node has reported nothing yet"

    published = []

    class CloudWatch:
        def put_metric_data(self, Namespace: str, MetricData: list) -> None:
            published.append((Namespace, MetricData))

    class Secrets:
        def get_secret_value(self, SecretId: str) -> dict:
            return {"SecretString": json.dumps(monitor)}

    monkeypatch.setenv("API_URL", base)
    monkeypatch.setenv("NAMESPACE", "StreamrP2P/test")
    monkeypatch.setenv("MONITOR_SECRET_ARN", "arn:monitor")
    collector.handler({}, None, cloudwatch=CloudWatch(), secrets=Secrets())
    ((namespace, data),) = published
    assert namespace == "StreamrP2P/test"
    assert {d["MetricName"] for d in data} >= {"LiveStreams", "NodesOnline", "ApiHealthy"}
    http.close()
