"""A node's server on a real loopback socket, fed with segments signed by a test key."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streamr_node.accounting import UsageLedger
from streamr_node.http import HttpServer
from streamr_node.meter import RateMeter
from streamr_node.server import CORS_HEADERS, NodeApp
from streamr_node.sessions import SessionVerifier
from streamr_node.window import SegmentWindow
from streamr_protocol.attestation import SegmentEntry, b64url_encode, canonical_message
from streamr_protocol.viewer_sessions import SessionClaims, encode_session_token

STREAM = "teststream"
KEY_ID = "test-key"


class Signer:
    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key()

    def entry(
        self,
        sequence: int,
        name: str,
        data: bytes,
        *,
        duration_ms: int = 2000,
        stream: str = STREAM,
        discontinuity: bool = False,
    ) -> SegmentEntry:
        sha = hashlib.sha256(data).hexdigest()
        message = canonical_message(stream, sequence, name, duration_ms, len(data), sha)
        return SegmentEntry(
            sequence=sequence,
            name=name,
            duration_ms=duration_ms,
            size=len(data),
            sha256=sha,
            discontinuity=discontinuity,
            signature=b64url_encode(self.private.sign(message)),
        )

    def session_token(
        self, session_id: str, *, stream: str = STREAM, ttl_s: float = 600, key_id: str = KEY_ID
    ) -> str:
        claims = SessionClaims(
            session_id=session_id,
            stream=stream,
            expires_at=int(time.time() + ttl_s),
            key_id=key_id,
        )
        return encode_session_token(claims, self.private.sign)


def segment_bytes(sequence: int, size: int = 200_000) -> bytes:
    """Distinct, deterministic content per sequence number."""
    seed = hashlib.sha256(str(sequence).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class RunningNode:
    url: str
    port: int
    app: NodeApp
    window: SegmentWindow
    ledger: UsageLedger
    server: HttpServer
    signer: Signer
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the node's event loop thread and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(5)

    def add_segments(self, first: int, count: int, size: int = 200_000) -> list[bytes]:
        datas = []
        for sequence in range(first, first + count):
            data = segment_bytes(sequence, size)
            entry = self.signer.entry(sequence, f"{sequence}.ts", data)
            self.call(lambda e=entry, d=data: self.window.append(e.name, d, e, discontinuity=False))
            datas.append(data)
        return datas


@contextmanager
def running_node(tmp_path: Path, *, egress_cap_bps: int | None = None) -> Iterator[RunningNode]:
    signer = Signer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> RunningNode:
        window = SegmentWindow(STREAM, list_size=6, keep_extra=4)
        verifier = SessionVerifier(STREAM)
        verifier.set_key(KEY_ID, signer.public)
        ledger = UsageLedger(tmp_path / "spool", STREAM)
        app = NodeApp(
            stream=STREAM,
            window=window,
            verifier=verifier,
            ledger=ledger,
            meter=RateMeter(),
            egress_cap_bps=egress_cap_bps,
            health=lambda: {"status": "ok", "node_id": "n1"},
            stats=lambda: {"segments": len(window.segments)},
        )
        server = HttpServer(app, server_name="streamr-node/test", base_headers=CORS_HEADERS)
        port = await server.start("127.0.0.1", 0)
        return RunningNode(
            f"http://127.0.0.1:{port}", port, app, window, ledger, server, signer, loop
        )

    node = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield node
    finally:
        asyncio.run_coroutine_threadsafe(node.server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
