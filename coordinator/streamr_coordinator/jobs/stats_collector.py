"""Stats collector: each online node's own ``/stats``, fetched through its public URL.

The fetch is made as a stranger on the internet would (the URL the node gave, no credentials),
with a short timeout, and guarded like the reachability check (nodes/reachability.py): the
host name is resolved first and addresses that are not globally routable are refused unless
``allow_private_node_urls``; the connection goes to the checked address; no redirects, proxies
or compressed answers; at most 64 KiB. A compact snapshot per node goes to ``node_stats``:
the counters as the node reported them (its word, never paid on), the fetch's latency, or why
it failed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, select

from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from ..nodes.reachability import MAX_ANSWER_BYTES, default_port, is_public
from .models import NodeStats
from .runner import Run

BIGINT_MAX = 2**63 - 1
MIN_RATE = 20.0  # fetches started a second, at least
SPREAD = 0.5  # of the interval, over which a run's fetches are spread
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Fetched:
    latency_ms: int | None
    body: dict[str, Any] | None = None
    error: str | None = None


def stats_client(timeout_s: float) -> httpx.AsyncClient:
    """One client for a whole collection run. A client per fetch built a new TLS context each
    time (loading the CA bundle, about 5 ms of CPU): at 5,000 nodes a minute that alone kept a
    worker a third busy (bench/load). No connection is kept between fetches, so every node is
    still fetched on a fresh connection, as a stranger would."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def fetch_stats(
    url: str, *, timeout_s: float, allow_private: bool, client: httpx.AsyncClient | None = None
) -> Fetched:
    """GET ``<url>/stats`` as JSON; never raises for a network outcome. ``client``: one from
    ``stats_client`` to share (a fresh one otherwise)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            if client is None:
                async with stats_client(timeout_s) as own:
                    body = await _fetch(own, url, allow_private)
            else:
                body = await _fetch(client, url, allow_private)
    except TimeoutError:
        return Fetched(None, error=f"no answer within {timeout_s:g} s")
    except _Refused as exc:
        return Fetched(None, error=str(exc))
    return Fetched(int((time.monotonic() - started) * 1000), body=body)


class _Refused(Exception):
    pass


async def _fetch(client: httpx.AsyncClient, url: str, allow_private: bool) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused("the public URL is not an http(s) URL with a host")
    try:
        port = parts.port or default_port(parts.scheme)
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except (ValueError, OSError, UnicodeError):
        raise _Refused(f"the host name {parts.hostname} does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise _Refused(f"the host name {parts.hostname} does not resolve")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise _Refused("the public URL leads to an address that is not reachable from outside")
    target = httpx.URL(
        scheme=parts.scheme,
        host=str(addresses[0]),
        port=port,
        path=parts.path.rstrip("/") + "/stats",
    )
    headers = {
        "Host": parts.netloc.rpartition("@")[2],
        "Accept": "application/json",
        "Accept-Encoding": "identity",
    }
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    body = bytearray()
    try:
        async with client.stream("GET", target, headers=headers, extensions=extensions) as answer:
            if answer.status_code != 200:
                raise _Refused(f"GET /stats answered HTTP {answer.status_code}")
            if answer.headers.get("content-encoding", "identity").lower() != "identity":
                raise _Refused("GET /stats answered with a compressed body")
            async for chunk in answer.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _Refused("GET /stats answered more than 64 KiB")
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.ConnectError:
        raise _Refused(f"nothing accepted a connection on port {port}") from None
    except httpx.HTTPError:
        raise _Refused("the answer to GET /stats was not HTTP") from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Refused("GET /stats answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused("GET /stats answered JSON that is not an object")
    return data


def _count(value: object, limit: int = BIGINT_MAX) -> int | None:
    """A counter the node reported, if it is one: a non-negative int (floats truncated)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value < 0:  # NaN, negative
        return None
    return min(int(value), limit)


def _get(data: dict[str, Any], *path: str) -> object:
    value: object = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def snapshot(node_id: str, fetched: Fetched) -> NodeStats:
    """The row for one fetch; the node's answer is untrusted, so every field is checked."""
    row = NodeStats(node_id=node_id, collected_at=utcnow(), latency_ms=fetched.latency_ms)
    data = fetched.body
    if data is None:
        row.error = (fetched.error or "no answer")[:200]
        return row
    answered = data.get("node_id")
    if answered != node_id:
        shown = str(answered)[:40].encode("ascii", "replace").decode()
        row.error = f"another node answered (node id {shown!r})"[:200]
        return row
    state = data.get("state")
    row.state = state[:16] if isinstance(state, str) else None
    row.uptime_s = _count(data.get("uptime_s"))
    row.served_bytes = _count(_get(data, "bytes", "served_to_sessions"))
    row.unattributed_bytes = _count(_get(data, "bytes", "served_unattributed"))
    row.egress_bps = _count(_get(data, "bytes", "egress_bps"))
    row.requests = _count(_get(data, "requests", "total"))
    row.connections = _count(_get(data, "viewers", "connections"), INT_MAX)
    row.viewers = _count(_get(data, "viewers", "active_sessions"), INT_MAX)
    return row


def _values(row: NodeStats) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in NodeStats.__table__.columns if c.key != "id"}


async def run_stats_collector(ctx: AppContext, run: Run) -> dict[str, object]:
    settings = ctx.settings
    async with ctx.sessions() as session:
        nodes = (
            await session.execute(
                select(Node.id, Node.public_url).where(Node.deregistered_at.is_(None))
            )
        ).all()
    live = await ctx.presence.get_many([n.id for n in nodes])
    targets: list[tuple[str, str | None]] = []
    for node in nodes:
        presence = live.get(node.id)
        if presence is not None:
            targets.append((node.id, presence.public_url or node.public_url))

    limit = asyncio.Semaphore(settings.stats_concurrency)
    # Paced, not all at once: thousands of fetches in a burst took a worker's whole core for
    # seconds every interval, and on a machine shared with replicas their answers with it
    # (bench/load). At most MIN_RATE a second, faster only as needed to end within SPREAD of the
    # interval.
    rate = max(MIN_RATE, len(targets) / (SPREAD * settings.stats_interval_s))
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(
        client: httpx.AsyncClient, number: int, node_id: str, url: str | None
    ) -> NodeStats:
        if url is None:
            return snapshot(node_id, Fetched(None, error="the node has no public URL"))
        await asyncio.sleep(max(0.0, started + number / rate - loop.time()))
        async with limit:
            fetched = await fetch_stats(
                url,
                timeout_s=settings.stats_timeout_s,
                allow_private=settings.allow_private_node_urls,
                client=client,
            )
        return snapshot(node_id, fetched)

    async with stats_client(settings.stats_timeout_s) as client:
        rows = await asyncio.gather(
            *(one(client, n, node_id, url) for n, (node_id, url) in enumerate(targets))
        )
    if rows:
        await run.renew()
        async with ctx.sessions() as session:
            # A node deregistered (or deleted) meanwhile keeps no snapshot: only known ids.
            existing = set(
                await session.scalars(select(Node.id).where(Node.id.in_([r.node_id for r in rows])))
            )
            kept = [_values(r) for r in rows if r.node_id in existing]
            if kept:
                # One executemany, not thousands of ORM objects flushed one by one.
                await session.execute(insert(NodeStats.__table__), kept)
            await session.commit()
    failed = [r for r in rows if r.error is not None]
    return {
        "online": len(targets),
        "collected": len(rows) - len(failed),
        "failed": len(failed),
        "errors": sorted({r.error for r in failed if r.error})[:5],
    }
