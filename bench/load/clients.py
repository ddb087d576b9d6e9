"""The simulated clients of the load benchmark (bench/load/run.py): one generator process.

A generator process gets a share of the nodes and viewers and sends, open-loop, on a schedule
fixed before the run:

* every node's heartbeat every ``interval_s`` (the coordinator's ``heartbeat_interval_s``), each
  node at its own random phase and each beat moved by up to ``jitter_s`` either way, with the
  node's own token, the body a real node sends;
* viewers: each opens a session (``POST /api/v1/streams/<name>/sessions``), watches for an
  exponentially distributed time (mean ``watch_mean_s``), sends a receipt batch every
  ``receipts_every_s`` naming the node it watches through (the segments of that interval, 2 s
  each, as the watch page does), optionally asks for its sources every ``sources_every_s``, and
  leaves; a new viewer takes its place at once, so the number watching stays constant.

HTTP is a small HTTP/1.1 client over keep-alive connections (asyncio protocols, httptools'
parser, uvloop), because a general client (httpx) costs about ten times the CPU per request, and
on a machine of two cores the generator must not become what is measured. Each request's
lateness (written to the socket after its due time) and latency (written to complete answer)
are kept for those due inside the measured window, with the answer's status or the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

HEARTBEAT_BODY = {
    "connections": 3,
    "egress_bps": 4_000_000,
    "egress_cap_bps": 20_000_000,
    "version": "0.1.0",
    "public_url": "http://198.51.100.7:8080",
}
SEGMENT_S = 2.0  # the ingest's segment duration: a receipt per segment
SEGMENT_BYTES = 625_000  # 2 s at 2.5 Mbit/s
REQUEST_TIMEOUT_S = 30.0
DRAIN_S = 15.0  # after the window, how long answers to requests due inside it may take


@dataclass
class Plan:
    """What one generator process sends (picklable: it crosses to a spawned process)."""

    host: str
    port: int
    nodes: list[tuple[str, str]]  # (node id, node token)
    streams: list[tuple[str, list[str]]]  # (stream name, node ids that receipts may name)
    viewers: int
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC: the same in every process)
    warmup_s: float
    seconds: float
    ramp_s: float = 0.0  # nodes' first beats spread over max(interval, ramp) seconds
    interval_s: float = 5.0
    jitter_s: float = 0.5
    watch_mean_s: float = 300.0
    receipts_every_s: float = 5.0
    sources_every_s: float = 0.0  # 0: viewers do not poll their sources
    max_connections: int = 256
    seed: int = 0

    @property
    def measure_from(self) -> float:
        return self.start_at + self.warmup_s

    @property
    def measure_to(self) -> float:
        return self.start_at + self.warmup_s + self.seconds


@dataclass
class KindStats:
    latencies_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "429", "timeout", ...
    error_bodies: list[str] = field(default_factory=list)  # a few, to say what went wrong
    # Whole run, warm-up included, by second since start_at: [2xx, other, latency sum in ms].
    timeline: dict[int, list[float]] = field(default_factory=dict)


@dataclass
class Result:
    kinds: dict[str, KindStats]
    cpu_s: float  # this process's user + system CPU during the measured window
    wall_s: float
    connections_opened: int
    sends_behind: int  # requests that waited for a free connection (max_connections reached)


# ---------------------------------------------------------------- HTTP/1.1 over keep-alive


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: _Request | None = None
        self.body = bytearray()
        self.keep_alive = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad answer: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("connection lost")
        self.pool.lost(self)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        request, self.request = self.request, None
        body, self.body = bytes(self.body), bytearray()
        self.parser = httptools.HttpResponseParser(self)
        if request is not None:
            request.finish(str(self.parser_status), body)
        if self.keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.close()

    def on_status(self, status: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        self.parser_status = self.parser.get_status_code()

    # ours
    def send(self, request: _Request) -> None:
        self.request = request
        request.written_at = time.monotonic()
        request.connection = self
        assert self.transport is not None
        self.transport.write(request.raw)

    def _fail(self, reason: str) -> None:
        request, self.request = self.request, None
        if request is not None:
            request.finish(reason, b"")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class _Request:
    __slots__ = ("callback", "connection", "done", "due", "kind", "raw", "timer", "written_at")

    def __init__(
        self,
        kind: str,
        raw: bytes,
        due: float,
        callback: Callable[[_Request, str, bytes], None],
    ) -> None:
        self.kind = kind
        self.raw = raw
        self.due = due
        self.callback = callback
        self.written_at = 0.0
        self.connection: _Connection | None = None
        self.done = False
        self.timer: asyncio.TimerHandle | None = None

    def finish(self, status: str, body: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        self.callback(self, status, body)


class Pool:
    """Keep-alive connections to one address; requests beyond ``max_connections`` queue."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.free: list[_Connection] = []
        self.open = 0
        self.opening = 0
        self.waiting: deque[_Request] = deque()
        self.opened_total = 0
        self.queued_total = 0
        self.connections: set[_Connection] = set()
        self.connecting: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()

    def submit(self, request: _Request) -> None:
        request.timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._timeout, request)
        while self.free:
            connection = self.free.pop()
            if not connection.closed:
                connection.send(request)
                return
        self.waiting.append(request)
        if self.open + self.opening < self.max_connections:
            self._open()
        else:
            self.queued_total += 1

    def _timeout(self, request: _Request) -> None:
        request.timer = None
        if request.connection is not None:
            request.connection.close()  # its answer would come on a connection we no longer use
        else:
            self.waiting.remove(request)
        request.finish("timeout", b"")

    def _open(self) -> None:
        self.opening += 1
        task = self.loop.create_task(self._connect())
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self) -> None:
        try:
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
        except OSError as exc:
            self.opening -= 1
            if self.waiting:
                self.waiting.popleft().finish(f"connect: {exc.strerror or exc}", b"")
            return
        self.opening -= 1
        self.open += 1
        self.opened_total += 1
        self.connections.add(connection)
        self.release(connection)

    def release(self, connection: _Connection) -> None:
        if self.waiting:
            connection.send(self.waiting.popleft())
        else:
            self.free.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.open -= 1
        if connection in self.free:
            self.free.remove(connection)
        self.connections.discard(connection)
        if self.waiting and self.open + self.opening < self.max_connections:
            self._open()

    def close(self, reason: str) -> None:
        """Stop: every request still waiting or in flight is finished with ``reason``."""
        for task in self.connecting:
            task.cancel()
        while self.waiting:
            self.waiting.popleft().finish(reason, b"")
        for connection in list(self.connections):
            if connection.request is not None:
                connection.request.finish(reason, b"")
            connection.close()


