"""The simulated world: streams and their segments, friend nodes, viewer and probe sessions.

Time advances one reconciliation interval at a time; within it every session fetches the
segments attested in the interval (aggregated per segment, never per packet). Packet loss is a
per-fetch failure probability; a node's uplink caps how many sessions it serves well.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..verification.reconciliation import SegmentFact

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 100
    viewers_per_hour: int = 1_000  # sessions opened per simulated hour (churn), all streams
    hours: float = 1.0
    seed: int = 1
    nodes_per_stream: int = 50
    interval_s: int = 60
    segment_s: float = 6.0
    report_interval_s: float = 10.0
    bitrate_bps: int = 2_500_000
    loss: float = 0.05  # per-fetch failure probability (packet loss as the viewer sees it)
    receipt_batch_loss: float = 0.01  # share of (session, interval) receipt batches never sent
    probes_per_node_hour: float = 2.0  # sparse probing, Poisson times
    uplink_median_bps: float = 25e6  # lognormal across nodes
    uplink_sigma: float = 0.8
    watch_short_share: float = 0.4  # viewers who leave quickly (churn)
    watch_short_mean_s: float = 60.0
    watch_long_mean_s: float = 900.0


def watch_time(rng: random.Random, cfg: SimConfig) -> float:
    """How long a viewer (or a probe: they must look alike) stays."""
    mean = cfg.watch_short_mean_s if rng.random() < cfg.watch_short_share else cfg.watch_long_mean_s
    return max(rng.expovariate(1 / mean), cfg.segment_s)


class Stream:
    """A live stream's signed segments, one every ``segment_s`` from a per-stream offset."""

    def __init__(self, stream_id: str, cfg: SimConfig, rng: random.Random) -> None:
        self.stream_id = stream_id
        self.cfg = cfg
        self.offset_s = rng.uniform(0, cfg.segment_s)
        self.rng = random.Random(rng.random())  # noqa: S311 - a seeded simulation
        self.segments: dict[int, SegmentFact] = {}
        self.recent: list[SegmentFact] = []  # attested in the current interval
        self._next = 0

    def attested_at_s(self, sequence: int) -> float:
        return self.offset_s + (sequence + 1) * self.cfg.segment_s

    def advance(self, until_s: float, keep_s: float) -> list[SegmentFact]:
        """Attest the segments that end before ``until_s``; forget those older than keep_s."""
        new = []
        mean = self.cfg.bitrate_bps * self.cfg.segment_s / 8
        while self.attested_at_s(self._next) < until_s:
            seq = self._next
            at = EPOCH + timedelta(seconds=self.attested_at_s(seq))
            fact = SegmentFact(seq, int(mean * self.rng.uniform(0.8, 1.2)), at, self.cfg.segment_s)
            self.segments[seq] = fact
            new.append(fact)
            self._next += 1
        oldest = until_s - keep_s
        for seq in [s for s in self.segments if self.attested_at_s(s) < oldest]:
            del self.segments[seq]
        return new

    def window(self) -> Mapping[int, SegmentFact]:
        return self.segments


class Node:
    """A friend's node: its uplink, its own network, and how it behaves (its strategy)."""

    __slots__ = (
        "capacity",
        "connections",
        "delivered",
        "network",
        "node_id",
        "strategy",
        "stream",
        "uplink_bps",
    )

    def __init__(self, node_id: str, stream: Stream, uplink_bps: float, strategy) -> None:
        self.node_id = node_id
        self.stream = stream
        self.uplink_bps = uplink_bps
        self.capacity = max(int(uplink_bps // stream.cfg.bitrate_bps), 1)
        self.network = f"net-{node_id}"
        self.strategy = strategy
        self.connections = 0
        self.delivered = 0  # bytes that truly reached a viewer intact: the ground truth

    def overload_failure(self) -> float:
        """Extra failure probability when more sessions want it than its uplink carries."""
        if self.connections <= self.capacity:
            return 0.0
        return 1.0 - self.capacity / self.connections


class Session:
    """A viewer's (or the prober's) session; ``sources`` are node ids, the origin implied last."""

    __slots__ = (
        "avoid",
        "batch",
        "ends_s",
        "failed",
        "is_probe",
        "network",
        "opened_s",
        "polls",
        "receipt_s",
        "session_id",
        "sources",
        "stream",
    )

    def __init__(
        self,
        session_id: str,
        stream: Stream,
        opened_s: float,
        ends_s: float,
        network: str,
        is_probe: bool = False,
        polls: bool = True,
    ) -> None:
        self.session_id = session_id
        self.stream = stream
        self.opened_s = opened_s
        self.ends_s = ends_s
        self.network = network
        self.is_probe = is_probe
        self.polls = polls
        self.sources: list[str] = []
        self.avoid: set[str] = set()
        self.failed = False  # a fetch failed this interval: ask for sources again
        self.batch = (-1, False)  # (5-second receipt batch, lost?): the page batches receipts
        self.receipt_s = 0.0  # when its latest receipt reached the coordinator

    def deliver_receipt(self, sent_s: float) -> float:
        """When a receipt sent at ``sent_s`` arrives. The page posts one batch at a time, in
        fetch order, so a session's receipts never overtake each other: a batch may be late,
        but never earlier than the one before it (reconciliation's duplicate rule relies on
        it)."""
        self.receipt_s = max(self.receipt_s, sent_s)
        return self.receipt_s

    def batch_lost(self, received_s: float, rng: random.Random, loss: float) -> bool:
        """Whether the receipt batch this receipt went out in never arrived."""
        window = int(received_s // 5)
        if window != self.batch[0]:
            self.batch = (window, rng.random() < loss)
        return self.batch[1]

    def opened_at(self) -> datetime:
        return EPOCH + timedelta(seconds=self.opened_s)


def uplink(rng: random.Random, cfg: SimConfig) -> float:
    return cfg.uplink_median_bps * math.exp(rng.gauss(0, cfg.uplink_sigma))
