"""Everything a request needs that outlives it, built once per process from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .accounts.signing_keys import KeyRing
from .attestation.signer import SegmentSigner
from .database import create_engine, session_factory
from .ingest.auth import load_ingest_secret
from .nodes.auth import NodeTokenCache, SharedTokenCache
from .nodes.last_seen import LastSeenRecorder
from .nodes.presence import InProcessPresence, PresenceStore, RedisPresence
from .ratelimit import AttemptCounter, InProcessAttemptCounter, RedisAttemptCounter
from .settings import Settings
from .verification.networks import NetworkHasher, load_network_key
from .verification.probe_requests import (
    InProcessProbeRequests,
    ProbeRequests,
    RedisProbeRequests,
)
from .viewers.routing_inputs import RoutingInputsCache


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyRing
    presence: PresenceStore
    attempts: AttemptCounter
    node_tokens: NodeTokenCache
    last_seen: LastSeenRecorder
    signer: SegmentSigner
    ingest_secret: str
    networks: NetworkHasher  # viewer/node network hashes (verification/networks.py)
    probe_requests: ProbeRequests  # targeted probes for the prober (shared through Redis)
    routing_inputs: RoutingInputsCache  # each stream's nodes and signals, for a second

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        settings.prepare_data_dir()
        engine = create_engine(settings.sqlalchemy_url)
        keys = KeyRing.load(settings.data_dir, secret_value(settings.jwt_private_key))
        presence: PresenceStore
        attempts: AttemptCounter
        probe_requests: ProbeRequests
        shared_tokens: SharedTokenCache | None = None
        if settings.redis_url is not None:
            redis = Redis.from_url(settings.redis_url.get_secret_value())
            presence, attempts = RedisPresence(redis), RedisAttemptCounter(redis)
            probe_requests = RedisProbeRequests(redis)
            # Shared by the replicas: a token costs one database lookup, not one per replica.
            shared_tokens = SharedTokenCache(redis)
        else:
            presence, attempts = InProcessPresence(), InProcessAttemptCounter()
            probe_requests = InProcessProbeRequests()
        sessions = session_factory(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            keys=keys,
            presence=presence,
            attempts=attempts,
            node_tokens=NodeTokenCache(ttl_s=settings.node_token_cache_ttl_s, shared=shared_tokens),
            last_seen=LastSeenRecorder(sessions),
            signer=SegmentSigner.load(
                settings.data_dir,
                secret_value(settings.attestation_private_key),
            ),
            ingest_secret=load_ingest_secret(
                settings.data_dir, secret_value(settings.ingest_secret)
            ),
            networks=NetworkHasher(
                load_network_key(settings.data_dir, secret_value(settings.network_hash_key)),
                sessions,
            ),
            probe_requests=probe_requests,
            routing_inputs=RoutingInputsCache(
                settings.routing_inputs_ttl_s, sent_window_s=settings.heartbeat_interval_s
            ),
        )

    async def close(self) -> None:
        await self.last_seen.drain()
        await self.networks.drain()
        await self.presence.close()
        await self.engine.dispose()


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


async def get_context(request: Request) -> AppContext:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, and that
    # hand-off cost more than the whole heartbeat did (see docs/benchmarks.md).
    return request.app.state.ctx


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.ctx.sessions() as session:
        yield session