def build_request(
    method: str, host: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


# ---------------------------------------------------------------- the generator


class Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.kinds: dict[str, KindStats] = {}
        self.pool = Pool(plan.host, plan.port, plan.max_connections)
        self.host = f"{plan.host}:{plan.port}"
        self.outstanding = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = False

    # -- sending and recording

    def send(
        self,
        kind: str,
        raw: bytes,
        due: float,
        then: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.outstanding += 1
        self.idle.clear()
        self.pool.submit(_Request(kind, raw, due, self._make_callback(then)))

    def _make_callback(
        self, then: Callable[[str, bytes], None] | None
    ) -> Callable[[_Request, str, bytes], None]:
        def done(request: _Request, status: str, body: bytes) -> None:
            now = time.monotonic()
            plan = self.plan
            stats = self.kinds.setdefault(request.kind, KindStats())
            second = self.timeline_second(request.due)
            bucket = stats.timeline.setdefault(second, [0, 0, 0.0])
            bucket[0 if status.startswith("2") else 1] += 1
            if request.written_at:
                bucket[2] += (now - request.written_at) * 1000
            if plan.measure_from <= request.due < plan.measure_to:
                stats.statuses[status] += 1
                if request.written_at:
                    stats.latencies_ms.append((now - request.written_at) * 1000)
                    stats.lateness_ms.append((request.written_at - request.due) * 1000)
                if not status.startswith("2") and len(stats.error_bodies) < 5:
                    text = " ".join(body[:400].decode(errors="replace").split())[:200]
                    line = f"{status}: {text or '(no body)'}"
                    if line not in stats.error_bodies:
                        stats.error_bodies.append(line)
            self.outstanding -= 1
            if self.outstanding == 0:
                self.idle.set()
            if then is not None:
                then(status, body)

        return done

    def timeline_second(self, due: float) -> int:
        return int(due - self.plan.start_at)

    async def request(self, kind: str, raw: bytes, due: float) -> tuple[str, bytes]:
        future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()

        def then(status: str, body: bytes) -> None:
            if not future.done():
                future.set_result((status, body))

        self.send(kind, raw, due, then)
        return await future

    async def sleep_until(self, due: float) -> None:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- heartbeats: one timer per beat, no task

    def start_heartbeats(self) -> None:
        plan = self.plan
        body = json.dumps(HEARTBEAT_BODY, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        offset = loop.time() - time.monotonic()  # the loop's clock against time.monotonic()
        for node_id, token in plan.nodes:
            raw = build_request(
                "POST",
                self.host,
                f"/api/v1/nodes/{node_id}/heartbeat",
                {"Authorization": f"Bearer {token}"},
                body,
            )
            phase = self.rng.uniform(0, max(plan.interval_s, plan.ramp_s))
            self._schedule_beat(loop, offset, raw, plan.start_at + phase, 0)

    def _schedule_beat(
        self, loop: asyncio.AbstractEventLoop, offset: float, raw: bytes, base: float, k: int
    ) -> None:
        plan = self.plan
        due = base + k * plan.interval_s + self.rng.uniform(-plan.jitter_s, plan.jitter_s)
        if k == 0:
            due = max(due, plan.start_at)
        if due >= plan.measure_to:
            return

        def fire() -> None:
            if not self.stopping:
                self.send("heartbeat", raw, due)
                self._schedule_beat(loop, offset, raw, base, k + 1)

        loop.call_at(due + offset, fire)

    # -- viewers: a task each

    async def viewer_slot(self, number: int) -> None:
        plan = self.plan
        # Sessions open spread over the first half of the warm-up, not all at once.
        due = plan.start_at + self.rng.uniform(0, max(0.1, plan.warmup_s / 2))
        name, node_ids = plan.streams[number % len(plan.streams)]
        while due < plan.measure_to and not self.stopping:
            await self.sleep_until(due)
            status, body = await self.request(
                "session open",
                build_request("POST", self.host, f"/api/v1/streams/{name}/sessions", {}, b""),
                due,
            )
            if status != "201":
                due += plan.receipts_every_s  # the page would try again a little later
                continue
            session = json.loads(body)
            leaves = due + self.rng.expovariate(1 / plan.watch_mean_s)
            await self.watch(session, node_ids, due, min(leaves, plan.measure_to))
            due = leaves

    async def watch(
        self, session: dict[str, Any], node_ids: list[str], opened: float, leaves: float
    ) -> None:
        plan = self.plan
        first = session["sources"][0]
        # The node this viewer watches through: its first source if that is a node; otherwise
        # (no reachable node on this machine: simulated nodes serve nothing) one of the stream's
        # nodes, so that receipts name nodes as they would in production.
        node_id = first["node_id"] or (self.rng.choice(node_ids) if node_ids else None)
        headers = {"X-Streamr-Session": session["token"]}
        receipts_path = f"/api/v1/sessions/{session['session_id']}/receipts"
        sources_path = f"/api/v1/sessions/{session['session_id']}/sources"
        sources_raw = build_request("GET", self.host, sources_path, headers)
        polls = []
        if plan.sources_every_s > 0:
            polls.append(asyncio.create_task(self._poll_sources(sources_raw, opened, leaves)))
        sequence = self.rng.randrange(1_000, 1_000_000)
        carry = 0.0
        due = opened + plan.receipts_every_s
        try:
            while due <= leaves and not self.stopping:
                await self.sleep_until(due)
                carry += plan.receipts_every_s / SEGMENT_S
                count, carry = int(carry), carry - int(carry)
                receipts = []
                for _ in range(max(1, count)):
                    sequence += 1
                    receipts.append(
                        {
                            "source_kind": "node" if node_id else "origin",
                            "node_id": node_id,
                            "segment": f"seg-{sequence}.ts",
                            "sequence": sequence,
                            "bytes": SEGMENT_BYTES,
                            "ttfb_ms": self.rng.randint(5, 60),
                            "download_ms": self.rng.randint(80, 400),
                            "outcome": "ok",
                        }
                    )
                batch = {"batch_id": uuid.uuid4().hex, "receipts": receipts}
                body = json.dumps(batch, separators=(",", ":")).encode()
                self.send(
                    "receipts", build_request("POST", self.host, receipts_path, headers, body), due
                )
                due += plan.receipts_every_s
        finally:
            for task in polls:
                task.cancel()

    async def _poll_sources(self, raw: bytes, opened: float, leaves: float) -> None:
        due = opened + self.rng.uniform(0, self.plan.sources_every_s)
        while due <= leaves:
            await self.sleep_until(due)
            self.send("sources", raw, due)
            due += self.plan.sources_every_s

    # -- the run

    async def run(self) -> Result:
        plan = self.plan
        await self.sleep_until(plan.start_at - 0.05)
        self.start_heartbeats()
        viewers = [asyncio.create_task(self.viewer_slot(n)) for n in range(plan.viewers)]
        await self.sleep_until(plan.measure_from)
        cpu_before, wall_before = _cpu_s(), time.monotonic()
        await self.sleep_until(plan.measure_to)
        cpu_after, wall_after = _cpu_s(), time.monotonic()
        self.stopping = True
        for task in viewers:
            task.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
        # Answers to requests due inside the window still count; anything later is a timeout.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), DRAIN_S)
        # Due inside the window but never answered (still queued or in flight): errors too.
        self.pool.close("no answer by the end")
        return Result(
            kinds=self.kinds,
            cpu_s=cpu_after - cpu_before,
            wall_s=wall_after - wall_before,
            connections_opened=self.pool.opened_total,
            sends_behind=self.pool.queued_total,
        )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generate(plan: Plan, results: Any) -> None:
    """A generator process's entry point: run the plan, put the Result (or the error) on
    ``results`` (a multiprocessing queue)."""
    try:
        import uvloop

        async def main() -> Result:
            return await Generator(plan).run()

        result = uvloop.run(main())
        results.put((os.getpid(), result))
    except BaseException as exc:  # the parent must hear of any failure, not wait forever
        results.put((os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise
