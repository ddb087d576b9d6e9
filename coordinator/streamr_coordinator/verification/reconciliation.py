"""Reconciliation: what a node claims, what viewers receipted, and what is paid. Pure.

Per (node, session) the running totals are kept (``SessionTotals``) and an interval pays the
increase of ``paid = min(claimed, receipted)``, so interval boundaries never matter: a claim
that arrives before its receipts (or after) is paid once both are in, and never twice.

A receipt counts only as far as it is plausible: an ``ok`` receipt for a segment that was
attested before the receipt arrived, not older than ``max_receipt_age_s``, the first for that
(session, sequence), at most the segment's attested size. The increases of one interval are
capped by ``plausible_bytes`` (segments that existed in the interval x the node's active
sessions x their sizes).

Sessions that look controlled by the node count nothing, for good (``excluded``):

- ``same_network``: opened from a network the node itself uses. A friend watching at home
  through their own node looks the same, so these claims are left out of the agree/disagree
  comparison: unpaid, but no mark against the node;
- ``no_playback``: the session never asked for its sources (a real watch page asks every 2 s);
- ``impossible_timing``: more segments than could have been played since the session opened,
  a receipt that arrived before its segment existed, or a download faster than any browser;
- ``unknown_session``: a claim for a session the coordinator never issued.

Probe sessions are the coordinator's own viewers: their receipts count like any viewer's and
they are never treated as controlled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

Outcome = Literal["agree", "disagree", "idle"]

SAME_NETWORK = "same_network"
NO_PLAYBACK = "no_playback"
IMPOSSIBLE_TIMING = "impossible_timing"
UNKNOWN_SESSION = "unknown_session"
# Reasons that are evidence of fabrication; ``same_network`` alone is not (see the docstring).
FABRICATION_REASONS = frozenset({NO_PLAYBACK, IMPOSSIBLE_TIMING, UNKNOWN_SESSION})
EVIDENCE_SAMPLE = 20  # sequences/sessions listed in a discrepancy's evidence, at most


@dataclass(frozen=True)
class ReconcileParams:
    tolerance: float = 0.10  # receipts may fall this share short of claims (lost batches, stalls)
    slack_segments: int = 2  # and at least this many segments short (a fetch the viewer gave up)
    window_slack_segments: int = 8  # a player starts a few segments behind live, and prefetches
    max_receipt_bps: float = 10e9  # faster than this is no browser (download_ms 0 is ignored)
    max_receipt_age_s: float = 600.0  # a receipt for an older segment counts nothing
    plausible_lookback_s: float = 120.0  # segments this long before the interval still count
    default_target_s: float = 2.0  # segment duration when the interval lists no segment


DEFAULT = ReconcileParams()


@dataclass(frozen=True)
class SegmentFact:
    sequence: int
    size: int
    attested_at: datetime
    duration_s: float


@dataclass(frozen=True)
class ReceiptFact:
    session_id: str
    sequence: int
    bytes: int
    outcome: str  # "ok", "mismatch", "error", "stall"
    received_at: datetime
    ttfb_ms: int | None = None
    download_ms: int | None = None


@dataclass(frozen=True)
class ClaimFact:
    session_id: str
    bytes: int
    segments: int
    received_at: datetime


@dataclass(frozen=True)
class SessionFact:
    session_id: str
    opened_at: datetime
    same_network_as_node: bool = False
    sources_polls: int = 0
    is_probe: bool = False


@dataclass(frozen=True)
class SessionTotals:
    """Running totals of one (node, session). ``seen_sequences`` holds only sequences recent
    enough to be receipted again (older receipts are stale anyway), so it stays small."""

    claimed: int = 0
    receipted: int = 0
    paid: int = 0
    excluded_reason: str | None = None
    seen_sequences: frozenset[int] = frozenset()
    ok_segments: int = 0  # ok receipts ever counted (the impossible-timing rule needs it)


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    session_id: str | None
    claimed: int
    receipted: int
    evidence: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class IntervalInput:
    """One node's interval. ``segments``: the stream's segments attested from
    ``start - max_receipt_age_s`` to ``end`` (a receipt for any other counts nothing);
    ``sessions``: every session named by a claim or receipt (a claim for a session missing
    here is ``unknown_session``); claims and receipts: those received in [start, end)."""

    node_id: str
    stream_id: str
    start: datetime
    end: datetime
    segments: Mapping[int, SegmentFact]
    sessions: Mapping[str, SessionFact]
    claims: Sequence[ClaimFact]
    receipts: Sequence[ReceiptFact]
    before: Mapping[str, SessionTotals]
    report_interval_s: float = 10.0


@dataclass(frozen=True)
class IntervalVerdict:
    claimed_bytes: int  # every claim of the interval, excluded sessions included
    receipted_bytes: int  # counted receipts (plausible, from sessions not controlled)
    plausible_bytes: int
    paid_bytes: int
    excluded: Mapping[str, str]  # session -> reason, for sessions seen in this interval
    discrepancies: tuple[Discrepancy, ...]
    outcome: Outcome
    after: Mapping[str, SessionTotals]
    # The outcome: of this interval's claims (same-network sessions left out), how much did
    # receipts not cover? That is the growth of each session's unreceipted balance
    # max(claimed x (1 - tolerance) - receipted, 0), so receipts that arrive before or after
    # their claims (a report straddling the boundary) cost nothing, and a lost batch is
    # judged once.
    compared_claimed_bytes: int = 0
    unmatched_bytes: int = 0
    ratio: float | None = None  # covered share: 1 - unmatched / compared claimed
    receipt_outcomes: Mapping[str, int] = field(default_factory=dict)  # count per outcome


def _target_s(segments: Mapping[int, SegmentFact], params: ReconcileParams) -> float:
    durations = [s.duration_s for s in segments.values() if s.duration_s > 0]
    return max(durations) if durations else params.default_target_s


def _too_fast(receipt: ReceiptFact, params: ReconcileParams) -> bool:
    if not receipt.download_ms or receipt.bytes <= 0:
        return False  # no timing, or 0 ms (loopback): nothing to judge
    return receipt.bytes * 8000 / receipt.download_ms > params.max_receipt_bps


def _sample(values: Sequence[object]) -> list[object]:
    return list(values[:EVIDENCE_SAMPLE])


class _SessionWork:
    """What one session's receipts and claims add up to in this interval."""

    __slots__ = ("before", "claimed", "counted", "notes", "ok_new", "reason", "seen", "timing")

    def __init__(self, before: SessionTotals) -> None:
        self.before = before
        self.claimed = 0
        self.counted = 0
        self.ok_new = 0
        self.seen = set(before.seen_sequences)
        self.reason = before.excluded_reason
        self.timing: list[str] = []  # why the timing is impossible, if it is
        self.notes: dict[str, list[int]] = defaultdict(list)  # discrepancy kind -> sequences


