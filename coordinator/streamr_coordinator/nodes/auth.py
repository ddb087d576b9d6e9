"""Node-token authentication with a short in-process cache and, with Redis, a shared one.

Heartbeats must not cost a database round trip each, so a token's lookup is remembered: in this
process for ``node_token_cache_ttl_s``, and (when Redis is configured) in Redis for
``SHARED_TTL_S``, keyed by the token's hash (the database's key too; the token itself is never
stored). With several replicas behind a round-robin load balancer each replica sees every node,
so without the shared tier every replica would look every token up in the database once per
``node_token_cache_ttl_s``; with it, a token costs one database lookup per ``SHARED_TTL_S``.

Deregistering clears this replica's entries and the shared ones at once, and leaves a tombstone
in Redis that stops a lookup already under way on another replica from storing the token again.
Without Redis, other replicas forget it within ``node_token_cache_ttl_s``. With Redis, the
deregistration is also appended to a revocation feed (a Redis stream) that every replica reads
before trusting its own entries, at most ``REVOCATION_POLL_S`` apart: other replicas forget the
token within about a second, so ``node_token_cache_ttl_s`` can be long (300 s in
``streamr cluster``) and heartbeats rarely miss this replica's cache even when a load balancer
spreads a node's beats over the replicas.
While the feed cannot be read, entries are trusted for at most ``FEED_DOWN_TTL_S``.

While the database is away (a restart, a failover), a token this replica knew is still accepted
for up to ``STALE_IF_DOWN_S`` after its entry expired: nodes keep heartbeating (presence lives in
Redis) instead of all dropping out of routing after ``node_token_cache_ttl_s``. A token
deregistered meanwhile on another replica is accepted that much longer, only during the outage.
A Redis that does not answer makes the shared tier a miss (the database answers instead).

Three details keep the misses cheap when many heartbeats arrive at once: each entry lives a random
80-100 % of that time, so entries filled together (after a restart, or in a burst) do not all
expire together; a token is looked up once at a time, the requests that miss meanwhile waiting
for that lookup instead of each running their own; and the misses of different tokens within
``BATCH_WAIT_S`` of each other share one Redis read and one database query. When a replica
starts, or a whole cluster restarts, every node's first beat misses: thousands of lookups in a
few seconds, which one at a time (a pool checkout, ``BEGIN``, ``SELECT``, ``ROLLBACK`` each)
kept a replica busy for half a minute at 5,000 nodes (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..credentials import secret_hash
from ..errors import is_database_away
from .models import Node

# Jitter from a generator of our own: the process-wide one belongs to whoever embeds us
_jitter = random.Random()  # noqa: S311 - spreading, not secrecy

log = logging.getLogger("streamr.nodes")

STALE_IF_DOWN_S = 600.0
SHARED_TTL_S = 600.0
REVOCATION_POLL_S = 1.0
FEED_WAIT_S = 0.5
FEED_DOWN_TTL_S = 10.0
REVOCATIONS_KEPT = 10_000  # entries of the feed (trimmed roughly); a replica behind clears all
REVOKED_KEPT_S = 300.0  # far longer than any lookup takes
BATCH_WAIT_S = 0.001  # misses this close together share one lookup
BATCH_MAX = 500  # tokens a lookup asks for at most

# Stores an entry unless the node was deregistered meanwhile (its tombstone exists), atomically:
# a replica that read the node from the database just before another deregistered it must not
# put the token back for SHARED_TTL_S. KEYS: entry, the node's index of hashes, tombstone.
_PUT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
# Tombstone first, then every entry of the node, then the revocation feed.
# KEYS: the node's index, tombstone, the feed. ARGV: tombstone ms, entry key prefix, feed
# length, node id.
_FORGET = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
for _, token_hash in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    redis.call('DEL', ARGV[2] .. token_hash)
end
redis.call('DEL', KEYS[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'node', ARGV[4])
return 1
"""


Lookup = Callable[[Sequence[str]], Awaitable[Mapping[str, "NodeIdentity"]]]


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    stream_id: str
    owner_id: str


