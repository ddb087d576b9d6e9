"""A running node: the server, the puller, and the conversations with the coordinator.

Start-up asks the coordinator what to relay and from where, opens the port, checks from
outside that viewers can reach it, and then keeps four loops going: pulling, heartbeats (with
load), the assignment (which may move the node in the tree or end the stream), and usage
reports. Shutdown stops taking viewers, lets responses in flight finish, sends the last usage
report and leaves routing, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any

import httpx

from streamr_protocol.attestation import public_key_from
from streamr_protocol.nodes import Assignment, Heartbeat, Reachability
from streamr_protocol.usage import IntegrityFailure

from . import __version__
from .accounting import UsageLedger
from .config import ConfigError, NodeConfig
from .coordinator_client import CoordinatorClient, CoordinatorError
from .http import HttpServer
from .meter import RateMeter
from .puller import Puller
from .server import CORS_HEADERS, NodeApp
from .sessions import SessionVerifier
from .window import SegmentWindow

log = logging.getLogger("streamr_node")

SHUTDOWN_GRACE_S = 5.0
REACHABILITY_RECHECK_S = 300.0


class NodeStopped(Exception):
    """The node cannot go on (for example, its token was revoked); the message says why."""


class Node:
    def __init__(self, config: NodeConfig) -> None:
        config.require_joined()
        self.config = config
        assert config.node_id and config.node_token and config.coordinator_url
        self.node_id = config.node_id
        self._token = config.node_token.get_secret_value()
        self.client = CoordinatorClient(str(config.coordinator_url))
        self.started = time.monotonic()
        self.state = "starting"
        self.port: int | None = None
        self.public_url: str | None = None
        self.reachability: Reachability | None = None
        self.assignment: Assignment | None = None
        self.reports = {"sent": 0, "duplicates": 0, "failed_attempts": 0, "last_ack_at": None}
        self.heartbeats = {"sent": 0, "failed": 0, "last_ok_at": None}
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        assignment = await self._first_assignment(stop)
        if assignment is None:
            return
        self.assignment = assignment
        stream = assignment.stream
        key = public_key_from(assignment.attestation_key)
        self.window = SegmentWindow(
            stream, list_size=self.config.list_size, keep_extra=self.config.keep_extra
        )
        verifier = SessionVerifier(stream)
        verifier.set_key(assignment.attestation_key.key_id, key)
        self.ledger = UsageLedger(self.config.data_dir / "spool", stream)
        self.meter = RateMeter()
        self.app = NodeApp(
            stream=stream,
            window=self.window,
            verifier=verifier,
            ledger=self.ledger,
            meter=self.meter,
            egress_cap_bps=self.config.egress_cap_bps,
            health=self.health,
            stats=self.stats,
        )
        self.server = HttpServer(
            self.app, server_name=f"streamr-node/{__version__}", base_headers=CORS_HEADERS
        )
        try:
            self.port = await self.server.start(self.config.host, self.config.port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror}); "
                "choose another port with --port"
            ) from None
        self.public_url = self._public_url()
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": f"streamr-node/{__version__}"},
        )
        self.puller = Puller(
            stream=stream,
            window=self.window,
            http=self._http,
            coordinator_url=str(self.config.coordinator_url),
            key=key,
            upstream=assignment.upstream,
            origin=assignment.origin,
            playlist_path=assignment.playlist_path,
            report_integrity_failure=self._integrity_failure,
            max_fetches=self.config.max_fetches,
            poll_interval_s=self.config.poll_interval_s,
        )
        self.puller.assign(assignment.upstream, assignment.origin, live=assignment.live)
        self.state = "ok"
        log.info(
            "node serving",
            extra={
                "node_id": self.node_id,
                "stream": stream,
                "port": self.port,
                "public_url": self.public_url,
                "upstream": assignment.upstream.kind,
            },
        )
        self.ready.set()
        tasks = [
            asyncio.create_task(self.puller.run(), name="puller"),
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._assignments(), name="assignments"),
            asyncio.create_task(self._reports(), name="reports"),
            asyncio.create_task(self._reachability(), name="reachability"),
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stopped.cancel()
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        self.state = "draining"
        self.app.draining = True
        log.info("node stopping: no new viewers", extra={"node_id": self.node_id})
        await self.server.drain(SHUTDOWN_GRACE_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._flush_reports(deadline_s=SHUTDOWN_GRACE_S)
        with contextlib.suppress(CoordinatorError, httpx.HTTPError):
            await self.client.leave(self.node_id, self._token)
        await self.server.close()
        await self._http.aclose()
        await self.client.close()
        log.info("node stopped", extra={"node_id": self.node_id})

    async def _first_assignment(self, stop: asyncio.Event) -> Assignment | None:
        delay = 1.0
        while not stop.is_set():
            try:
                return await self.client.assignment(self.node_id, self._token)
            except CoordinatorError as exc:
                if exc.status in (401, 403, 404):
                    raise NodeStopped(
                        f"the coordinator refused this node ({exc}); "
                        "join again with a new invite: streamr-node join URL --invite CODE"
                    ) from None
                log.warning("coordinator unavailable; retrying", extra={"error": str(exc)})
            except httpx.HTTPError as exc:
                log.warning(
                    "coordinator unreachable; retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": delay},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
        return None

    def _public_url(self) -> str | None:
        if self.config.public_url is not None:
            return str(self.config.public_url).rstrip("/")
        host = self.config.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                return f"http://{host}:{self.port}"
        if host == "localhost":
            return f"http://127.0.0.1:{self.port}"
        return None  # only the friend knows the address the internet sees; see reachability

    # ------------------------------------------------------------------ loops

    async def _heartbeats(self) -> None:
        interval = 5.0
        while True:
            beat = Heartbeat(
                connections=len(self.server.connections),
                egress_bps=self.meter.bits_per_second(),
                egress_cap_bps=self.config.egress_cap_bps,
                version=__version__,
                public_url=self.public_url,
            )
            try:
                ack = await self.client.heartbeat(self.node_id, self._token, beat)
                interval = ack.next_heartbeat_s
                self.heartbeats["sent"] += 1
                self.heartbeats["last_ok_at"] = time.time()
            except CoordinatorError as exc:
                self.heartbeats["failed"] += 1
                if exc.status in (401, 403):
                    raise NodeStopped(
                        f"the coordinator no longer accepts this node's token ({exc}); "
                        "join again: streamr-node join URL --invite CODE"
                    ) from None
                log.warning("heartbeat refused", extra={"error": str(exc)})
            except httpx.HTTPError as exc:
                self.heartbeats["failed"] += 1
                log.warning("heartbeat failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval)

    async def _assignments(self) -> None:
        while True:
            assert self.assignment is not None
            await asyncio.sleep(self.assignment.refresh_s)
            try:
                assignment = await self.client.assignment(self.node_id, self._token)
            except (CoordinatorError, httpx.HTTPError) as exc:
                log.warning("assignment refresh failed", extra={"error": str(exc)[:200]})
                continue
            self.assignment = assignment
            self.puller.assign(assignment.upstream, assignment.origin, live=assignment.live)

    async def _reports(self) -> None:
        while True:
            assert self.assignment is not None
            await asyncio.sleep(self.assignment.report_interval_s)
            self.ledger.cut()
            await self._send_pending()

    async def _send_pending(self) -> bool:
        """Send every unacknowledged report, oldest first; False when one could not be sent."""
        for report in self.ledger.pending():
            try:
                ack = await self.client.report_usage(self.node_id, self._token, report)
            except CoordinatorError as exc:
                if 400 <= exc.status < 500 and exc.status not in (401, 403, 408, 429):
                    self.ledger.rejected(report.report_id, str(exc))
                    continue
                self.reports["failed_attempts"] += 1
                return False
            except httpx.HTTPError:
                self.reports["failed_attempts"] += 1
                return False
            self.ledger.acknowledged(report.report_id)
            self.reports["sent"] += 1
            self.reports["duplicates"] += ack.duplicate
            self.reports["last_ack_at"] = time.time()
        return True

    async def _flush_reports(self, deadline_s: float) -> None:
        self.ledger.cut()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                await self._send_pending()
        left = self.ledger.pending_count()
        if left:
            log.warning(
                "usage reports kept on disk; they are sent at the next start",
                extra={"pending": left},
            )

    async def _reachability(self) -> None:
        while True:
            try:
                verdict = await self.client.check_reachability(
                    self.node_id, self._token, self.public_url
                )
            except (CoordinatorError, httpx.HTTPError) as exc:
                log.warning("reachability check failed", extra={"error": str(exc)[:200]})
                await asyncio.sleep(60)
                continue
            changed = self.reachability is None or self.reachability.status != verdict.status
            self.reachability = verdict
            if verdict.reachable:
                if changed:
                    log.info("viewers can reach this node", extra={"url": verdict.checked_url})
                await asyncio.sleep(REACHABILITY_RECHECK_S)
            else:
                log.warning(
                    "viewers cannot reach this node: "
                    + verdict.detail
                    + " To fix: "
                    + " ".join(verdict.advice),
                    extra={"status": verdict.status, "url": verdict.checked_url},
                )
                await asyncio.sleep(60)

    def _integrity_failure(self, failure: IntegrityFailure) -> None:
        self.ledger.integrity_failure(failure)

    # ------------------------------------------------------------------ status

    def health(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "node_id": self.node_id,
            "stream": self.window.stream,
            "version": __version__,
            "segments": len(self.window.segments),
        }

    def stats(self) -> dict[str, Any]:
        window = self.window
        listed = window.listed
        puller = self.puller.stats
        upstream = self.puller.current
        return {
            "node_id": self.node_id,
            "stream": window.stream,
            "version": __version__,
            "state": self.state,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "public_url": self.public_url,
            "reachability": self.reachability.model_dump(mode="json")
            if self.reachability
            else None,
            "upstream": {
                "kind": upstream.kind,
                "base_url": upstream.base_url,
                "node_id": upstream.node_id,
            },
            "window": {
                "segments": len(window.segments),
                "listed": len(listed),
                "media_sequence": listed[0].media_sequence if listed else None,
                "newest_signed_sequence": window.newest_signed_sequence,
                "target_duration_s": window.target_duration_s,
                "bytes": window.bytes_held,
                "ended": window.ended,
                "recent": puller.recent[-10:],
            },
            "viewers": {
                "connections": len(self.server.connections),
                "active_sessions": self.app.active_viewers(),
            },
            "bytes": {
                "served_to_sessions": self.ledger.totals["attributed_bytes"],
                "served_unattributed": self.ledger.totals["unattributed_bytes"],
                "segments_to_sessions": self.ledger.totals["segments"],
                "egress_bps": self.meter.bits_per_second(),
                "egress_cap_bps": self.config.egress_cap_bps,
                "fetched_from_upstream": puller.bytes_fetched,
            },
            "requests": {
                "total": self.server.requests_total,
                "by_status": {
                    str(k): v for k, v in sorted(self.server.responses_by_status.items())
                },
                "refused_over_cap": self.app.refused_over_cap,
                "refused_sessions": self.app.refused_sessions,
            },
            "errors": {
                "upstream_fetch": puller.fetch_errors,
                "integrity": puller.integrity_failures,
                "unattested_skipped": puller.unattested_skipped,
                "refetched_from_origin": puller.refetched_from_origin,
                "last": puller.last_error,
            },
            "reports": {**self.reports, "pending": self.ledger.pending_count()},
            "heartbeats": self.heartbeats,
        }
