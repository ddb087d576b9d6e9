"""Can viewers reach a node? The coordinator tries the node's public URL from outside.

It fetches ``<public_url>/health`` as a stranger on the internet would, and expects the node to
answer with its own id (so an old router rule pointing at another machine, or a different web
server on that port, is told apart from the node). Every outcome gets a status and advice in
plain words for the friend running the node.

The check makes the coordinator connect wherever a node says, so it is guarded against being
used to probe the coordinator's own network (SSRF): the host name is resolved first, and any
address that is not globally routable (loopback, private, link-local, shared, reserved,
multicast) is refused before a connection is made, unless ``allow_private_node_urls`` is set
for a single machine or a test. The connection then goes to the address that was checked, never
to a second resolution of the name, and no redirect, proxy or compressed answer is followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from streamr_protocol.nodes import ReachabilityStatus

MAX_ANSWER_BYTES = 64 * 1024
MAX_ADDRESSES_TRIED = 3


@dataclass(frozen=True)
class Verdict:
    status: ReachabilityStatus
    detail: str
    # Narrows the advice where one status has several causes (e.g. "dns" for a refused check).
    cause: str | None = None

    @property
    def reachable(self) -> bool:
        return self.status == "reachable"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def probe(url: str, node_id: str, *, timeout_s: float, allow_private: bool) -> Verdict:
    """Try ``url`` from outside and say what happened. Never raises for a network outcome."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _probe(url, node_id, timeout_s=timeout_s, allow_private=allow_private)
    except TimeoutError:
        return Verdict("timeout", f"{_where(url)} did not answer within {timeout_s:g} s")


async def _probe(url: str, node_id: str, *, timeout_s: float, allow_private: bool) -> Verdict:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Verdict("bad_response", "only http:// and https:// URLs with a host can be checked")
    try:
        port = parts.port or default_port(parts.scheme)
    except ValueError:
        return Verdict("bad_response", "the URL's port is not a number from 1 to 65535")
    try:
        addresses = await _resolve(parts.hostname, port)
    except (socket.gaierror, UnicodeError, OSError):
        return Verdict("refused", f"the host name {parts.hostname} does not resolve", cause="dns")
    if not addresses:
        return Verdict("refused", f"the host name {parts.hostname} does not resolve", cause="dns")
    if not allow_private:
        private = [a for a in addresses if not is_public(a)]
        if private:
            return Verdict(
                "private_address",
                f"{parts.hostname} is {private[0]}, an address that is not reachable from the "
                "internet (loopback, private network, link-local or reserved)",
            )

    health_path = parts.path.rstrip("/") + "/health"
    host_header = parts.netloc.rpartition("@")[2]
    verdict = Verdict("refused", f"nothing accepted a connection on port {port}")
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s)
    ) as client:
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            target = httpx.URL(scheme=parts.scheme, host=str(address), port=port, path=health_path)
            verdict = await _fetch(client, target, host_header, parts.hostname, node_id, port)
            if verdict.status != "refused":
                break  # an answer (or a silence) is the verdict; only refusals try the next
    return verdict


async def _fetch(
    client: httpx.AsyncClient,
    target: httpx.URL,
    host_header: str,
    hostname: str,
    node_id: str,
    port: int,
) -> Verdict:
    extensions = {"sni_hostname": hostname} if target.scheme == "https" else {}
    headers = {"Host": host_header, "Accept": "application/json", "Accept-Encoding": "identity"}
    try:
        async with client.stream("GET", target, headers=headers, extensions=extensions) as answer:
            if answer.status_code != 200:
                moved = " (redirects are not followed)" if answer.is_redirect else ""
                return Verdict(
                    "bad_response", f"GET /health answered HTTP {answer.status_code}{moved}"
                )
            if answer.headers.get("content-encoding", "identity").lower() != "identity":
                return Verdict("bad_response", "GET /health answered with a compressed body")
            body = bytearray()
            async for chunk in answer.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return Verdict("bad_response", "GET /health answered more than 64 KiB")
    except httpx.TimeoutException:
        return Verdict("timeout", f"port {port} did not answer in time")
    except httpx.ConnectError as exc:
        if _is_tls_failure(exc):
            return Verdict(
                "bad_response",
                "the TLS handshake failed (does the port speak HTTPS, with a valid certificate?)",
            )
        return Verdict("refused", f"nothing accepted a connection on port {port}")
    except httpx.HTTPError:
        return Verdict("bad_response", "the connection was accepted, but the answer was not HTTP")
    return _judge(bytes(body), node_id)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _judge(body: bytes, node_id: str) -> Verdict:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return Verdict("bad_response", "GET /health answered something that is not JSON")
    if not isinstance(data, dict):
        return Verdict("bad_response", "GET /health answered JSON that is not an object")
    answered = data.get("node_id")
    if answered == node_id:
        return Verdict("reachable", "the node answered with its own id")
    if isinstance(answered, str):
        shown = answered[:64].encode("ascii", "replace").decode()
        return Verdict("wrong_node", f"another node answered there (node id {shown!r})")
    return Verdict("wrong_node", "a server answered there, but not as a StreamrP2P node")


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def advice(verdict: Verdict, url: str | None) -> list[str]:
    """What the friend can do about a verdict, in plain words."""
    parts = urlsplit(url or "")
    try:
        port = parts.port or default_port(parts.scheme)
    except ValueError:
        port = default_port(parts.scheme)
    forward = (
        f"Forward TCP port {port} on your router to this machine's local address (look for "
        "'port forwarding' or 'virtual server' in the router's settings)."
    )
    firewall = f"Allow incoming TCP port {port} in this machine's firewall."
    upnp = "Or run `streamr-node run --upnp` to let the node open the port on the router itself."
    public_url = (
        "Set `--public-url` to the address viewers use: your public IP address or a DNS name "
        f"for it, with port {port} (e.g. `streamr-node run --save --public-url "
        f"http://203.0.113.7:{port}`; --save keeps it for later runs)."
    )
    if verdict.status == "reachable":
        return []
    if verdict.status == "no_public_url":
        return [
            "Tell the coordinator where viewers can reach this node: run it once with "
            "`streamr-node run --save --public-url http://YOUR-PUBLIC-ADDRESS:PORT`.",
            "Or run `streamr-node run --upnp` so the node opens a port on your router and "
            "finds its public address itself.",
        ]
    if verdict.status == "private_address":
        return [
            f"{url} only works inside your own network; viewers on the internet cannot use it.",
            public_url,
            forward,
            upnp,
        ]
    if verdict.status == "refused" and verdict.cause == "dns":
        return [
            f"Check the spelling of the host name in {url}, or use your public IP address.",
            public_url,
        ]
    if verdict.status == "refused":
        return [
            f"Make sure the node is running and listening on port {port}.",
            forward,
            firewall,
            upnp,
        ]
    if verdict.status == "timeout":
        return [
            "Connections to the node are silently dropped: usually a router or firewall that "
            "does not let them in.",
            forward,
            firewall,
            upnp,
        ]
    if verdict.status == "wrong_node":
        return [
            f"Port {port} at that address leads to another machine or program, not this node.",
            forward,
            "If the address is right, check that `--public-url` is this node's own address "
            "(each node needs its own port).",
        ]
    return [
        "Something answered, but not like a StreamrP2P node.",
        f"Make sure `--public-url` points at this node's own HTTP port ({port}), not at another "
        "web server or a proxy that changes the answers.",
    ]
