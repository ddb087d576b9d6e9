"""Everything a request needs that outlives it, built once per process from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .accounts.signing_keys import KeyRing
from .database import create_engine, session_factory
from .nodes.auth import NodeTokenCache
from .nodes.last_seen import LastSeenRecorder
from .nodes.presence import InProcessPresence, PresenceStore, RedisPresence
from .ratelimit import AttemptCounter, InProcessAttemptCounter, RedisAttemptCounter
from .settings import Settings


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

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        settings.prepare_data_dir()
        engine = create_engine(settings.sqlalchemy_url)
        keys = KeyRing.load(
            settings.data_dir,
            settings.jwt_private_key.get_secret_value() if settings.jwt_private_key else None,
        )
        presence: PresenceStore
        attempts: AttemptCounter
        if settings.redis_url is not None:
            redis = Redis.from_url(settings.redis_url.get_secret_value())
            presence, attempts = RedisPresence(redis), RedisAttemptCounter(redis)
        else:
            presence, attempts = InProcessPresence(), InProcessAttemptCounter()
        sessions = session_factory(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            keys=keys,
            presence=presence,
            attempts=attempts,
            node_tokens=NodeTokenCache(ttl_s=settings.node_token_cache_ttl_s),
            last_seen=LastSeenRecorder(sessions),
        )

    async def close(self) -> None:
        await self.last_seen.drain()
        await self.presence.close()
        await self.engine.dispose()


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.ctx.sessions() as session:
        yield session
