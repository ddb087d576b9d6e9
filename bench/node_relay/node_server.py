"""The node's HTTP serving path alone, in its own process, over segments read from disk.

    .venv/bin/python bench/node_relay/node_server.py --segments DIR --port 8090 \
        --tokens-out TOKENS [--sessions 64]

The same objects ``streamr-node run`` builds (node.py): ``SegmentWindow``, ``SessionVerifier``,
``UsageLedger``, ``RateMeter``, ``NodeApp`` and ``HttpServer`` with the node's base headers,
on the event loop the node uses (``asyncio.run``). What is left out is the network side that
has nothing to do with serving: the puller (the window is filled once, from ``DIR/source.m3u8``
and the segment files it lists, each entry signed by a throwaway key, as
node-client/tests/support.py does), heartbeats and the coordinator. The usage journal is cut
into a report every ``--report-interval-s`` as the node does (the report stays in the spool:
nothing is sent).

``--tokens-out`` receives ``--sessions`` viewer session tokens signed by the same throwaway key,
one a line, for the load generator. ``/stats`` answers what the ledger and server counted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streamr_node import __version__
from streamr_node.accounting import UsageLedger
from streamr_node.http import HttpServer
from streamr_node.meter import RateMeter
from streamr_node.server import CORS_HEADERS, NodeApp
from streamr_node.sessions import SessionVerifier
from streamr_node.window import SegmentWindow
from streamr_protocol.attestation import SegmentEntry, b64url_encode, canonical_message
from streamr_protocol.playlist import parse
from streamr_protocol.viewer_sessions import SessionClaims, encode_session_token

KEY_ID = "bench-key"


def signed_entry(
    key: Ed25519PrivateKey, stream: str, sequence: int, name: str, duration_ms: int, data: bytes
) -> SegmentEntry:
    sha = hashlib.sha256(data).hexdigest()
    message = canonical_message(stream, sequence, name, duration_ms, len(data), sha)
    return SegmentEntry(
        sequence=sequence,
        name=name,
        duration_ms=duration_ms,
        size=len(data),
        sha256=sha,
        signature=b64url_encode(key.sign(message)),
    )


def session_tokens(key: Ed25519PrivateKey, stream: str, count: int) -> list[str]:
    expires = int(time.time() + 24 * 3600)
    return [
        encode_session_token(
            SessionClaims(
                session_id=uuid.uuid4().hex, stream=stream, expires_at=expires, key_id=KEY_ID
            ),
            key.sign,
        )
        for _ in range(count)
    ]


async def serve(args: argparse.Namespace, spool: Path) -> None:
    key = Ed25519PrivateKey.generate()
    window = SegmentWindow(args.stream, list_size=args.list_size, keep_extra=args.keep_extra)
    source = parse((args.segments / "source.m3u8").read_text())
    for segment in source.segments:
        data = (args.segments / segment.uri).read_bytes()
        entry = signed_entry(
            key, args.stream, segment.sequence, segment.uri, segment.duration_ms, data
        )
        window.append(segment.uri, data, entry, discontinuity=False)
    verifier = SessionVerifier(args.stream)
    verifier.set_key(KEY_ID, key.public_key())
    args.tokens_out.write_text("\n".join(session_tokens(key, args.stream, args.sessions)) + "\n")
    ledger = UsageLedger(spool, args.stream)
    meter = RateMeter()
    server: HttpServer | None = None

    def stats() -> dict[str, object]:
        assert server is not None
        return {
            "window": {"segments": len(window.segments), "bytes": window.bytes_held},
            "ledger": dict(ledger.totals),
            "requests": server.requests_total,
            "by_status": {str(k): v for k, v in server.responses_by_status.items()},
        }

    app = NodeApp(
        stream=args.stream,
        window=window,
        verifier=verifier,
        ledger=ledger,
        meter=meter,
        egress_cap_bps=None,
        health=lambda: {"status": "ok"},
        stats=stats,
    )
    server = HttpServer(app, server_name=f"streamr-node/{__version__}", base_headers=CORS_HEADERS)
    await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), args.report_interval_s)
        except TimeoutError:
            ledger.cut()
    await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=Path, required=True, help="holds source.m3u8")
    parser.add_argument("--stream", default="bench")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-out", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--list-size", type=int, default=6, help="the node's default")
    parser.add_argument("--keep-extra", type=int, default=6, help="the node's default")
    parser.add_argument("--report-interval-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamr-bench-spool-") as spool:
        asyncio.run(serve(args, Path(spool)))


if __name__ == "__main__":
    main()