class SharedTokenCache:
    """The Redis tier: token hash -> identity, shared by every replica."""

    def __init__(
        self, redis: Redis, ttl_s: float = SHARED_TTL_S, prefix: str = "streamr:node-token"
    ) -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._put = redis.register_script(_PUT)
        self._forget = redis.register_script(_FORGET)

    def _entry_key(self, token_hash: str) -> str:
        return f"{self._prefix}:hash:{token_hash}"

    def _keys(self, node_id: str) -> tuple[str, str]:
        return f"{self._prefix}:node:{node_id}", f"{self._prefix}:revoked:{node_id}"

    async def get_many(self, token_hashes: Sequence[str]) -> dict[str, NodeIdentity]:
        """The entries Redis has among ``token_hashes``, in one round trip."""
        raws = await self._redis.mget([self._entry_key(h) for h in token_hashes])
        return {
            h: NodeIdentity(**json.loads(raw))
            for h, raw in zip(token_hashes, raws, strict=True)
            if raw is not None
        }

    async def put_many(self, identities: Mapping[str, NodeIdentity]) -> set[str]:
        """Store the entries, in one round trip; the token hashes stored (a node deregistered
        meanwhile is left out)."""
        hashes = list(identities)
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash in hashes:
                identity = identities[token_hash]
                index, tombstone = self._keys(identity.node_id)
                await self._put(
                    keys=[self._entry_key(token_hash), index, tombstone],
                    args=[json.dumps(vars(identity)), self._ttl_ms, token_hash],
                    client=pipe,
                )
            stored = await pipe.execute()
        return {h for h, ok in zip(hashes, stored, strict=True) if ok}

    async def forget_node(self, node_id: str) -> None:
        # The tombstone outlives any entry a lookup under way could still try to store.
        await self._forget(
            keys=[*self._keys(node_id), self._feed_key],
            args=[self._ttl_ms, self._entry_key(""), REVOCATIONS_KEPT, node_id],
        )

    @property
    def _feed_key(self) -> str:
        return f"{self._prefix}:revocations"

    async def revocations(self, after: str | None, limit: int = 1000) -> tuple[str, list[str]]:
        """The feed's position now and the node ids revoked after ``after`` (None: start at
        the end), at most ``limit`` of them (a full page tells the caller it fell behind)."""
        if after is None:
            last = await self._redis.xrevrange(self._feed_key, count=1)
            return (_text(last[0][0]) if last else "0-0"), []
        entries = await self._redis.xrange(self._feed_key, min=f"({after}", count=limit)
        if not entries:
            return after, []
        return _text(entries[-1][0]), [
            _text(fields.get(b"node") or fields.get("node") or b"") for _, fields in entries
        ]


