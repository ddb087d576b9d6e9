"""``streamr-ingest``: run the ingest (nginx-rtmp, origin watcher, reconciler) in the foreground.

The operator's ``streamr ingest`` and ``ingest-server/start-ingest.sh`` both end up in ``run``.
Every failure is one readable line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from streamr_protocol.ingest import SecretError
from streamr_protocol.logs import configure_logging

from . import __version__
from .config import ConfigError, load_settings
from .nginx import NginxError
from .runner import IngestFailure, prepare
from .runner import run as run_ingest
from .testcard import PublishError, publish

EXIT_USAGE = 2
# Each of these carries a message meant for a person, complete in one line.
ONE_LINE_ERRORS = (ConfigError, NginxError, SecretError, IngestFailure, PublishError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def run(config: Path | None, check_only: bool = False) -> None:
    """Load the settings, print them (secret masked) and run until stopped.

    Raises one of ONE_LINE_ERRORS on failure (an OSError is turned into one of them, so that a
    caller's own OSError handling never misreads it).
    """
    settings = load_settings(config)
    configure_logging(settings.log_level)
    print(json.dumps({"ingest": settings.describe()}, indent=2), file=sys.stderr)
    try:
        if check_only:
            prepare(settings)
            print(f"configuration OK: {settings.conf_path}", file=sys.stderr)
            return
        asyncio.run(run_ingest(settings))
    except OSError as exc:
        raise IngestFailure(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamr-ingest",
        description="Run the StreamrP2P ingest: nginx-rtmp (RTMP in, HLS origin out), the "
        "origin watcher that attests every segment, and the state reconciler.",
    )
    parser.add_argument("--version", action="version", version=f"streamr-ingest {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML settings file (see ingest_config.yaml)"
    )
    parser.add_argument(
        "--check", action="store_true", help="render the nginx configuration, test it, and exit"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("push-test", help="publish an ffmpeg test card to an ingest, like OBS")
    add_push_test_arguments(p, default_server="rtmp://127.0.0.1:1935/live")
    return parser


def add_push_test_arguments(p: argparse.ArgumentParser, default_server: str | None) -> None:
    p.add_argument("name", help="the stream's public name (for the messages only)")
    p.add_argument(
        "--key", required=True, help="the stream key; '-' reads it from stdin (keeps it out of ps)"
    )
    p.add_argument("--seconds", type=float, default=None, help="stop after N s (default: Ctrl-C)")
    p.add_argument("--rtmp", default=default_server, help="OBS 'Server' URL of the ingest")
    p.add_argument("--size", default="1280x720", help="picture size, e.g. 640x360")
    p.add_argument("--fps", type=int, default=30)


def push_test(args: argparse.Namespace, server: str) -> None:
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    length = f"for {args.seconds:g} s" if args.seconds else "until Ctrl-C"
    print(
        f"publishing a test card to stream {args.name} at {server} {length} "
        f"({args.size}, {args.fps} fps, keyframe every 2 s, 440 Hz tone)",
        file=sys.stderr,
    )
    publish(server, key, args.seconds, size=args.size, fps=args.fps)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "push-test":
            push_test(args, args.rtmp)
        else:
            run(args.config, check_only=args.check)
    except ONE_LINE_ERRORS as exc:
        sys.exit(f"streamr-ingest: error: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
