"""The friend's command line: ``streamr-node join | run | status | leave``.

Every failure ends as one readable line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

from streamr_protocol.logs import configure_logging
from streamr_protocol.nodes import NodeRegistration

from . import __version__
from .config import ConfigError, NodeConfig, load, save
from .coordinator_client import CoordinatorClient, CoordinatorError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A failure to report as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("host", "port", "public_url", "egress_cap_mbps", "name", "log_level")
    values = {n: getattr(args, n, None) for n in names}
    if getattr(args, "upnp", False):
        values["upnp"] = True
    return values


def _load(args: argparse.Namespace) -> NodeConfig:
    return load(args.data_dir, overrides=_overrides(args))


# ---------------------------------------------------------------- join


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    email = args.email or os.environ.get("STREAMR_NODE_EMAIL")
    password = os.environ.get("STREAMR_NODE_PASSWORD")
    interactive = sys.stdin.isatty()
    if not email:
        if not interactive:
            raise CliError("give your account's email with --email (or STREAMR_NODE_EMAIL)")
        email = input("Your StreamrP2P account email: ").strip()
    if not password:
        if not interactive:
            raise CliError("set STREAMR_NODE_PASSWORD, or run join in a terminal to be asked")
        password = getpass.getpass("Password: ")
    return email, password


async def _join(config: NodeConfig, url: str, invite: str, args: argparse.Namespace) -> str:
    email, password = _credentials(args)
    async with CoordinatorClient(url) as client:
        try:
            token = await client.login(email, password)
        except CoordinatorError as exc:
            if exc.status != 401 or not args.create_account:
                hint = "" if exc.status != 401 else " (new here? add --create-account)"
                raise CliError(f"login failed: {exc}{hint}") from None
            await client.create_account(email, password, display_name=config.name)
            token = await client.login(email, password)
        credentials = await client.register(
            token,
            NodeRegistration(
                invite_code=invite,
                name=config.name,
                public_url=config.public_url,
                version=__version__,
            ),
        )
    config.coordinator_url = url  # type: ignore[assignment]
    config.node_id = credentials.node_id
    config.node_token = credentials.node_token  # type: ignore[assignment]
    config.stream = credentials.stream
    return credentials.stream


def cmd_join(args: argparse.Namespace) -> None:
    config = _load(args)
    if config.joined and not args.force:
        raise CliError(
            f"this node already joined stream {config.stream!r} as node {config.node_id}; "
            "run 'streamr-node leave' first, or add --force to replace it"
        )
    stream = asyncio.run(_join(config, args.coordinator_url.rstrip("/"), args.invite, args))
    path = save(config)
    print(f"Joined stream {stream!r} as node {config.node_id}.")
    print(f"Settings saved to {path} (readable only by you: it holds the node's token).")
    print("Start relaying with: streamr-node run")


# ---------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> None:
    from .node import Node

    config = _load(args)
    invite = args.invite or os.environ.get("STREAMR_NODE_INVITE")
    if not config.joined and invite and config.coordinator_url:
        # Containers and scripts: join on first start, from the environment.
        asyncio.run(_join(config, str(config.coordinator_url).rstrip("/"), invite, args))
        save(config)
    config.require_joined()
    if args.save:
        save(config)  # the flags given now become the node's settings for later runs
    text = args.log_format == "text" or (args.log_format is None and sys.stderr.isatty())
    configure_logging(
        config.log_level,
        text=text,
        context=lambda: {"node_id": config.node_id, "stream": config.stream},
    )
    print(json.dumps({"node": _describe(config)}, indent=2), file=sys.stderr)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
                loop.add_signal_handler(signum, stop.set)
        mapping = None
        if config.upnp:
            from .upnp import map_port

            mapping = await map_port(config.port)
            if config.public_url is None and mapping is not None:
                config.public_url = mapping.public_url  # type: ignore[assignment]
        renewal = asyncio.create_task(mapping.keep()) if mapping is not None else None
        try:
            await Node(config).run(stop)
        finally:
            if mapping is not None and renewal is not None:
                renewal.cancel()
                await mapping.remove()

    asyncio.run(main())


def _describe(config: NodeConfig) -> dict[str, Any]:
    shown = config.model_dump(mode="json", exclude={"node_token"})
    shown["node_token"] = "***" if config.node_token else None
    shown["data_dir"] = str(config.data_dir)
    return shown


# ---------------------------------------------------------------- status


def _local_stats(config: NodeConfig) -> dict[str, Any] | None:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host  # noqa: S104
    try:
        response = httpx.get(f"http://{host}:{config.port}/stats", timeout=3)
        return dict(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def _coordinator_view(config: NodeConfig) -> dict[str, Any]:
    assert config.node_id and config.node_token
    token = config.node_token.get_secret_value()
    async with CoordinatorClient(str(config.coordinator_url)) as client:
        node = await client.node(config.node_id, token)
        try:
            usage = await client.usage_totals(config.node_id, token)
        except CoordinatorError:
            usage = None
        try:
            standing = await client.standing(config.node_id, token)
        except CoordinatorError:  # a coordinator from before trust existed
            standing = None
        try:
            earnings = await client.earnings(config.node_id, token)
        except CoordinatorError:  # a coordinator from before payouts existed
            earnings = None
    return {"node": node, "usage": usage, "standing": standing, "earnings": earnings}


def _megabytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1_000_000:,.1f} MB"


def cmd_status(args: argparse.Namespace) -> None:
    config = _load(args)
    config.require_joined()
    local = _local_stats(config)
    try:
        remote: dict[str, Any] | None = asyncio.run(_coordinator_view(config))
        remote_error = None
    except (CoordinatorError, httpx.HTTPError) as exc:
        remote, remote_error = None, str(exc) or type(exc).__name__
    if args.json:
        print(json.dumps({"local": local, "coordinator": remote}, indent=2, default=str))
        return
    where = str(config.coordinator_url).rstrip("/")
    print(f"node {config.node_id} for stream {config.stream!r} at {where}")
    if local is None:
        print(
            f"  running:      no (nothing answers on port {config.port}); start: streamr-node run"
        )
    else:
        window, sent = local["window"], local["bytes"]
        print(f"  running:      yes, {local['state']}, up {local['uptime_s']:.0f} s")
        print(f"  upstream:     {local['upstream']['kind']} {local['upstream']['base_url']}")
        print(
            f"  window:       {window['segments']} segments"
            + (", stream ended" if window["ended"] else "")
        )
        print(
            f"  viewers:      {local['viewers']['active_sessions']} sessions, "
            f"{local['viewers']['connections']} connections"
        )
        print(
            f"  served:       {_megabytes(sent['served_to_sessions'])} to viewers with sessions, "
            f"{_megabytes(sent['served_unattributed'])} other"
        )
        print(f"  reports:      {local['reports']['pending']} waiting to be sent")
    if remote is None:
        print(f"  coordinator:  not reachable ({remote_error})")
        return
    node = remote["node"]
    print(f"  online:       {'yes' if node.get('online') else 'no'}")
    status = node.get("reachability_status")
    if status is None:
        print("  reachable:    not checked yet (the node asks the coordinator at start)")
    else:
        print(f"  reachable:    {'yes' if node.get('reachable') else 'NO'} ({status})")
        advice = ((local or {}).get("reachability") or {}).get("advice", [])
        if not node.get("reachable"):
            for line in advice:
                print(f"                - {line}")
    usage = remote.get("usage")
    if usage:
        print(f"  counted:      {_megabytes(usage.get('counted_bytes'))} (coordinator's count)")
    _print_standing(remote.get("standing"))
    _print_earnings(remote.get("earnings"))


def _print_standing(standing: dict[str, Any] | None) -> None:
    """Trust and what it means; a warning stands out, with what to do, before any penalty."""
    if not standing:
        return
    level, score = standing.get("level", "?"), standing.get("score")
    shown = "-" if score is None else f"{score:.0%}"
    pay = standing.get("pay_bps")
    pay_text = "" if pay is None else f", earns {pay / 100:g}% of the rate"
    print(f"  trust:        {shown} ({level}{pay_text})")
    message = standing.get("message")
    if message:
        prefix = "  WARNING:      " if level in ("warned", "penalised") else "                "
        print(prefix + message)


def _print_earnings(earnings: dict[str, Any] | None) -> None:
    """What the node is owed and was paid (amounts arrive formatted: money is never a float
    here), and the stream's budget when it is low or spent."""
    if not earnings:
        print("  earnings:     not available from this coordinator")
        return
    node, terms = earnings["node"], earnings["economics"]
    paid_out = earnings.get("payouts") or []
    sent = [p for p in paid_out if p.get("status") == "sent"]
    print(
        f"  earnings:     ${node['balance_usd']} owed"
        + (f", last payout ${sent[0]['amount_usd']}" if sent else "")
        + f" (rate ${terms['rate_usd_per_gb']}/GB, payouts from ${terms['minimum_payout_usd']})"
    )
    if node.get("below_minimum"):
        print("                below the minimum payout: it carries over to the next period")
    budget = earnings.get("budget") or {}
    if budget.get("state") in ("low", "exhausted") and budget.get("message"):
        print(f"  budget:       {budget['message']}")


