"""Reconciliation: tell the coordinator which streams nginx-rtmp is really publishing.

Publish hooks can be lost (the coordinator restarts, nginx is killed, a network blip), which
would leave a stream LIVE with nobody sending it, or OFFLINE while it plays. So the ingest
periodically reads nginx-rtmp's statistics (``rtmp_stat``, on the loopback-only hook server)
and posts the names its HLS application is publishing; the coordinator makes the states match.
Only the ``hls`` application is read: stream names in ``live`` are stream keys.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET

import httpx

from .coordinator_client import CoordinatorClient, CoordinatorRefused, CoordinatorUnavailable

log = logging.getLogger("streamr.ingest.reconcile")

HLS_APPLICATION = "hls"


class StatUnavailable(Exception):
    """nginx's rtmp_stat could not be read or understood."""


def publishing_streams(stat_xml: str, application: str = HLS_APPLICATION) -> list[str]:
    """Names of the streams with an active publisher in ``application``, sorted."""
    try:
        root = ET.fromstring(stat_xml)  # noqa: S314 - trusted: our own nginx, over loopback
    except ET.ParseError as exc:
        raise StatUnavailable(f"rtmp_stat is not XML: {exc}") from exc
    names = set()
    for app in root.iterfind("./server/application"):
        if (app.findtext("name") or "").strip() != application:
            continue
        for stream in app.iterfind("./live/stream"):
            name = (stream.findtext("name") or "").strip()
            if name and stream.find("publishing") is not None:
                names.add(name)
    return sorted(names)


class Reconciler:
    def __init__(self, stat_url: str, client: CoordinatorClient, interval_s: float = 5.0) -> None:
        self.stat_url = stat_url
        self.client = client
        self.interval_s = interval_s
        self._http = httpx.AsyncClient(timeout=5.0, trust_env=False)  # loopback: no proxy
        self._failing = False
        self._synced_once = False

    async def close(self) -> None:
        await self._http.aclose()

    async def read_stat(self) -> list[str]:
        try:
            response = await self._http.get(self.stat_url)
        except httpx.HTTPError as exc:
            raise StatUnavailable(f"cannot read {self.stat_url}: {exc!r}") from exc
        if response.status_code != 200:
            raise StatUnavailable(f"{self.stat_url} answered {response.status_code}")
        return publishing_streams(response.text)

    async def sync_once(self) -> list[str] | None:
        """Read rtmp_stat and post it; the streams whose state changed, or None on failure."""
        try:
            publishing = await self.read_stat()
            # The first sync after nginx started is complete: a stream marked LIVE moments
            # before a crash cannot still be publishing through a fresh nginx.
            result = await self.client.sync(publishing, complete=not self._synced_once)
        except (StatUnavailable, CoordinatorUnavailable, CoordinatorRefused) as exc:
            if not self._failing:
                self._failing = True
                log.warning("reconciliation failed; will retry", extra={"reason": str(exc)})
            return None
        self._synced_once = True
        if self._failing:
            self._failing = False
            log.info("reconciliation works again")
        if result.changed:
            log.info(
                "coordinator states reconciled",
                extra={"publishing": publishing, "changed": result.changed},
            )
        return result.changed

    async def run(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self.interval_s)

    async def nothing_publishing(self) -> None:
        """Said once when the ingest stops: with nginx gone, nothing is on air any more."""
        try:
            result = await self.client.sync([], complete=True)
        except (CoordinatorUnavailable, CoordinatorRefused) as exc:
            log.warning(
                "could not tell the coordinator that publishing stopped",
                extra={"reason": str(exc)},
            )
            return
        if result.changed:
            log.info("streams set OFFLINE at shutdown", extra={"changed": result.changed})
