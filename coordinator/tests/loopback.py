"""Small real servers on 127.0.0.1 that stand in for friend nodes in reachability checks.

``NodeHost`` is one HTTP server that plays many nodes: a node's public URL is
``<host.url>/<mode>/<node id>`` and its health check (``.../health``) answers as ``mode`` says.
``silent_port`` accepts connections and never answers; ``garbage_port`` answers bytes that are
not HTTP; ``unused_port`` is a port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _NodeHandler(BaseHTTPRequestHandler):
    server: _NodeServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[2] != "health":
            self._send(404, b"not found", "text/plain")
            return
        mode, node_id = parts[0], parts[1]
        if mode == "ok":
            self._json({"status": "ok", "node_id": node_id})
        elif mode == "other":
            self._json({"status": "ok", "node_id": "some-other-node"})
        elif mode == "plain":
            self._json({"status": "ok"})
        elif mode == "notjson":
            self._send(200, b"<html>router login</html>", "text/html")
        elif mode == "error":
            self._send(500, b"{}", "application/json")
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/ok/{node_id}/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "huge":
            self._json({"node_id": node_id, "padding": "x" * 100_000})
        else:
            self._send(404, b"unknown mode", "text/plain")

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class _NodeServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]


class NodeHost:
    def __init__(self, server: _NodeServer) -> None:
        self._server = server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def node_url(self, node_id: str, mode: str = "ok") -> str:
        return f"{self.url}/{mode}/{node_id}"

    @property
    def requests(self) -> list[str]:
        return self._server.requests


@contextmanager
def node_host() -> Iterator[NodeHost]:
    server = _NodeServer(("127.0.0.1", 0), _NodeHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield NodeHost(server)
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_port() -> Iterator[int]:
    """Connections complete (the kernel accepts them into the backlog), then nothing happens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@contextmanager
def garbage_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = sock.accept()
                except OSError:
                    continue
                with connection:
                    connection.settimeout(2)
                    try:
                        connection.recv(4096)
                        connection.sendall(b"SSH-2.0-OpenSSH_9.2 not what you hoped for\r\n\r\n")
                    except OSError:
                        pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield sock.getsockname()[1]
        finally:
            stop.set()
            thread.join(timeout=5)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