def _count_receipts(
    work: _SessionWork,
    receipts: Sequence[ReceiptFact],
    segments: Mapping[int, SegmentFact],
    params: ReconcileParams,
) -> None:
    max_age = timedelta(seconds=params.max_receipt_age_s)
    for r in receipts:
        if r.outcome != "ok":
            if r.outcome == "mismatch":
                work.notes["mismatch"].append(r.sequence)
            continue
        segment = segments.get(r.sequence)
        if segment is None:
            work.notes["unknown_segment"].append(r.sequence)
            continue
        if r.received_at < segment.attested_at:
            work.timing.append(f"receipt for segment {r.sequence} before it existed")
            continue
        if r.received_at - segment.attested_at > max_age:
            work.notes["stale_receipt"].append(r.sequence)
            continue
        if _too_fast(r, params):
            work.timing.append(f"segment {r.sequence}: {r.bytes} bytes in {r.download_ms} ms")
            continue
        if r.sequence in work.seen:
            work.notes["duplicate_receipt"].append(r.sequence)
            continue
        if r.bytes != segment.size:
            work.notes["size_mismatch"].append(r.sequence)
        work.seen.add(r.sequence)
        work.counted += min(r.bytes, segment.size)
        work.ok_new += 1


def _controlled_reason(
    work: _SessionWork,
    session: SessionFact | None,
    last_receipt_at: datetime | None,
    target_s: float,
    params: ReconcileParams,
) -> str | None:
    if work.reason is not None:
        return work.reason
    if session is None:
        return UNKNOWN_SESSION
    if session.is_probe:
        return None
    if session.same_network_as_node:
        return SAME_NETWORK
    if last_receipt_at is None:
        return None  # claims alone: judged once receipts (or none) arrive
    if session.sources_polls <= 0:
        return NO_PLAYBACK
    span_s = max((last_receipt_at - session.opened_at).total_seconds(), 0.0)
    playable = span_s / target_s + params.window_slack_segments
    ok_total = work.before.ok_segments + work.ok_new
    if ok_total > playable:
        work.timing.append(f"{ok_total} segments in {span_s:.0f} s since the session opened")
    return IMPOSSIBLE_TIMING if work.timing else None