class NodeTokenCache:
    def __init__(
        self,
        ttl_s: float = 10.0,
        max_entries: int = 100_000,
        shared: SharedTokenCache | None = None,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._shared = shared
        # token hash -> (expires, identity, when looked up)
        self._entries: dict[str, tuple[float, NodeIdentity, float]] = {}
        # Tokens being looked up, and those waiting for the next lookup to start.
        self._loading: dict[str, asyncio.Future[NodeIdentity | None]] = {}
        self._queued: list[str] = []
        self._query: Lookup | None = None
        self._batch_timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()
        # The revocation feed (with Redis): where this replica has read up to, and when.
        self._feed_position: str | None = None
        self._feed_read_at = -math.inf  # last successful read
        self._feed_tried_at = -math.inf  # last read, successful or not
        self._feed_reading: asyncio.Task[None] | None = None
        # Nodes deregistered lately (here or read from the feed), and when this replica learnt
        # it: a lookup that started before must not store the token it read.
        self._revoked_at: dict[str, float] = {}

    def get(self, token_hash: str) -> NodeIdentity | None:
        """A fresh entry; an expired one stays for ``stale`` (bounded by ``max_entries``).

        With Redis, an entry is trusted beyond ``FEED_DOWN_TTL_S`` only while the revocation
        feed is being read (``sync_revocations``)."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        now = time.monotonic()
        expires = entry[0]
        if self._shared is not None and now - self._feed_read_at > FEED_DOWN_TTL_S:
            expires = min(expires, entry[2] + FEED_DOWN_TTL_S)
        if expires <= now:
            return None
        return entry[1]

    async def sync_revocations(self) -> None:
        """Forget the nodes other replicas deregistered, read from the feed at most every
        ``REVOCATION_POLL_S``; one read at a time, the callers meanwhile waiting for it. A
        Redis that does not answer leaves the entries to ``FEED_DOWN_TTL_S`` (see ``get``)."""
        if self._shared is None or time.monotonic() - self._feed_tried_at < REVOCATION_POLL_S:
            return
        if self._feed_reading is None or self._feed_reading.done():
            self._feed_reading = asyncio.create_task(self._read_feed(self._shared))
        # A Redis that hangs must not hold every heartbeat: past FEED_WAIT_S the read goes on
        # without us, and until it succeeds ``get`` trusts entries for FEED_DOWN_TTL_S only.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(FEED_WAIT_S):
                await asyncio.shield(self._feed_reading)

    async def _read_feed(self, shared: SharedTokenCache) -> None:
        started = self._feed_tried_at = time.monotonic()
        limit = 1000
        try:
            position, revoked = await shared.revocations(self._feed_position, limit)
        except (RedisError, OSError):
            log.warning("node tokens: Redis unreachable; the revocation feed was not read")
            raise
        if self._feed_position is None or len(revoked) >= limit:
            # First read (nothing cached yet counts), or more revoked than a page: start over.
            self._entries.clear()
        else:
            self._revoked(revoked)
        self._feed_position = position
        self._feed_read_at = started

    def _revoked(self, node_ids: Iterable[str]) -> None:
        now = time.monotonic()
        gone = set(node_ids)
        if not gone:
            return
        for token_hash, (_, identity, _) in list(self._entries.items()):
            if identity.node_id in gone:
                del self._entries[token_hash]
        if len(self._revoked_at) > REVOCATIONS_KEPT:
            self._revoked_at = {
                n: at for n, at in self._revoked_at.items() if now - at < REVOKED_KEPT_S
            }
        self._revoked_at.update(dict.fromkeys(gone, now))

    def stale(self, token_hash: str, max_age_s: float = STALE_IF_DOWN_S) -> NodeIdentity | None:
        """An entry that expired less than ``max_age_s`` ago: only while the database is down."""
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] + max_age_s <= time.monotonic():
            return None
        return entry[1]

    def put(self, token_hash: str, identity: NodeIdentity) -> None:
        if self._ttl_s <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        ttl_s = self._ttl_s * _jitter.uniform(0.8, 1.0)
        now = time.monotonic()
        self._entries[token_hash] = (now + ttl_s, identity, now)

    async def forget_node(self, node_id: str) -> None:
        """Drop the node's entries here and in Redis (raises RedisError if Redis is away: the
        caller answers 503 and the deregistration is retried)."""
        self._revoked([node_id])
        if self._shared is not None:
            await self._shared.forget_node(node_id)

    async def load(self, token_hash: str, query: Lookup) -> NodeIdentity | None:
        """Redis, then ``query``, for a missing entry; or wait for the lookup already under way.

        Misses within ``BATCH_WAIT_S`` of each other go together (every caller passes the same
        ``query``: token hashes in, the identities found out)."""
        future = self._loading.get(token_hash)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            future.add_done_callback(_retrieved)
            self._loading[token_hash] = future
            self._queued.append(token_hash)
            self._query = query
            if len(self._queued) >= BATCH_MAX:
                self._start_lookup()
            elif self._batch_timer is None:
                self._batch_timer = loop.call_later(BATCH_WAIT_S, self._start_lookup)
        # Shielded: one caller giving up does not cancel the lookup the others wait for.
        return await asyncio.shield(future)

    def _start_lookup(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        hashes, self._queued = self._queued, []
        if hashes and self._query is not None:
            task = asyncio.get_running_loop().create_task(self._lookup(hashes, self._query))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _lookup(self, hashes: list[str], query: Lookup) -> None:
        started = time.monotonic()
        try:
            found = await self._find(hashes, query)
        except BaseException as exc:  # every waiter gets it; the next miss tries again
            for token_hash in hashes:
                future = self._loading.pop(token_hash, None)
                if future is not None and not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for token_hash in hashes:
            identity = found.get(token_hash)
            if identity is not None:
                identity = self._put_unless_revoked(token_hash, identity, started)
            future = self._loading.pop(token_hash, None)
            if future is not None and not future.done():
                future.set_result(identity)

    async def _find(self, hashes: list[str], query: Lookup) -> dict[str, NodeIdentity]:
        shared = self._shared if self._ttl_s > 0 else None
        found: dict[str, NodeIdentity] = {}
        if shared is not None:
            try:
                found = await shared.get_many(hashes)
            except RedisError:
                log.warning("node tokens: Redis unreachable; asking the database")
                shared = None  # nor try to store the answers
        missing = [h for h in hashes if h not in found]
        if not missing:
            return found
        from_database = dict(await query(missing))
        if shared is not None and from_database:
            try:
                stored = await shared.put_many(from_database)
            except RedisError:
                log.warning("node tokens: Redis unreachable; entries kept in this process only")
            else:  # the others were deregistered while we asked the database
                from_database = {h: i for h, i in from_database.items() if h in stored}
        return found | from_database

    def _put_unless_revoked(
        self, token_hash: str, identity: NodeIdentity, started: float
    ) -> NodeIdentity | None:
        if self._revoked_at.get(identity.node_id, -math.inf) >= started:
            return None  # deregistered while we looked it up
        self.put(token_hash, identity)
        return identity


def _retrieved(future: asyncio.Future[NodeIdentity | None]) -> None:
    if not future.cancelled():
        future.exception()  # marks it retrieved: every waiter that is still there gets it


async def lookup_node_token(
    sessions: async_sessionmaker[AsyncSession], token: str, cache: NodeTokenCache
) -> NodeIdentity | None:
    """The node a token belongs to, from the cache or (on a miss) the database."""
    token_hash = secret_hash(token)
    await cache.sync_revocations()
    identity = cache.get(token_hash)
    if identity is not None:
        return identity

    try:
        return await cache.load(token_hash, partial(_registered, sessions))
    except (DBAPIError, OSError) as exc:
        known = cache.stale(token_hash) if is_database_away(exc) else None
        if known is None:
            raise
        return known


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _registered(
    sessions: async_sessionmaker[AsyncSession], token_hashes: Sequence[str]
) -> dict[str, NodeIdentity]:
    """The registered nodes these token hashes belong to, in one query."""
    async with sessions() as session:
        rows = await session.execute(
            select(Node.token_hash, Node.id, Node.stream_id, Node.owner_id).where(
                Node.token_hash.in_(token_hashes), Node.deregistered_at.is_(None)
            )
        )
        return {
            row.token_hash: NodeIdentity(
                node_id=row.id, stream_id=row.stream_id, owner_id=row.owner_id
            )
            for row in rows
        }
