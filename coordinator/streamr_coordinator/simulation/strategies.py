"""How a simulated node behaves: honestly, or one of the ways a friend might try to cheat.

A strategy decides, per fetch a session asks of the node, what the node intends to send
(``ok``: the real segment; ``error``/``stall``: nothing or too slowly; ``mismatch``: stale or
altered bytes) and how many bytes it claims for it; it may also send each usage report twice
under new ids, keep claiming for sessions that left, or fabricate sessions of its own.
The node never learns which sessions are probes: it sees what any node sees (session age, how
many segments the session asked for), and probes are drawn to look like viewers in both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Fabrication = Literal["own_network", "remote_no_playback", "confederate"]


@dataclass
class Strategy:
    name: str = "honest"
    # Expected to be caught by trust (warned, then penalised); the others earn nothing extra
    # or are bounded (see each docstring), which the fraud suite checks instead.
    caught_by_trust: bool = False
    report_copies: int = 1  # usage reports sent per report (each under a new report id)
    ghost_s: float = 0.0  # keep claiming for a session this long after it left
    fabricate: Fabrication | None = None
    fabricated_sessions: int = 0

    def intent(self, age_s: float, requests: int, rng: random.Random) -> str:
        """What the node sends a session whose age and request count it knows."""
        return "ok"

    def claim(self, intent: str, outcome: str, size: int, rng: random.Random) -> int:
        """An honest node counts a response once the kernel took its last byte: every ``ok``,
        and about half of the fetches the viewer gave up on (sent, but too late)."""
        if outcome == "ok" or (intent == "ok" and rng.random() < 0.5):
            return size
        return 0


class Honest(Strategy):
    pass


@dataclass
class Inflate(Strategy):
    """Claims ``factor`` times what it served."""

    name: str = "inflate"
    caught_by_trust: bool = True
    factor: float = 2.0

    def claim(self, intent: str, outcome: str, size: int, rng: random.Random) -> int:
        return int(super().claim(intent, outcome, size, rng) * self.factor)


@dataclass
class ServeNothing(Strategy):
    """Answers every request with an error, claims every segment asked of it."""

    name: str = "serve_nothing"
    caught_by_trust: bool = True

    def intent(self, age_s: float, requests: int, rng: random.Random) -> str:
        return "error"

    def claim(self, intent: str, outcome: str, size: int, rng: random.Random) -> int:
        return size


@dataclass
class Altered(Strategy):
    """Serves stale or altered bytes (cheaper to produce than the real segment), claims them."""

    name: str = "altered_bytes"
    caught_by_trust: bool = True

    def intent(self, age_s: float, requests: int, rng: random.Random) -> str:
        return "mismatch"

    def claim(self, intent: str, outcome: str, size: int, rng: random.Random) -> int:
        return size


@dataclass
class ProbeGuesser(Strategy):
    """Serves well the sessions it guesses are probes (young ones, with few requests), stalls
    ``bad_share`` of the others' fetches to save uplink, and claims everything."""

    name: str = "probe_guesser"
    caught_by_trust: bool = True
    young_s: float = 120.0
    bad_share: float = 0.5

    def guesses_probe(self, age_s: float, requests: int) -> bool:
        return age_s < self.young_s

    def intent(self, age_s: float, requests: int, rng: random.Random) -> str:
        if self.guesses_probe(age_s, requests) or rng.random() >= self.bad_share:
            return "ok"
        return "stall"

    def claim(self, intent: str, outcome: str, size: int, rng: random.Random) -> int:
        return size


@dataclass
class ReplayReports(Strategy):
    """Sends each usage report twice: once as is (the unique report id drops it) and once
    under a new id, so every claim arrives twice."""

    name: str = "replay_reports"
    caught_by_trust: bool = True
    report_copies: int = 2


@dataclass
class GhostClaims(Strategy):
    """Keeps claiming for sessions for ``ghost_s`` after they left it (sessions it no longer,
    or never, served)."""

    name: str = "ghost_claims"
    caught_by_trust: bool = True
    ghost_s: float = 1_800.0


@dataclass
class OwnNetworkSessions(Strategy):
    """Opens viewer sessions from its own network and forges their receipts and claims.
    Never paid (same network); no trust penalty, since a friend watching at home looks alike."""

    name: str = "own_network_sessions"
    fabricate: Fabrication | None = "own_network"
    fabricated_sessions: int = 3


@dataclass
class RemoteSessionsNoPlayback(Strategy):
    """Opens sessions from other networks (a VPN) and forges receipts, without playing them:
    the sessions never ask for their sources."""

    name: str = "remote_sessions_no_playback"
    caught_by_trust: bool = True
    fabricate: Fabrication | None = "remote_no_playback"
    fabricated_sessions: int = 3


@dataclass
class Confederate(Strategy):
    """A confederate on another network runs real sessions (they poll, like a watch page) and
    forges ok receipts at playback pace without downloading. Indistinguishable from a viewer by
    construction: not caught, but bounded to one real-time copy of the stream per session."""

    name: str = "confederate"
    fabricate: Fabrication | None = "confederate"
    fabricated_sessions: int = 1


CHEATERS: tuple[type[Strategy], ...] = (
    Inflate,
    ServeNothing,
    Altered,
    ProbeGuesser,
    ReplayReports,
    GhostClaims,
    OwnNetworkSessions,
    RemoteSessionsNoPlayback,
    Confederate,
)
