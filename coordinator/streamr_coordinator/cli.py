"""The operator's command line: ``streamr <command>``.

Every failure ends as one readable line on stderr and a non-zero exit status; ``--help`` works
on every command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import __version__
from .errors import AppError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A failure to report as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _settings() -> Any:
    from .settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise CliError(f"setting STREAMR_{field.upper()} is invalid: {first['msg']}") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc


# ---------------------------------------------------------------- servers


def cmd_coordinator(args: argparse.Namespace) -> None:
    import uvicorn

    from .logs import configure_logging
    from .main import create_app
    from .migrations import runner

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = _settings().model_copy(update=overrides)
    configure_logging(settings.log_level)
    print(json.dumps({"coordinator": settings.describe()}, indent=2), file=sys.stderr)
    settings.prepare_data_dir()
    if settings.should_auto_migrate:
        # Migrating before the server starts turns a database problem into one readable line.
        runner.upgrade(settings.sqlalchemy_url)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=args.behind_proxy,
        # Only the load balancer may speak for clients: the viewer's network hash and the
        # rate limits key on the address it forwards.
        forwarded_allow_ips=settings.trusted_proxies if args.behind_proxy else None,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    """The worker's jobs (jobs/catalog.py) as a process of its own, for production.

    Any number of workers may run: each job holds a lease, so a job never runs twice at once,
    and the coordinator replicas then run with STREAMR_RUN_BACKGROUND_JOBS=false.
    """
    from .jobs.catalog import CATALOG
    from .jobs.runner import select_jobs
    from .logs import configure_logging

    settings = _settings()
    try:
        jobs = select_jobs(CATALOG, args.jobs if args.jobs is not None else settings.worker_jobs)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    configure_logging(settings.log_level)
    print(json.dumps({"worker": settings.describe()}, indent=2), file=sys.stderr)
    failed = asyncio.run(_run_worker(jobs, once=args.once))
    if failed:
        raise CliError(f"job(s) failed: {', '.join(failed)} (see the log above)")


async def _run_worker(jobs: list[Any], once: bool) -> list[str]:
    """Runs until SIGTERM/SIGINT (or each job once); returns the jobs whose run failed."""
    import logging
    import signal

    from .jobs.runner import Worker

    log = logging.getLogger("streamr.worker")
    failed: list[str] = []

    async def work(ctx: Any) -> None:
        worker = Worker(ctx, jobs)
        if once:
            for name, result in (await worker.run_once()).items():
                outcome = "held by another worker" if result is None else result.outcome
                error = f" ({result.error})" if result is not None and result.error else ""
                print(f"{name}: {outcome}{error}")
                if result is not None and result.outcome != "ok":
                    failed.append(name)
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop)
        log.info("worker ready", extra={"holder": worker.holder, "jobs": [j.name for j in jobs]})
        await worker.run_forever(first_now=True)
        log.info("worker stopped", extra={"holder": worker.holder})

    await _with_context(work)
    return failed


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import DemoError, run_demo
    from .logs import configure_logging

    settings = _settings().model_copy(update={"host": args.host, "port": args.port})
    configure_logging(settings.log_level)
    if not args.no_ingest:
        _ingest_cli()  # a missing ingest package is one line, before anything starts
    try:
        run_demo(
            settings,
            ingest=not args.no_ingest,
            test_card=not args.no_test_card,
            nodes=args.nodes,
            node_port=args.node_port,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from exc


def cmd_cluster(args: argparse.Namespace) -> None:
    """A production-shaped cluster on this machine (cluster/run.py) until Ctrl-C."""
    import threading

    from .cluster.run import start_cluster
    from .cluster.services import ServerMissing
    from .demo import _print_summaries, login_lines, start_lines

    _ingest_cli()  # a missing ingest package is one line, before anything starts
    workdir = args.workdir or _settings().data_dir / "cluster"
    try:
        with start_cluster(
            workdir,
            replicas=args.replicas,
            workers=args.workers,
            nodes=args.nodes,
            port=args.port,
            test_card=args.test_card,
        ) as cluster:
            logs = cluster.workdir / "logs"
            lines = start_lines(
                f"StreamrP2P cluster: load balancer (nginx) on {cluster.url}",
                cluster.url,
                cluster.stream,
                cluster.rtmp_url,
                cluster.origin_url,
                args.test_card,
                f"{len(cluster.workers)} worker process(es)",
            )
            for process in [*cluster.replicas, *cluster.workers, *cluster.nodes]:
                where = f"on {process.url} " if process.port else ""
                lines.append(f"  {process.name + ':':<14} {where}(log: {process.log_path})")
            lines += [
                f"  PostgreSQL:    {cluster.database_url}",
                f"  Redis:         {cluster.redis_url}",
                f"  logs:          {logs} (nginx, postgres, redis, ingest, ...)",
                *login_lines(cluster.stream),
                "  Stop with Ctrl-C.",
            ]
            print("\n".join(lines), file=sys.stderr, flush=True)
            stopping = threading.Event()
            threading.Thread(
                target=_print_summaries,
                args=(cluster.settings(), cluster.url, cluster.stream.name, stopping),
                daemon=True,
            ).start()
            try:
                _wait_for_a_death(cluster)
            finally:
                stopping.set()
    except ServerMissing as exc:
        raise CliError(str(exc)) from exc


def _wait_for_a_death(cluster: Any) -> None:
    """Until Ctrl-C, or until a process other than a friend node exits (then say which)."""
    import time

    essential = [*cluster.replicas, *cluster.workers, cluster.lb, cluster.redis, cluster.postgres]
    essential += [p for p in (cluster.ingest, cluster.test_card) if p is not None]
    while True:
        for process in essential:
            if not process.running:
                raise CliError(f"{process.name} exited; see {process.log_path}. Stopping.")
        time.sleep(1)


# ---------------------------------------------------------------- database


def cmd_db(args: argparse.Namespace) -> None:
    from .migrations import runner

    settings = _settings()
    settings.prepare_data_dir()
    url = settings.sqlalchemy_url
    if args.db_command == "upgrade":
        runner.upgrade(url, args.revision)
        print(f"database is at revision {args.revision}")
    elif args.db_command == "downgrade":
        runner.downgrade(url, args.revision)
        print(f"database downgraded to {args.revision}")
    elif args.db_command == "current":
        runner.current(url)
    else:
        runner.history()


async def _with_context(work: Callable[[Any], Awaitable[None]]) -> None:
    from .context import AppContext
    from .migrations.runner import upgrade_to_head

    settings = _settings()
    settings.prepare_data_dir()
    if settings.should_auto_migrate:
        await upgrade_to_head(settings.sqlalchemy_url)
    ctx = AppContext.from_settings(settings)
    try:
        await work(ctx)
    finally:
        await ctx.close()


async def _account_by_email(session: Any, email: str) -> Any:
    from .accounts.service import find_by_email

    account = await find_by_email(session, email)
    if account is None:
        raise CliError(f"no account has email {email!r}; the streamer registers first")
    return account


def _read_password(from_stdin: bool) -> str:
    from .accounts.passwords import MAX_LENGTH, MIN_LENGTH

    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise CliError("the two passwords differ")
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise CliError(f"the password must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    return password


def cmd_admin_create(args: argparse.Namespace) -> None:
    from pydantic import TypeAdapter

    from .accounts.models import Role
    from .accounts.service import create_account

    try:
        TypeAdapter(Any).validate_python(args.email)
        from pydantic import EmailStr

        email = TypeAdapter(EmailStr).validate_python(args.email)
    except ValidationError as exc:
        raise CliError(f"{args.email!r} is not a valid email address") from exc
    password = _read_password(args.password_stdin)

    async def work(ctx: Any) -> None:
        async with ctx.sessions() as session:
            account = await create_account(
                session, email, password, args.display_name or "admin", Role.ADMIN
            )
            print(f"admin {account.email} created (id {account.id})")

    asyncio.run(_with_context(work))


# ---------------------------------------------------------------- streams and invites


def _print_key(name: str, key: str, rtmp_url: str) -> None:
    print(f"stream {name}")
    print(f"  OBS server:  {rtmp_url}")
    print(f"  stream key:  {key}")
    print("  The key is shown only now; store it (rotate it if it leaks).")


def cmd_stream_create(args: argparse.Namespace) -> None:
    from .streams.schemas import NAME_PATTERN, NAME_RULE
    from .streams.service import create_stream

    if not re.fullmatch(NAME_PATTERN, args.name):
        raise CliError(f"stream name {args.name!r} is invalid: use {NAME_RULE}")

    async def work(ctx: Any) -> None:
        async with ctx.sessions() as session:
            owner = await _account_by_email(session, args.owner)
            stream, key = await create_stream(
                session, owner, args.name, args.title or args.name, args.description, args.test
            )
            _print_key(stream.name, key, ctx.settings.ingest_rtmp_url)

    asyncio.run(_with_context(work))


def cmd_stream_list(args: argparse.Namespace) -> None:
    from .streams.models import Stream

    async def work(ctx: Any) -> None:
        async with ctx.sessions() as session:
            query = select(Stream).order_by(Stream.created_at)
            if args.status:
                query = query.where(Stream.status == args.status.upper())
            rows = list(await session.scalars(query))
        if not rows:
            print("no streams")
            return
        width = max(len(s.name) for s in rows)
        for s in rows:
            flag = " (test)" if s.is_test else ""
            print(f"{s.name:<{width}}  {s.status:<8}  {s.title}{flag}")

    asyncio.run(_with_context(work))


def cmd_stream_rotate_key(args: argparse.Namespace) -> None:
    from .streams.service import get_stream, rotate_key

    async def work(ctx: Any) -> None:
        async with ctx.sessions() as session:
            stream = await get_stream(session, args.name)
            key = await rotate_key(session, stream)
            _print_key(stream.name, key, ctx.settings.ingest_rtmp_url)
            print("  The previous key no longer works.")

    asyncio.run(_with_context(work))


_DURATION = re.compile(r"^(\d+)([smhd])$")


def _duration_s(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 12h or 7d")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def cmd_invite_create(args: argparse.Namespace) -> None:
    from .accounts.models import Account
    from .invites.schemas import InviteCreate
    from .invites.service import create_invite
    from .streams.service import get_stream

    try:
        spec = InviteCreate(label=args.label, expires_in_s=args.expires_in, max_uses=args.max_uses)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"{first['loc'][0]}: {first['msg']}") from exc

    async def work(ctx: Any) -> None:
        async with ctx.sessions() as session:
            stream = await get_stream(session, args.stream)
            owner = await session.get(Account, stream.owner_id)
            invite, code = await create_invite(
                session, stream, owner, spec.label, spec.expires_in_s, spec.max_uses
            )
        coordinator = ctx.settings.public_url or f"http://{ctx.settings.host}:{ctx.settings.port}"
        print(f"invite for stream {args.stream}: {code}")
        print(f"  valid until {invite.expires_at:%Y-%m-%d %H:%M} UTC for {invite.max_uses} node(s)")
        print(f"  a friend joins with: streamr-node join {coordinator} --invite {code}")

    asyncio.run(_with_context(work))


# ---------------------------------------------------------------- ingest


def _ingest_cli() -> Any:
    # Imported only here: the coordinator runs without the ingest package installed.
    try:
        from streamr_ingest import cli
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "streamr_ingest":
            raise CliError(
                "the ingest is not installed (Python package streamr-ingest, in ingest-server/); "
                "run scripts/bootstrap.sh"
            ) from exc
        raise CliError(f"the ingest cannot start: module {exc.name} is missing") from exc
    return cli


def cmd_ingest(args: argparse.Namespace) -> None:
    ingest = _ingest_cli()
    try:
        ingest.run(args.config, check_only=args.check)
    except ingest.ONE_LINE_ERRORS as exc:
        raise CliError(str(exc)) from exc


def cmd_stream_push_test(args: argparse.Namespace) -> None:
    ingest = _ingest_cli()
    server = args.rtmp or _settings().ingest_rtmp_url
    try:
        ingest.push_test(args, server)
    except ingest.ONE_LINE_ERRORS as exc:
        raise CliError(str(exc)) from exc


def cmd_keys_rotate_jwt(_args: argparse.Namespace) -> None:
    from .accounts.signing_keys import rotate

    settings = _settings()
    if settings.jwt_private_key is not None:
        raise CliError("STREAMR_JWT_PRIVATE_KEY is set; rotate by changing that setting instead")
    path = rotate(settings.data_dir)
    print(f"new signing key {path}; restart the coordinators to sign with it")


# ---------------------------------------------------------------- wiring


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamr", description="StreamrP2P operator command line.")
    parser.add_argument("--version", action="version", version=f"streamr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def server_options(p: argparse.ArgumentParser, host: str | None, port: int | None) -> None:
        p.add_argument("--host", default=host, help="address to listen on")
        p.add_argument("--port", type=int, default=port, help="port to listen on")
        p.add_argument(
            "--behind-proxy",
            action="store_true",
            help="trust X-Forwarded-For (behind a load balancer)",
        )

    p = commands.add_parser("coordinator", help="run the coordinator API server")
    server_options(p, None, None)
    p.set_defaults(func=cmd_coordinator)

    p = commands.add_parser(
        "worker",
        help="run the worker's jobs (presence, node stats, probes, reconciliation, payouts, "
        "timers, retention) until stopped; coordinator replicas then run with "
        "STREAMR_RUN_BACKGROUND_JOBS=false",
    )
    p.add_argument("--once", action="store_true", help="run each job once, then exit")
    p.add_argument(
        "--jobs",
        default=None,
        metavar="A,B",
        help="only these jobs (comma-separated; default STREAMR_WORKER_JOBS, else all)",
    )
    p.set_defaults(func=cmd_worker)

    p = commands.add_parser("demo", help="run the local demo network on the embedded defaults")
    server_options(p, "127.0.0.1", 8000)
    p.add_argument("--no-ingest", action="store_true", help="run the coordinator alone")
    p.add_argument("--no-test-card", action="store_true", help="do not publish a test card")
    p.add_argument(
        "--nodes",
        type=int,
        default=3,
        choices=range(0, 11),
        metavar="N",
        help="friend nodes relaying the demo stream (0-10, default 3)",
    )
    p.add_argument(
        "--node-port",
        type=int,
        default=8091,
        help="port of the first node, the others follow (default 8091; 0: any free ports)",
    )
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser(
        "cluster",
        help="run a production-shaped cluster on this machine: PostgreSQL, Redis, coordinator "
        "replicas and workers behind nginx, the ingest and friend nodes",
    )
    p.add_argument("--replicas", type=int, default=2, choices=range(1, 17), metavar="N")
    p.add_argument("--workers", type=int, default=2, choices=range(0, 17), metavar="N")
    p.add_argument("--nodes", type=int, default=3, choices=range(0, 101), metavar="N")
    p.add_argument("--port", type=int, default=8000, help="the load balancer's port (0: any)")
    p.add_argument(
        "--test-card", action="store_true", help="publish an ffmpeg test card to the demo stream"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="logs, nodes' and replicas' files (default: <STREAMR_DATA_DIR>/cluster)",
    )
    p.set_defaults(func=cmd_cluster)

    p = commands.add_parser(
        "ingest", help="run the ingest: nginx-rtmp, the HLS origin and segment attestation"
    )
    p.add_argument(
        "--config", type=Path, default=None, help="YAML settings (ingest-server/ingest_config.yaml)"
    )
    p.add_argument("--check", action="store_true", help="render and test the nginx config; exit")
    p.set_defaults(func=cmd_ingest)

    db = commands.add_parser("db", help="database schema migrations").add_subparsers(
        dest="db_command", required=True, parser_class=_Parser
    )
    p = db.add_parser("upgrade", help="upgrade the schema (default: to the newest revision)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db)
    p = db.add_parser("downgrade", help="downgrade the schema to REVISION ('base' empties it)")
    p.add_argument("revision")
    p.set_defaults(func=cmd_db)
    db.add_parser("current", help="show the schema revision").set_defaults(func=cmd_db)
    db.add_parser("history", help="list the migrations").set_defaults(func=cmd_db)

    admin = commands.add_parser("admin", help="platform admins").add_subparsers(
        dest="admin_command", required=True, parser_class=_Parser
    )
    p = admin.add_parser("create", help="create an admin account (password asked for)")
    p.add_argument("--email", required=True)
    p.add_argument("--display-name", default=None)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_admin_create)

    stream = commands.add_parser("stream", help="streams").add_subparsers(
        dest="stream_command", required=True, parser_class=_Parser
    )
    p = stream.add_parser("create", help="create a stream for a streamer; prints its key once")
    p.add_argument("name")
    p.add_argument("--owner", required=True, help="the streamer's account email")
    p.add_argument("--title", default=None)
    p.add_argument("--description", default="")
    p.add_argument("--test", action="store_true", help="publishing makes it TESTING, not LIVE")
    p.set_defaults(func=cmd_stream_create)
    p = stream.add_parser("list", help="list streams")
    p.add_argument("--status", default=None)
    p.set_defaults(func=cmd_stream_list)
    p = stream.add_parser("rotate-key", help="replace a stream's key; prints the new key once")
    p.add_argument("name")
    p.set_defaults(func=cmd_stream_rotate_key)
    p = stream.add_parser("push-test", help="publish an ffmpeg test card to the ingest, as OBS")
    p.add_argument("name", help="the stream's public name (for the messages only)")
    p.add_argument(
        "--key", required=True, help="the stream key; '-' reads it from stdin (keeps it out of ps)"
    )
    p.add_argument("--seconds", type=float, default=None, help="stop after N s (default: Ctrl-C)")
    p.add_argument(
        "--rtmp",
        default=None,
        help="OBS server URL of the ingest (default: STREAMR_INGEST_RTMP_URL)",
    )
    p.add_argument("--size", default="1280x720", help="picture size, e.g. 640x360")
    p.add_argument("--fps", type=int, default=30)
    p.set_defaults(func=cmd_stream_push_test)

    invite = commands.add_parser("invite", help="invites for friends' nodes").add_subparsers(
        dest="invite_command", required=True, parser_class=_Parser
    )
    p = invite.add_parser("create", help="create an invite code for a stream; printed once")
    p.add_argument("stream")
    p.add_argument("--max-uses", type=int, default=1)
    p.add_argument("--expires-in", type=_duration_s, default=7 * 86400, help="e.g. 12h, 7d")
    p.add_argument("--label", default="")
    p.set_defaults(func=cmd_invite_create)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, parser_class=_Parser
    )
    p = keys.add_parser("rotate-jwt", help="add a new access-token signing key")
    p.set_defaults(func=cmd_keys_rotate_jwt)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CliError, AppError) as exc:
        sys.exit(f"streamr: error: {exc}")
    except SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        sys.exit(f"streamr: error: database: {reason}")
    except OSError as exc:  # connection refused, unknown host, unreadable file
        sys.exit(
            f"streamr: error: cannot reach the database ({exc.strerror or exc}); "
            "check STREAMR_DATABASE_URL"
        )
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