# ---------------------------------------------------------------- leave


def cmd_leave(args: argparse.Namespace) -> None:
    config = _load(args)
    config.require_joined()
    assert config.node_id and config.node_token

    async def leave() -> None:
        async with CoordinatorClient(str(config.coordinator_url)) as client:
            await client.deregister(config.node_id or "", config.node_token.get_secret_value())

    try:
        asyncio.run(leave())
    except CoordinatorError as exc:
        if exc.status not in (401, 404):  # already gone is what was asked for
            raise
    config.node_id = None
    config.node_token = None
    config.stream = None
    save(config)
    print("This node left its stream; its token no longer works. Join again with an invite.")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamr-node", description="Relay a friend's live stream to viewers.")
    parser.add_argument("--version", action="version", version=f"streamr-node {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="where the settings and unsent reports live (STREAMR_NODE_DATA_DIR)",
        )

    def serving(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="address to listen on (default 0.0.0.0)")
        p.add_argument("--port", type=int, help="port to listen on (default 8090)")
        p.add_argument("--public-url", help="where viewers reach this node, e.g. http://IP:8090")
        p.add_argument(
            "--egress-cap-mbps", type=float, help="upload limit; above it viewers move on"
        )
        p.add_argument("--name", help="a label the streamer sees")

    p = commands.add_parser("join", help="register this node with a stream, using an invite")
    p.add_argument(
        "coordinator_url", help="the coordinator's address, e.g. https://streamr.example"
    )
    p.add_argument("--invite", required=True, help="the invite code the streamer gave you")
    p.add_argument("--email", help="your account's email (STREAMR_NODE_EMAIL)")
    p.add_argument("--create-account", action="store_true", help="create the account if needed")
    p.add_argument("--force", action="store_true", help="replace an earlier join")
    common(p)
    serving(p)
    p.set_defaults(func=cmd_join)

    p = commands.add_parser("run", help="relay the stream (no flags needed after join)")
    common(p)
    serving(p)
    p.add_argument("--upnp", action="store_true", help="ask the router to forward the port")
    p.add_argument("--save", action="store_true", help="remember these flags for later runs")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=["json", "text"], help="default: text on a terminal")
    p.add_argument("--invite", help=argparse.SUPPRESS)
    p.add_argument("--email", help=argparse.SUPPRESS)
    p.add_argument("--create-account", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("status", help="what the node is doing, reachability, bytes served")
    common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("leave", help="deregister this node and forget its token")
    common(p)
    p.set_defaults(func=cmd_leave)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    from .node import NodeStopped

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CliError, ConfigError, NodeStopped) as exc:
        sys.exit(f"streamr-node: {exc}")
    except CoordinatorError as exc:
        sys.exit(f"streamr-node: the coordinator said: {exc}")
    except httpx.HTTPError as exc:
        sys.exit(
            f"streamr-node: cannot reach the coordinator ({type(exc).__name__}); check the URL"
        )
    except OSError as exc:
        sys.exit(f"streamr-node: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