def reconcile(inp: IntervalInput, params: ReconcileParams = DEFAULT) -> IntervalVerdict:
    """Reconcile one node's interval: pay the agreed increase, record every discrepancy."""
    target_s = _target_s(inp.segments, params)
    claims_by: dict[str, list[ClaimFact]] = defaultdict(list)
    receipts_by: dict[str, list[ReceiptFact]] = defaultdict(list)
    for c in inp.claims:
        claims_by[c.session_id].append(c)
    outcomes: dict[str, int] = defaultdict(int)
    for r in inp.receipts:
        receipts_by[r.session_id].append(r)
        outcomes[r.outcome] += 1

    lookback = inp.start - timedelta(seconds=params.plausible_lookback_s)
    window_bytes = sum(s.size for s in inp.segments.values() if lookback <= s.attested_at < inp.end)
    prune_before = inp.end - timedelta(seconds=params.max_receipt_age_s)

    discrepancies: list[Discrepancy] = []
    excluded: dict[str, str] = {}
    after: dict[str, SessionTotals] = dict(inp.before)
    increases: dict[str, int] = {}
    shortfall: dict[str, int] = {}  # growth of the unreceipted balance, per compared session
    claimed_now = claimed_total = receipted_total = 0
    active = 0

    for sid in sorted(claims_by.keys() | receipts_by.keys()):
        before = inp.before.get(sid, SessionTotals())
        work = _SessionWork(before)
        work.claimed = sum(c.bytes for c in claims_by.get(sid, ()))
        receipts = sorted(receipts_by.get(sid, ()), key=lambda r: (r.received_at, r.sequence))
        _count_receipts(work, receipts, inp.segments, params)
        last_at = receipts[-1].received_at if receipts else None
        reason = _controlled_reason(work, inp.sessions.get(sid), last_at, target_s, params)
        claimed_total += work.claimed

        for kind, sequences in work.notes.items():
            evidence: dict[str, object] = {"sequences": _sample(sequences), "count": len(sequences)}
            discrepancies.append(Discrepancy(kind, sid, work.claimed, work.counted, evidence))
        seen = frozenset(
            s
            for s in work.seen
            if (seg := inp.segments.get(s)) is None or seg.attested_at >= prune_before
        )
        claimed_cum = before.claimed + work.claimed
        if reason is not None:
            excluded[sid] = reason
            if reason != SAME_NETWORK and work.claimed:
                claimed_now += work.claimed
                shortfall[sid] = _growth(before, claimed_cum, before.receipted, params)
            evidence = {"receipted_if_counted": work.counted}
            if work.timing:
                evidence["timing"] = _sample(work.timing)
            if before.paid and before.excluded_reason is None:
                evidence["paid_before_exclusion"] = before.paid
            discrepancies.append(Discrepancy(reason, sid, work.claimed, 0, evidence))
            after[sid] = replace(
                before, claimed=claimed_cum, excluded_reason=reason, seen_sequences=seen
            )
            continue

        active += 1
        receipted_total += work.counted
        receipted_cum = before.receipted + work.counted
        if work.claimed:
            claimed_now += work.claimed
            shortfall[sid] = _growth(before, claimed_cum, receipted_cum, params)
        increases[sid] = max(0, min(claimed_cum, receipted_cum) - before.paid)
        after[sid] = SessionTotals(
            claimed=claimed_cum,
            receipted=receipted_cum,
            paid=before.paid,  # the increase is added below, once the cap is known
            seen_sequences=seen,
            ok_segments=before.ok_segments + work.ok_new,
        )

    plausible = window_bytes * active
    room = plausible
    paid_total = 0
    for sid, increase in increases.items():  # sorted by session id: a stable cap
        granted = min(increase, room)
        room -= granted
        paid_total += granted
        if granted:
            after[sid] = replace(after[sid], paid=after[sid].paid + granted)
    wanted = sum(increases.values())
    if wanted > paid_total:
        discrepancies.append(
            Discrepancy(
                "implausible",
                None,
                claimed_total,
                receipted_total,
                {"agreed_bytes": wanted, "plausible_bytes": plausible, "sessions": active},
            )
        )

    largest = max((seg.size for seg in inp.segments.values()), default=0)
    slack = max(_slack(inp, claimed_now), params.slack_segments * largest)
    unmatched = max(sum(shortfall.values()), 0)
    outcome, ratio = _outcome(claimed_now, unmatched, slack, params)
    if outcome == "disagree":
        short = sorted(((gap, sid) for sid, gap in shortfall.items() if gap > 0), reverse=True)
        discrepancies.append(
            Discrepancy(
                "claims_exceed_receipts",
                None,
                claimed_now,
                claimed_now - unmatched,
                {
                    "ratio": ratio,
                    "tolerance": params.tolerance,
                    "slack_bytes": int(slack),
                    "sessions": _sample([sid for _, sid in short]),
                },
            )
        )
    return IntervalVerdict(
        claimed_bytes=claimed_total,
        receipted_bytes=receipted_total,
        plausible_bytes=plausible,
        paid_bytes=paid_total,
        excluded=excluded,
        discrepancies=tuple(discrepancies),
        outcome=outcome,
        after=after,
        compared_claimed_bytes=claimed_now,
        unmatched_bytes=unmatched,
        ratio=ratio,
        receipt_outcomes=dict(outcomes),
    )


def _slack(inp: IntervalInput, claimed: int) -> float:
    """One report interval of the node's claimed rate: a report and its receipts may straddle
    the interval boundary."""
    length_s = max((inp.end - inp.start).total_seconds(), 1.0)
    return claimed / length_s * inp.report_interval_s


def _growth(
    before: SessionTotals, claimed_cum: int, receipted_cum: int, params: ReconcileParams
) -> int:
    """Growth of the session's unreceipted balance beyond the tolerance: an honest node's
    small drift (responses it sent whose viewer gave up, a lost batch) never adds up to it."""
    keep = 1 - params.tolerance
    after = max(keep * claimed_cum - receipted_cum, 0)
    return int(after - max(keep * before.claimed - before.receipted, 0))


def _outcome(
    claimed: int, unmatched: int, slack: float, params: ReconcileParams
) -> tuple[Outcome, float | None]:
    if claimed == 0:
        return "idle", None  # nothing claimed: nothing to agree or disagree with
    ratio = max(0.0, 1.0 - unmatched / claimed)
    if unmatched <= claimed * params.tolerance + slack:
        return "agree", ratio
    return "disagree", ratio
