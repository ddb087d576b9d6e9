"""``streamr demo``: the whole local network on one machine, on the embedded defaults.

It runs the coordinator (in this process, with the worker's jobs), the ingest (nginx-rtmp,
origin watcher, reconciler) as a child process sharing the data directory, friend nodes
(``streamr-node run``, three by default) relaying the demo stream, and, unless told not to, an
ffmpeg test card publishing to the demo stream so that there is live video to look at straight
away. A one-line summary of the network is printed every few seconds. Everything stops together
on Ctrl-C; if a child dies, the demo says so in one line and stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .settings import Settings

DEMO_EMAIL = "demo@example.com"
DEMO_FRIEND_EMAIL = "friend@example.com"
DEMO_STREAM = "demo"
SUMMARY_EVERY_S = 10.0


@dataclass
class DemoStream:
    name: str
    key: str
    password: str  # the demo streamer's, new at every start
    friend_password: str | None = None  # the demo friend's (owner of the nodes), likewise


async def prepare_demo_stream(
    settings: Settings, node_dirs: list[Any], coordinator_url: str
) -> DemoStream:
    """The demo streamer and stream, created on first use, and ``node_dirs`` joined to it with
    ``coordinator_url`` as their coordinator. The stream key is stored only as a hash, so each
    start rotates it and shows the new one. (``streamr cluster`` prepares its stream so too.)"""
    from sqlalchemy import select

    from .accounts.models import Role
    from .context import AppContext
    from .streams.models import Stream
    from .streams.service import create_stream, rotate_key

    ctx = AppContext.from_settings(settings)
    try:
        async with ctx.sessions() as session:
            owner, password = await _demo_account(
                session, DEMO_EMAIL, "Demo streamer", Role.STREAMER
            )
            stream = await session.scalar(select(Stream).where(Stream.name == DEMO_STREAM))
            if stream is None:
                stream, key = await create_stream(
                    session, owner, DEMO_STREAM, "StreamrP2P demo", "A test card", is_test=False
                )
            else:
                key = await rotate_key(session, stream)
            demo = DemoStream(name=stream.name, key=key, password=password)
            if node_dirs:
                demo.friend_password = await _join_demo_nodes(
                    ctx, session, stream, node_dirs, coordinator_url
                )
            return demo
    finally:
        await ctx.close()


async def _demo_account(session: Any, email: str, name: str, role: Any) -> tuple[Any, str]:
    """A demo account with a fresh password: like the stream key, it is stored only as a hash,
    so every demo start sets a new one and shows it."""
    import secrets

    from .accounts.passwords import hash_password
    from .accounts.service import create_account, find_by_email

    password = secrets.token_urlsafe(12)
    account = await find_by_email(session, email)
    if account is None:
        return await create_account(session, email, password, name, role), password
    account.password_hash = await hash_password(password)
    await session.commit()
    return account, password


async def _join_demo_nodes(
    ctx: Any, session: Any, stream: Any, node_dirs: list[Any], base: str
) -> str | None:
    """Each demo node joins the demo stream once, as ``streamr-node join`` would: an invite, a
    registration owned by the demo friend, and the node's settings file with its token."""

    from streamr_node.config import NodeConfig, load, save
    from streamr_protocol.nodes import NodeRegistration

    from .accounts.models import Account, Role
    from .invites.service import create_invite
    from .nodes.models import Node
    from .nodes.service import register_node

    friend, password = await _demo_account(session, DEMO_FRIEND_EMAIL, "Demo friend", Role.FRIEND)
    for number, node_dir in enumerate(node_dirs, start=1):
        existing = load(node_dir, environ={})
        if existing.joined:
            node = await session.get(Node, existing.node_id)
            if node is not None and node.deregistered_at is None and node.stream_id == stream.id:
                if str(existing.coordinator_url).rstrip("/") != base:
                    existing.coordinator_url = base  # type: ignore[assignment]
                    save(existing)
                continue
        owner = await session.get(Account, stream.owner_id)
        _invite, code = await create_invite(session, stream, owner, "demo node", 3600, 1)
        name = f"demo-node-{number}"
        credentials = await register_node(
            ctx, session, friend, NodeRegistration(invite_code=code, name=name)
        )
        save(
            NodeConfig(
                data_dir=node_dir,
                coordinator_url=base,
                node_id=credentials.node_id,
                node_token=credentials.node_token,
                stream=credentials.stream,
                name=name,
                host="127.0.0.1",
            )
        )
    return password


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["STREAMR_DATA_DIR"] = str(settings.data_dir)
    env["STREAMR_INGEST_COORDINATOR_URL"] = f"http://{settings.host}:{settings.port}"
    return env


def _watch(
    process: subprocess.Popen[Any], what: str, stopping: threading.Event, essential: bool
) -> None:
    """Stop the demo if a child it depends on dies. A friend node is not one: friends' nodes
    come and go, and viewers move to the others, which is what the demo is there to show."""
    status = process.wait()
    if stopping.is_set():
        return
    if essential:
        print(f"streamr demo: {what} exited with status {status}; stopping", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)
    else:
        print(
            f"streamr demo: friend {what} exited with status {status}; the others carry on",
            file=sys.stderr,
            flush=True,
        )


