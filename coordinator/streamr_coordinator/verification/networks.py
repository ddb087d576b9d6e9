"""Which network a viewer or a node is on, without keeping anyone's address.

Reconciliation must not count a viewer session that a node opened for itself, and the cheapest
such "viewer" sits next to the node. So the coordinator remembers, for each viewer session and
for each node, a *network hash*: HMAC-SHA256 of the /24 (IPv4) or /48 (IPv6) network, keyed with
a secret (``STREAMR_NETWORK_HASH_KEY``, or ``<data_dir>/network-hash-key`` created on first use,
like the ingest secret), cut to 32 hex characters. No viewer address is stored anywhere, and
without the key the hashes cannot be turned back into networks by trying all 2^24 of them. The
key is never logged.

Loopback addresses and names that are not addresses (a test client) have no network: they say
nothing about where a viewer is, and one-machine setups would otherwise exclude every session.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from streamr_protocol.ingest import read_or_create_secret

from ..bulk import insert_rows
from ..database import insert_once, utcnow
from ..errors import is_database_away
from ..write_behind import WriteBehind
from .models import NodeNetwork

log = logging.getLogger("streamr.verification")

KEY_FILE_NAME = "network-hash-key"
HASH_HEX_CHARS = 32
MIN_KEY_CHARS = 32


def load_network_key(data_dir: Path, configured: str | None) -> bytes:
    """The configured key, or the one kept in ``<data_dir>/network-hash-key``."""
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ValueError(
                f"STREAMR_NETWORK_HASH_KEY must be at least {MIN_KEY_CHARS} characters "
                "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return configured.encode()
    return read_or_create_secret(data_dir / KEY_FILE_NAME).encode()


def network_of(address: str | None) -> str | None:
    """The /24 or /48 around ``address`` as text, or None for loopback and non-addresses."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def url_address(url: str | None) -> str | None:
    """The host of ``url`` when it is an IP address literal (names are not resolved here)."""
    if not url:
        return None
    return _url_address(url)


# Every heartbeat names its node's public URL again: remembered, not reparsed (node URLs only;
# no viewer's address is kept, here or anywhere).
@functools.lru_cache(maxsize=65_536)
def _url_address(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host if network_of(host) is not None else None


class NetworkHasher:
    """Keyed network hashes, and a record of the networks each node uses.

    Node networks are written at most once a minute per (node, network), so heartbeats stay
    free of database writes almost always. Those writes are batched: one flush a
    ``flush_delay_s`` writes every (node, network) due in one statement (an upsert), instead of
    a transaction of an UPDATE and maybe an INSERT each, which at 5,000 nodes cost a replica
    more CPU than the heartbeats themselves (bench/load).
    """

    def __init__(
        self,
        key: bytes,
        sessions: async_sessionmaker[AsyncSession],
        every_s: float = 60.0,
        flush_delay_s: float = 0.25,
    ) -> None:
        self._key = key
        self._sessions = sessions
        self._every_s = every_s
        self._written: dict[tuple[str, str], float] = {}
        self._hashes: dict[str, str] = {}  # network -> its hash, for the heartbeats
        self._by_node_address: dict[str, str | None] = {}  # a node's address -> its hash
        self._batch: WriteBehind[tuple[str, str], datetime] = WriteBehind(
            "node networks", self._write, flush_delay_s
        )

    def __repr__(self) -> str:  # never show the key
        return "NetworkHasher()"

    def hash(self, address: str | None) -> str | None:
        network = network_of(address)
        if network is None:
            return None
        found = self._hashes.get(network)
        if found is None:
            digest = hmac.new(self._key, network.encode(), hashlib.sha256).hexdigest()
            found = digest[:HASH_HEX_CHARS]
            if len(self._hashes) >= 100_000:
                self._hashes.clear()
            self._hashes[network] = found
        return found

    def hashes(self, addresses: Iterable[str | None]) -> set[str]:
        return {h for h in map(self.hash, addresses) if h is not None}

    def _node_hashes(self, addresses: Iterable[str | None]) -> set[str]:
        """``hashes`` remembered by address: nodes' addresses only (every heartbeat names them
        again), never a viewer's."""
        found = set()
        for address in addresses:
            if address is None:
                continue
            if address not in self._by_node_address:
                if len(self._by_node_address) >= 100_000:
                    self._by_node_address.clear()
                self._by_node_address[address] = self.hash(address)
            network_hash = self._by_node_address[address]
            if network_hash is not None:
                found.add(network_hash)
        return found

    def seen(self, node_id: str, *addresses: str | None) -> None:
        """Remember (in the background, throttled) that ``node_id`` used these addresses."""
        now = time.monotonic()
        for network in self._node_hashes(addresses):
            key = (node_id, network)
            if now - self._written.get(key, -self._every_s) >= self._every_s:
                self._written[key] = now
                self._batch.put(key, utcnow())
        if len(self._written) > 100_000:
            self._written.clear()

    async def record(self, session: AsyncSession, node_id: str, *addresses: str | None) -> None:
        """Remember now, in the caller's transaction (registration)."""
        for network in self.hashes(addresses):
            await record_network(session, node_id, network, utcnow())

    async def flush(self) -> None:
        """Write every pending (node, network) now; a batch the database could not take (busy
        or away) waits for the next flush, what it refused is written on its next sighting."""
        await self._batch.flush()

    async def _write(self, batch: dict[tuple[str, str], datetime]) -> None:
        try:
            async with self._sessions() as session:
                await record_networks(session, batch)
                await session.commit()
        except IntegrityError:
            # A node deleted meanwhile fails the whole statement: the others one by one.
            await self._write_each(batch)
        except Exception as exc:
            if is_database_away(exc):
                # The database is busy or away: the batch waits for the next flush.
                self._batch.put_back(batch)
                log.warning("node networks: batch kept for a retry", extra={"rows": len(batch)})
                return
            self._forget(batch)
            log.exception("could not record node networks", extra={"rows": len(batch)})

    async def _write_each(self, batch: dict[tuple[str, str], datetime]) -> None:
        for (node_id, network), at in batch.items():
            try:
                async with self._sessions() as session:
                    await record_network(session, node_id, network, at)
                    await session.commit()
            except Exception:
                self._forget({(node_id, network): at})
                log.exception("could not record a node network", extra={"node_id": node_id})

    def _forget(self, batch: dict[tuple[str, str], datetime]) -> None:
        for key in batch:
            self._written.pop(key, None)

    async def drain(self) -> None:
        """Write what is pending (at shutdown, and in tests)."""
        await self._batch.drain()


async def record_networks(session: AsyncSession, seen: dict[tuple[str, str], datetime]) -> None:
    """Upsert many (node, network) sightings in one statement (PostgreSQL and SQLite alike)."""
    rows = [
        {"node_id": node_id, "network": network, "first_seen_at": at, "last_seen_at": at}
        # In key order: two replicas' upserts lock their rows in one order, never deadlock.
        for (node_id, network), at in sorted(seen.items())
    ]
    await insert_rows(
        session,
        NodeNetwork.__table__,
        rows,
        upsert=("node_id", "network"),
        update=("last_seen_at",),
    )


async def record_network(session: AsyncSession, node_id: str, network: str, at: datetime) -> None:
    result = await session.execute(
        update(NodeNetwork)
        .where(NodeNetwork.node_id == node_id, NodeNetwork.network == network)
        .values(last_seen_at=at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        return
    row = NodeNetwork(node_id=node_id, network=network, first_seen_at=at, last_seen_at=at)
    await insert_once(session, row, NodeNetwork.node_id == node_id, NodeNetwork.network == network)
