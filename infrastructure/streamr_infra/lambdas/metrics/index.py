"""Scheduled every minute: what the coordinator's API says about the platform, as CloudWatch
metrics the dashboard and alarms use.

Public API (always): ``ApiHealthy`` (GET /health answered 200), ``LiveStreams``, and for the
live streams ``NodesRegistered`` and ``NodesOnline`` (present: heartbeating within the TTL).

With the monitor account (an admin whose email and password are in the stage's monitor secret,
created by scripts/operational-monitor-account.sh): ``FriendBytesLastHour``, the bytes the
live streams' friend nodes reported serving in the last hour. The dashboard sets it against the
load balancer's bytes for the share of bytes from friends.

The collection runs against the same public URL viewers use, so it also notices what they
would. Standard library only (plus the runtime's boto3 for CloudWatch and Secrets Manager).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

PAGE = 200
MAX_STREAMS = 1000  # bounded work per run; a bigger platform needs a coordinator-side metric
TIMEOUT_S = 10

# (method, url, json body, headers) -> (status, parsed JSON or None)
Fetch = Callable[[str, str, Any, dict[str, str]], tuple[int, Any]]


def http_fetch(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the stage's own API
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def collect(
    api_url: str, fetch: Fetch = http_fetch, monitor: dict[str, str] | None = None
) -> dict[str, float]:
    """The metrics of one run, by name. A part the API cannot answer is left out, not zero."""
    base = api_url.rstrip("/")
    metrics: dict[str, float] = {}
    status, _ = fetch("GET", f"{base}/health", None, {})
    metrics["ApiHealthy"] = 1.0 if status == 200 else 0.0
    if status == 0:
        return metrics

    live: list[str] = []
    total = None
    while total is None or (len(live) < total and len(live) < MAX_STREAMS):
        query = urllib.parse.urlencode({"status": "LIVE", "limit": PAGE, "offset": len(live)})
        status, page = fetch("GET", f"{base}/api/v1/streams?{query}", None, {})
        if status != 200 or not isinstance(page, dict):
            return metrics
        total = int(page["total"])
        live += [stream["name"] for stream in page["streams"]]
        if not page["streams"]:
            break
    metrics["LiveStreams"] = float(total)

    headers: dict[str, str] = {}
    if monitor:
        status, login = fetch("POST", f"{base}/api/v1/auth/login", monitor, {})
        if status == 200 and isinstance(login, dict):
            headers = {"Authorization": f"Bearer {login['access_token']}"}
        metrics["MonitorLoginOk"] = 1.0 if headers else 0.0

    registered = online = 0
    node_ids: list[str] = []
    for name in live:
        status, nodes = fetch("GET", f"{base}/api/v1/streams/{name}/nodes", None, headers)
        if status != 200 or not isinstance(nodes, dict):
            continue
        registered += int(nodes["registered"])
        online += int(nodes["online"])
        node_ids += [node["id"] for node in nodes.get("nodes") or []]
    metrics["NodesRegistered"] = float(registered)
    metrics["NodesOnline"] = float(online)

    if headers:
        friend_bytes, answered = 0, False
        for node_id in node_ids:
            status, usage = fetch("GET", f"{base}/api/v1/nodes/{node_id}/usage", None, headers)
            if status == 200 and isinstance(usage, dict):
                window = usage["last_hour"]
                friend_bytes += int(window["counted_bytes"]) + int(window["unattributed_bytes"])
                answered = True
        if answered or not node_ids:
            metrics["FriendBytesLastHour"] = float(friend_bytes)
    return metrics


UNITS = {"FriendBytesLastHour": "Bytes"}


def handler(_event: Any, _context: Any, cloudwatch: Any = None, secrets: Any = None) -> dict:
    if cloudwatch is None or secrets is None:
        import boto3  # provided by the Lambda runtime

        cloudwatch = cloudwatch or boto3.client("cloudwatch")
        secrets = secrets or boto3.client("secretsmanager")
    monitor = None
    if os.environ.get("MONITOR_SECRET_ARN"):
        value = json.loads(
            secrets.get_secret_value(SecretId=os.environ["MONITOR_SECRET_ARN"])["SecretString"]
        )
        monitor = {"email": value["email"], "password": value["password"]}
    metrics = collect(os.environ["API_URL"], monitor=monitor)
    cloudwatch.put_metric_data(
        Namespace=os.environ["NAMESPACE"],
        MetricData=[
            {"MetricName": name, "Value": value, "Unit": UNITS.get(name, "Count")}
            for name, value in metrics.items()
        ],
    )
    print(json.dumps({"event": "metrics published", **metrics}))
    return metrics