def _wait_for_ingest(ingest: subprocess.Popen[Any], rtmp_url: str, timeout_s: float = 60) -> None:
    """Publishing before nginx listens would only be refused: wait for the RTMP port."""
    parsed = urlsplit(rtmp_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ingest.poll() is not None:
            raise DemoError(f"the ingest exited with status {ingest.returncode} while starting")
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 1935), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise DemoError(f"the ingest did not listen on {parsed.hostname}:{parsed.port} in time")


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: its nodes run on this machine, so their loopback URLs are accepted,
    and nodes and viewers are sent to the demo's own origin. Either can still be set explicitly."""
    chosen = settings.model_fields_set
    update: dict[str, Any] = {}
    if "allow_private_node_urls" not in chosen:
        update["allow_private_node_urls"] = True
    # The worker's jobs (presence, node stats, probes, reconciliation, payouts, timers,
    # retention) run inside the demo's coordinator: one process, in-process presence.
    update["run_background_jobs"] = True
    if "stats_interval_s" not in chosen:
        update["stats_interval_s"] = 15.0
    if "rollup_interval_s" not in chosen:
        update["rollup_interval_s"] = 60.0
    if "origin_url" not in chosen:
        port = os.environ.get("STREAMR_INGEST_HTTP_PORT", "8080")
        update["origin_url"] = f"http://127.0.0.1:{port}"
    return settings.model_copy(update=update)


class DemoError(Exception):
    """The demo could not start; the message says why."""


def ingest_command() -> list[str]:
    """The ingest (nginx-rtmp, origin watcher, reconciler); settings from STREAMR_INGEST_*."""
    return [sys.executable, "-m", "streamr_ingest"]


def test_card_command(stream: str, rtmp_url: str) -> list[str]:
    """An ffmpeg test card publishing to ``stream`` like OBS; the key is read from stdin."""
    return [
        sys.executable,
        "-m",
        "streamr_ingest",
        "push-test",
        stream,
        "--key",
        "-",
        "--rtmp",
        rtmp_url,
        "--size",
        "640x360",
    ]


def node_command(node_dir: Any, port: int) -> list[str]:
    """``streamr-node run`` for a node joined by ``prepare_demo_stream`` (its settings file in
    ``node_dir``); port 0 is any free port."""
    return [
        sys.executable,
        "-m",
        "streamr_node",
        "run",
        "--log-format",
        "json",
        "--data-dir",
        str(node_dir),
        "--port",
        str(port),
    ]


def node_env(env: dict[str, str]) -> dict[str, str]:
    """A node's environment: its own settings file wins over anything inherited."""
    return {k: v for k, v in env.items() if not k.startswith("STREAMR_NODE_")}


def _start_node(node_dir: Any, port: int, env: dict[str, str], die_with_parent: Any) -> Any:
    """``streamr-node run`` for one demo node; its log goes to a file beside its settings."""
    log = open(node_dir / "node.log", "ab")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen(
        node_command(node_dir, port),
        env=node_env(env),
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
    )


def start_lines(
    title: str,
    base: str,
    demo: DemoStream,
    rtmp_url: str | None,
    origin_url: str | None,
    test_card: bool,
    jobs: str,
) -> list[str]:
    """What ``streamr demo`` and ``streamr cluster`` print at start: URLs and logins.
    ``rtmp_url`` and ``origin_url`` are None without an ingest."""
    lines = [
        title,
        f"  watch:         {base}/watch/{demo.name}",
        f"  dashboards:    {base}/ (live streams), {base}/dashboard/streamer, "
        f"{base}/dashboard/friend",
        f"  API docs:      {base}/docs",
        f"  worker jobs:   {jobs}; runs at {base}/api/v1/admin/jobs (admins)",
    ]
    if rtmp_url is not None:
        lines += [
            f"  OBS server:    {rtmp_url}",
            f"  demo stream:   {demo.name}, key {demo.key} (rotated at every start)",
            f"  origin HLS:    {origin_url}/hls/{demo.name}/index.m3u8",
            f"  signed index:  {base}/api/v1/streams/{demo.name}/segments",
        ]
        if test_card:
            lines.append("  a test card is publishing to the demo stream")
    return lines


def login_lines(demo: DemoStream) -> list[str]:
    lines = [f"  demo login:    {DEMO_EMAIL} / {demo.password} (streamer; new every start)"]
    if demo.friend_password:
        lines.append(
            f"  friend login:  {DEMO_FRIEND_EMAIL} / {demo.friend_password} (owns the nodes)"
        )
    return lines


