"""The stream lifecycle as a transition table, kept pure so it can be tested exhaustively.

READY -> (TESTING) -> LIVE -> OFFLINE -> STALE -> ARCHIVED, and back to READY. The ingest's
publish hooks drive LIVE/TESTING and OFFLINE, timers drive STALE and ARCHIVED, and the owner may
make any transition the table allows (for example archiving a stream or resetting it to READY).
"""

from __future__ import annotations

import enum


class StreamStatus(enum.StrEnum):
    READY = "READY"
    TESTING = "TESTING"
    LIVE = "LIVE"
    OFFLINE = "OFFLINE"
    STALE = "STALE"
    ARCHIVED = "ARCHIVED"


S = StreamStatus

TRANSITIONS: dict[StreamStatus, frozenset[StreamStatus]] = {
    S.READY: frozenset({S.TESTING, S.LIVE, S.ARCHIVED}),
    S.TESTING: frozenset({S.LIVE, S.OFFLINE, S.READY}),
    S.LIVE: frozenset({S.OFFLINE}),
    S.OFFLINE: frozenset({S.LIVE, S.TESTING, S.STALE, S.READY, S.ARCHIVED}),
    S.STALE: frozenset({S.LIVE, S.TESTING, S.ARCHIVED, S.READY}),
    S.ARCHIVED: frozenset({S.READY}),
}


def allowed_next(current: StreamStatus) -> list[str]:
    """The states reachable from ``current``, in lifecycle order (for error messages)."""
    order = list(StreamStatus)
    return [state.value for state in sorted(TRANSITIONS[current], key=order.index)]


def can_transition(current: StreamStatus, target: StreamStatus) -> bool:
    return target in TRANSITIONS[current]


ON_AIR = frozenset({S.LIVE.value, S.TESTING.value})


def on_air(status: str) -> bool:
    """Being published: the origin is cutting HLS, so viewers can watch and nodes can relay."""
    return status in ON_AIR
