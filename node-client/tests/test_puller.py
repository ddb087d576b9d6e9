"""The puller against real HTTP upstreams on loopback: the upstreams are node servers (the same
paths as the origin), and the signed index is served the way the coordinator serves it.

Covered: each segment fetched once and verified before it is served; an altered segment from a
parent is never served but fetched again from the origin and reported; a parent that lacks a
segment is bypassed for that segment; gaps become discontinuities; the stream's end becomes
ENDLIST.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from streamr_node.http import HttpServer, Request, Response, json_response
from streamr_node.puller import Puller
from streamr_node.window import SegmentWindow
from streamr_protocol.attestation import SegmentIndex
from streamr_protocol.nodes import Upstream

from .support import KEY_ID, STREAM, running_node, segment_bytes


class IndexServer:
    """GET /api/v1/streams/<stream>/segments?since=&limit= over a list of signed entries."""

    def __init__(self) -> None:
        self.entries = []
        self.requests = 0

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        since = int(request.query.get("since", "-1"))
        limit = int(request.query.get("limit", "30"))
        chosen = [e for e in self.entries if e.sequence > since]
        chosen = chosen[:limit] if "since" in request.query else chosen[-limit:]
        index = SegmentIndex(stream=STREAM, key_id=KEY_ID, segments=chosen)
        return json_response(index.model_dump(mode="json"))


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def world(tmp_path):
    """An origin and a parent (both node servers sharing one signer), an index, a puller."""
    with running_node(tmp_path / "origin") as origin, running_node(tmp_path / "parent") as parent:
        parent.signer = origin.signer  # one coordinator key for the whole world
        index = IndexServer()
        loop = origin.loop
        failures = []

        async def start():
            server = HttpServer(index, server_name="index", base_headers=[])
            port = await server.start("127.0.0.1", 0)
            http = httpx.AsyncClient()
            window = SegmentWindow(STREAM, list_size=6, keep_extra=4)
            puller = Puller(
                stream=STREAM,
                window=window,
                http=http,
                coordinator_url=f"http://127.0.0.1:{port}",
                key=origin.signer.public,
                upstream=Upstream(kind="origin", base_url=origin.url),
                origin=Upstream(kind="origin", base_url=origin.url),
                playlist_path=f"/hls/{STREAM}/index.m3u8",
                report_integrity_failure=failures.append,
                poll_interval_s=0.05,
            )
            task = asyncio.create_task(puller.run())
            return server, http, window, puller, task

        server, http, window, puller, task = asyncio.run_coroutine_threadsafe(start(), loop).result(
            5
        )

        class World:
            pass

        w = World()
        w.origin, w.parent, w.index, w.window, w.puller, w.failures = (
            origin,
            parent,
            index,
            window,
            puller,
            failures,
        )

        def publish(sequence, *, to=(origin,), tamper_in=(), size=50_000):
            data = segment_bytes(sequence, size)
            entry = origin.signer.entry(sequence, f"{sequence}.ts", data)
            index.entries.append(entry)
            for node in to:
                served = data[:-1] + bytes([data[-1] ^ 1]) if node in tamper_in else data
                node.call(
                    lambda n=node, s=served: n.window.append(
                        entry.name, s, entry, discontinuity=False
                    )
                )
            return data

        w.publish = publish
        try:
            yield w
        finally:

            async def stop():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await http.aclose()
                await server.close()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(5)


def served(world, name):
    segment = world.origin.call(lambda: world.window.get(name))
    return None if segment is None else segment.data


def test_follows_the_origin_and_serves_only_verified_bytes(world):
    datas = {n: world.publish(n) for n in range(5, 9)}
    _wait(lambda: len(world.window.segments) == 4)
    for n, data in datas.items():
        assert served(world, f"{n}.ts") == data
    listed = world.window.listed
    assert [s.media_sequence for s in listed] == [5, 6, 7, 8]
    world.publish(9)
    _wait(lambda: served(world, "9.ts") is not None)
    stats = world.puller.stats
    assert stats.segments_fetched == 5  # each exactly once
    assert stats.integrity_failures == 0


def test_an_altered_segment_from_a_parent_is_replaced_by_the_origins_and_reported(world):
    parent = world.parent
    world.origin.call(
        lambda: world.puller.assign(
            Upstream(kind="node", base_url=parent.url, node_id="parent-node"),
            Upstream(kind="origin", base_url=world.origin.url),
            live=True,
        )
    )
    good = {}
    for n in range(1, 5):
        good[n] = world.publish(n, to=(world.origin, parent), tamper_in=(parent,) if n == 3 else ())
    _wait(lambda: len(world.window.segments) == 4)
    for n, data in good.items():
        assert served(world, f"{n}.ts") == data  # never the altered copy
    (failure,) = world.failures
    assert failure.upstream_node_id == "parent-node"
    assert failure.segment == "3.ts" and failure.sequence == 3
    assert world.puller.stats.refetched_from_origin == 1


def test_a_segment_the_parent_lacks_comes_from_the_origin(world):
    # A parent that lists the origin's playlist but has none of the segments.
    def forgetful(request: Request) -> Response:
        if request.path.endswith("/index.m3u8"):
            body = world.origin.window.playlist.body
            return Response(200, [("Content-Type", "application/vnd.apple.mpegurl")], body)
        return Response(404, [], b"gone")

    parent = HttpServer(forgetful, server_name="p", base_headers=[])
    loop = world.origin.loop
    port = asyncio.run_coroutine_threadsafe(parent.start("127.0.0.1", 0), loop).result(5)
    try:
        world.origin.call(
            lambda: world.puller.assign(
                Upstream(kind="node", base_url=f"http://127.0.0.1:{port}", node_id="p"),
                Upstream(kind="origin", base_url=world.origin.url),
                live=True,
            )
        )
        data = world.publish(1)
        _wait(lambda: served(world, "1.ts") == data)
        assert world.failures == []  # missing is not altered: nothing to report
        assert world.puller.stats.refetched_from_origin == 1
    finally:
        asyncio.run_coroutine_threadsafe(parent.close(), loop).result(5)


def test_a_gap_is_a_discontinuity_and_the_end_is_endlist(world):
    world.publish(1)
    _wait(lambda: served(world, "1.ts") is not None)
    world.publish(5)  # 2..4 never existed upstream
    _wait(lambda: served(world, "5.ts") is not None)
    listed = world.window.listed
    assert [(s.name, s.media_sequence, s.discontinuity) for s in listed] == [
        ("1.ts", 1, False),
        ("5.ts", 2, True),
    ]
    world.origin.call(
        lambda: world.puller.assign(world.puller.upstream, world.puller.origin, live=False)
    )
    _wait(lambda: world.window.ended)
    assert world.window.playlist.body.endswith(b"#EXT-X-ENDLIST\n")


def test_a_segment_waits_for_its_signature_and_is_never_served_unsigned(world):
    data = segment_bytes(1, 50_000)
    world.origin.call(
        lambda: world.origin.window.append(
            "1.ts", data, world.origin.signer.entry(1, "1.ts", data), discontinuity=False
        )
    )
    time.sleep(0.5)  # listed upstream, not in the index yet
    assert served(world, "1.ts") is None
    world.index.entries.append(world.origin.signer.entry(1, "1.ts", data))
    _wait(lambda: served(world, "1.ts") == data)


def test_segments_that_keep_coming_while_the_coordinator_says_offline_are_kept(world):
    # A node started just before the stream went live is told "not live" until its next
    # assignment; the segments it sees meanwhile must build one window, not restart it.
    world.origin.call(
        lambda: world.puller.assign(world.puller.upstream, world.puller.origin, live=False)
    )
    for n in range(1, 4):
        world.publish(n)
        _wait(lambda n=n: served(world, f"{n}.ts") is not None)
        time.sleep(0.3)
    assert [s.name for s in world.window.listed] == ["1.ts", "2.ts", "3.ts"]
    assert not world.window.ended