async def _summary(ctx: Any, base: str, stream_name: str) -> str:
    """One line: the stream's state, its nodes, its viewers, and the friends' share of the
    bytes viewers received in the last five minutes (from the watch pages' receipts).

    Presence lives in the serving process (in-process on the embedded defaults), so node counts
    come from the public API; the rest is read from the database."""
    from datetime import timedelta

    import httpx
    from sqlalchemy import func, select

    from .database import utcnow
    from .streams.models import Stream
    from .viewers.models import Receipt, ViewerSession

    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        nodes = (await http.get(f"/api/v1/streams/{stream_name}/nodes")).json()

    since = utcnow() - timedelta(minutes=5)
    async with ctx.sessions() as session:
        stream = await session.scalar(select(Stream).where(Stream.name == stream_name))
        if stream is None:
            return f"[demo] {stream_name}: no such stream"
        viewers = await session.scalar(
            select(func.count(func.distinct(Receipt.session_id))).where(
                Receipt.stream_id == stream.id, Receipt.received_at >= since
            )
        )
        rows = await session.execute(
            select(Receipt.source_kind, func.sum(Receipt.bytes))
            .where(
                Receipt.stream_id == stream.id,
                Receipt.outcome == "ok",
                Receipt.received_at >= since,
            )
            .group_by(Receipt.source_kind)
        )
        opened = await session.scalar(
            select(func.count()).where(
                ViewerSession.stream_id == stream.id, ViewerSession.created_at >= since
            )
        )
    carried = {kind: int(total or 0) for kind, total in rows}
    total = sum(carried.values())
    share = f"{100 * carried.get('node', 0) // total} % from friends" if total else "no receipts"
    return (
        f"[demo] {stream.name}: {stream.status}; "
        f"friend nodes {nodes.get('online', 0)}/{nodes.get('registered', 0)} online; "
        f"viewers {viewers or 0} ({opened or 0} sessions opened); last 5 min: "
        f"{total / 1_000_000:.1f} MB to viewers, {share}"
    )


def _print_summaries(settings: Settings, base: str, stream: str, stopping: threading.Event) -> None:
    loop = asyncio.new_event_loop()
    ctx = loop.run_until_complete(_open_context(settings))
    try:
        while not stopping.wait(SUMMARY_EVERY_S):
            try:
                line = loop.run_until_complete(_summary(ctx, base, stream))
            except Exception as exc:  # the summary is a convenience; the demo goes on without it
                line = f"[demo] summary unavailable: {type(exc).__name__}"
            print(line, file=sys.stderr, flush=True)
    finally:
        loop.run_until_complete(ctx.close())
        loop.close()


async def _open_context(settings: Settings) -> Any:
    from .context import AppContext

    return AppContext.from_settings(settings)


def run_demo(
    settings: Settings, ingest: bool, test_card: bool, nodes: int = 3, node_port: int = 8091
) -> None:
    import uvicorn

    from streamr_ingest.nginx import die_with_parent

    from .main import create_app
    from .migrations import runner

    settings = demo_settings(settings)
    settings.prepare_data_dir()
    runner.upgrade(settings.sqlalchemy_url)
    nodes = nodes if ingest else 0  # without an origin there is nothing to relay
    node_dirs = [settings.data_dir / "demo-nodes" / f"node-{n}" for n in range(1, nodes + 1)]
    base = f"http://{settings.host}:{settings.port}"
    demo = asyncio.run(prepare_demo_stream(settings, node_dirs, base))

    children: list[tuple[subprocess.Popen[Any], str]] = []
    stopping = threading.Event()
    env = _child_env(settings)
    if ingest:
        # Children die with the demo, however it dies (killed outright included).
        ingest_process = subprocess.Popen(ingest_command(), env=env, preexec_fn=die_with_parent)
        children.append((ingest_process, "the ingest"))
        if test_card:
            _wait_for_ingest(children[0][0], settings.ingest_rtmp_url)
            card = subprocess.Popen(
                test_card_command(demo.name, settings.ingest_rtmp_url),
                env=env,
                stdin=subprocess.PIPE,
                text=True,
                preexec_fn=die_with_parent,
            )
            assert card.stdin is not None
            card.stdin.write(demo.key + "\n")  # stdin, so the key stays out of process listings
            card.stdin.close()
            children.append((card, "the test card"))
    for number, node_dir in enumerate(node_dirs):
        port = node_port + number if node_port else 0
        children.append((_start_node(node_dir, port, env, die_with_parent), node_dir.name))
    for process, what in children:
        essential = not what.startswith("node-")
        threading.Thread(
            target=_watch, args=(process, what, stopping, essential), daemon=True
        ).start()
    if ingest:
        threading.Thread(
            target=_print_summaries, args=(settings, base, demo.name, stopping), daemon=True
        ).start()

    lines = start_lines(
        f"StreamrP2P demo: coordinator on {base}",
        base,
        demo,
        settings.ingest_rtmp_url if ingest else None,
        settings.origin_url,
        test_card and ingest,
        "in this process",
    )
    if ingest and test_card:
        lines[-1] += " (--no-test-card to skip)"
    for number, node_dir in enumerate(node_dirs):
        where = f"http://127.0.0.1:{node_port + number}" if node_port else "a free port"
        lines.append(f"  friend node:   {node_dir.name} on {where} (log: {node_dir / 'node.log'})")
    lines += login_lines(demo)
    lines.append("  Stop with Ctrl-C.")
    print("\n".join(lines), file=sys.stderr, flush=True)

    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    finally:
        stopping.set()
        for process, _ in reversed(children):
            if process.poll() is None:
                process.terminate()
        for process, _ in children:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
