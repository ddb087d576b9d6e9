"""Runs the ingest: nginx (RTMP + HLS origin), the origin watcher and the reconciler together.

Start-up is checked step by step so that a problem is one readable line before anything runs:
the secret, the ports, the rendered configuration (``nginx -t``), then nginx itself. After that,
SIGINT or SIGTERM stops everything in order — nginx first, then the last segments are reported,
then the coordinator is told that nothing is publishing any more. If nginx or a task dies on its
own, that is reported in one line and the ingest exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from .config import IngestSettings
from .coordinator_client import CoordinatorClient
from .nginx import NginxProcess, check_config, check_ports, write_config
from .reconcile import Reconciler
from .watcher import OriginWatcher, SegmentRegistrar

log = logging.getLogger("streamr.ingest")

FLUSH_TIMEOUT_S = 5.0


class IngestFailure(Exception):
    """The ingest stopped because a part of it died; the message says which and why."""


def prepare(settings: IngestSettings) -> str:
    """Everything that can be checked before starting: returns the ingest secret."""
    secret = settings.resolve_secret()
    check_ports(settings)
    write_config(settings, secret)
    check_config(settings)
    if os.geteuid() == 0:
        log.warning(
            "running as root: nginx's workers run as root too; run the ingest as an ordinary "
            "user in production (its ports need no privileges)"
        )
    return secret


async def run(settings: IngestSettings) -> None:
    """Run until SIGINT/SIGTERM (returns) or until a part dies (raises IngestFailure)."""
    secret = prepare(settings)
    nginx = NginxProcess(settings)
    client = CoordinatorClient(settings.coordinator_url, secret)
    registrar = SegmentRegistrar(client)
    watcher = OriginWatcher(
        settings.hls_dir,
        registrar,
        poll_interval_s=settings.poll_interval_s,
        retention_s=settings.retention_s,
    )
    reconciler = Reconciler(settings.stat_url, client, settings.reconcile_interval_s)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    tasks: dict[asyncio.Task, str] = {}
    started = False
    try:
        await nginx.start()
        started = True
        log.info(
            "ingest running",
            extra={
                "obs_server": settings.rtmp_url,
                "origin": f"{settings.origin_url}/hls/",
                "coordinator": settings.coordinator_url,
            },
        )
        tasks = {
            asyncio.create_task(nginx.wait(), name="nginx"): "nginx",
            asyncio.create_task(registrar.run(), name="registrar"): "segment registrar",
            asyncio.create_task(watcher.run(), name="watcher"): "origin watcher",
            asyncio.create_task(reconciler.run(), name="reconciler"): "reconciler",
            asyncio.create_task(stop.wait(), name="stop"): "stop",
        }
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finished = done.pop()
        if tasks[finished] != "stop":
            raise IngestFailure(_death(tasks[finished], finished, nginx))
        log.info("stopping", extra={"signal": received[0] if received else None})
    finally:
        for task, name in tasks.items():
            if name != "segment registrar":  # it keeps sending until drained, below
                task.cancel()
        await nginx.stop()
        try:
            await watcher.scan()  # segments nginx closed while stopping
        except OSError as exc:
            log.warning("last scan of the HLS directory failed", extra={"reason": str(exc)})
        if not await registrar.drained(FLUSH_TIMEOUT_S):
            log.warning(
                "segment reports not sent before exit", extra={"pending": registrar.pending}
            )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if started:
            await reconciler.nothing_publishing()
        await reconciler.close()
        await client.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("ingest stopped")


def _death(name: str, task: asyncio.Task, nginx: NginxProcess) -> str:
    if name == "nginx":
        status = task.result()
        reason = f" ({nginx.last_complaint})" if nginx.last_complaint else ""
        return f"nginx exited unexpectedly with status {status}{reason}; the ingest stopped"
    error = task.exception()
    log.error(f"the {name} failed", exc_info=error)
    return f"the {name} failed: {error!r}; the ingest stopped"
