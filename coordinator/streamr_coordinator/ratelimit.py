"""Fixed-window attempt counters, used to throttle guessing of passwords, keys and codes.

Shared across replicas through Redis when configured; per process otherwise.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class AttemptCounter(Protocol):
    async def hit(self, key: str, window_s: int) -> int:
        """Count one attempt for ``key`` and return how many fell in the current window."""
        ...

    async def count(self, key: str, window_s: int) -> int:
        """How many attempts fell in the current window, without counting one."""
        ...


class InProcessAttemptCounter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, tuple[int, int]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, window_s: int) -> int:
        window = int(time.monotonic() // window_s)
        current, count = self._windows.get(key, (window, 0))
        count = count + 1 if current == window else 1
        if len(self._windows) >= self._max_keys and key not in self._windows:
            self._windows.clear()  # a flood of distinct keys must not grow memory without bound
        self._windows[key] = (window, count)
        return count

    async def count(self, key: str, window_s: int) -> int:
        current, count = self._windows.get(key, (None, 0))
        return count if current == int(time.monotonic() // window_s) else 0


class RedisAttemptCounter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def hit(self, key: str, window_s: int) -> int:
        window = int(time.time() // window_s)
        name = f"streamr:attempts:{key}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_s * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def count(self, key: str, window_s: int) -> int:
        value = await self._redis.get(f"streamr:attempts:{key}:{int(time.time() // window_s)}")
        return int(value or 0)
