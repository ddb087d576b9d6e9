"""Reconciliation: what a node claims, what viewers receipted, and what is paid. Pure.

Per (node, session) the running totals are kept (``SessionTotals``) and an interval pays the
increase of ``paid = min(claimed, receipted)``, so interval boundaries never matter: a claim
that arrives before its receipts (or after) is paid once both are in, and never twice.

Its input is per-session summaries, not rows: ``SessionReceipts`` (what one session's receipts
of the interval add up to) and claimed bytes per session. ``summarize_receipts`` computes the
summaries from raw ``ReceiptFact`` rows (the simulator and the tests); the coordinator computes
the same numbers with one SQL query per interval (``reconcile_service``), and a test holds the
two equal on random receipts.

A receipt counts only as far as it is plausible: an ``ok`` receipt for a segment that was
attested before the receipt arrived, not older than ``max_receipt_age_s``, not faster than a
browser, at most the segment's attested size, and not a duplicate. Duplicates follow a monotonic
rule per (node, session): a sequence counts only if it is higher than every sequence counted for
that pair in earlier intervals, and once within the interval (if it was receipted twice, the
smaller ``min(bytes, size)`` counts). That is sound for live playback: a player fetches segments
in order and the watch page sends its receipt batches one at a time, in order; a segment fetched
again after a stall comes from another node (another pair). An honest node loses at most the
rare segment a viewer scrolls back to (the safe direction). The increases of one interval are
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
from collections.abc import Iterable, Mapping, Sequence
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
EVIDENCE_SAMPLE = 20  # sessions listed in a discrepancy's evidence, at most


@dataclass(frozen=True)
class ReconcileParams:
    tolerance: float = 0.10  # receipts may fall this share short of claims (lost batches, stalls)
    slack_segments: int = 2  # and at least this many segments short (a fetch the viewer gave up)
    window_slack_segments: int = 8  # a player starts a few segments behind live, and prefetches
    # A session's first claims from a node, none of its receipts in yet: hls.js starts three
    # segments behind live and fetches them at once, and their receipts come in the page's next
    # batch (every 5 s), which may land in the next interval; that much of the session's
    # shortfall is not held against the node (pay still waits for the receipts).
    opening_burst_segments: int = 3
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
    """Running totals of one (node, session)."""

    claimed: int = 0
    receipted: int = 0
    paid: int = 0
    excluded_reason: str | None = None
    max_sequence: int = -1  # highest sequence ever counted (a lower or equal one is a duplicate)
    ok_segments: int = 0  # ok receipts ever counted (the impossible-timing rule needs it)


@dataclass(frozen=True)
class SessionReceipts:
    """What one (node, session)'s receipts of an interval add up to, after the plausibility
    rules. Every receipt falls in exactly one of: counted (``ok_segments``, one per sequence),
    ``duplicates``, ``before_segment``, ``stale``, ``too_fast``, ``unknown_segment`` (all ``ok``
    receipts), ``mismatches`` or ``failures`` (the other outcomes)."""

    counted_bytes: int = 0  # sum over counted sequences of min(bytes, segment size)
    ok_segments: int = 0
    max_sequence: int = -1  # highest counted sequence, -1 for none
    size_mismatches: int = 0  # plausible ok receipts (duplicates too) whose bytes != size
    before_segment: int = 0  # received before the segment was attested
    too_fast: int = 0
    stale: int = 0
    unknown_segment: int = 0
    duplicates: int = 0
    ok_receipts: int = 0  # every ok receipt, counted or not
    mismatches: int = 0
    failures: int = 0  # error, stall
    first_at: datetime | None = None  # first and last receipt (any outcome)
    last_at: datetime | None = None


NO_RECEIPTS = SessionReceipts()
EMPTY_TOTALS = SessionTotals()


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
    ``start - max_receipt_age_s`` to ``end`` (for the plausibility cap and the target
    duration); ``sessions``: every session named by a claim or receipt (a claim for a session
    missing here is ``unknown_session``); ``claims``: claimed bytes per session and
    ``receipts``: summaries per session (``summarize_claims``, ``summarize_receipts``) of the
    claims and receipts received in [start, end)."""

    node_id: str
    stream_id: str
    start: datetime
    end: datetime
    segments: Mapping[int, SegmentFact]
    sessions: Mapping[str, SessionFact]
    claims: Mapping[str, int]
    receipts: Mapping[str, SessionReceipts]
    before: Mapping[str, SessionTotals]
    report_interval_s: float = 10.0
    # ``segment_window(segments, start, end)``, when the caller has it (the same for every node
    # of a stream in an interval); computed here otherwise.
    window: SegmentWindow | None = None
    # A window of several intervals (a backlog reconciled at once): per session, the bytes of
    # the segments attested while it was active (from the lookback before the interval of its
    # first claim or receipt to the end of the interval of its last). A session missing here
    # counts ``window.window_bytes``, which is exactly that for a window of one interval.
    session_window_bytes: Mapping[str, int] | None = None


@dataclass(frozen=True)
class SegmentWindow:
    """What the plausibility cap and the slack need from a stream's segments."""

    target_s: float  # the longest segment duration (the target duration)
    window_bytes: int  # bytes of the segments attested from the lookback to the interval's end
    largest: int  # the largest segment


def segment_window(
    segments: Mapping[int, SegmentFact],
    start: datetime,
    end: datetime,
    params: ReconcileParams = DEFAULT,
) -> SegmentWindow:
    lookback = start - timedelta(seconds=params.plausible_lookback_s)
    return SegmentWindow(
        target_s=_target_s(segments, params),
        window_bytes=sum(s.size for s in segments.values() if lookback <= s.attested_at < end),
        largest=max((s.size for s in segments.values()), default=0),
    )


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
    receipt_outcomes: Mapping[str, int] = field(default_factory=dict)  # ok/mismatch/failed
    # Receipts of real viewers (not probes, not controlled sessions), for trust.
    viewer_ok: int = 0
    viewer_failed: int = 0
    viewer_mismatch_sessions: int = 0


def _target_s(segments: Mapping[int, SegmentFact], params: ReconcileParams) -> float:
    durations = [s.duration_s for s in segments.values() if s.duration_s > 0]
    return max(durations) if durations else params.default_target_s


def max_receipt_bps(params: ReconcileParams) -> int:
    """The throughput limit as an integer, so SQL and Python compare it exactly."""
    return int(params.max_receipt_bps)


def _too_fast(nbytes: int, download_ms: int | None, params: ReconcileParams) -> bool:
    if not download_ms or download_ms <= 0 or nbytes <= 0:
        return False  # no timing, or 0 ms (loopback): nothing to judge
    return nbytes * 8000 > max_receipt_bps(params) * download_ms


def summarize_claims(claims: Iterable[ClaimFact]) -> dict[str, int]:
    """Claimed bytes per session."""
    out: dict[str, int] = defaultdict(int)
    for c in claims:
        out[c.session_id] += c.bytes
    return dict(out)


PLAUSIBLE = "plausible"  # an ok receipt that may count (unless its sequence was counted)


def classify_receipt(
    r: ReceiptFact, segment: SegmentFact | None, params: ReconcileParams = DEFAULT
) -> str:
    """Where one receipt falls, by the plausibility rules: ``PLAUSIBLE`` or the name of the
    ``SessionReceipts`` count it adds to (``mismatches``, ``failures``, ``unknown_segment``,
    ``before_segment``, ``stale``, ``too_fast``). Whether a plausible receipt counts depends
    on the sequences counted before it (``summarize_receipts``)."""
    if r.outcome != "ok":
        return "mismatches" if r.outcome == "mismatch" else "failures"
    if segment is None:
        return "unknown_segment"
    if r.received_at < segment.attested_at:
        return "before_segment"
    if r.received_at - segment.attested_at > timedelta(seconds=params.max_receipt_age_s):
        return "stale"
    if _too_fast(r.bytes, r.download_ms, params):
        return "too_fast"
    return PLAUSIBLE


def summarize_receipts(
    receipts: Iterable[ReceiptFact],
    segments: Mapping[int, SegmentFact],
    before: Mapping[str, SessionTotals],
    params: ReconcileParams = DEFAULT,
) -> dict[str, SessionReceipts]:
    """One node's receipts of an interval, summarized per session (the rules are in the module
    docstring). ``segments`` must hold every segment a receipt may name (a missing one is
    ``unknown_segment``); ``before`` gives each session's highest sequence counted so far."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counted: dict[str, dict[int, int]] = defaultdict(dict)  # session -> sequence -> bytes
    times: dict[str, list[datetime]] = {}
    for r in receipts:
        n = counts[r.session_id]
        span = times.setdefault(r.session_id, [r.received_at, r.received_at])
        span[0], span[1] = min(span[0], r.received_at), max(span[1], r.received_at)
        segment = segments.get(r.sequence)
        bucket = classify_receipt(r, segment, params)
        if bucket != PLAUSIBLE:
            n[bucket] += 1
            if bucket not in ("mismatches", "failures"):
                n["ok_receipts"] += 1
        else:
            assert segment is not None
            n["ok_receipts"] += 1
            if r.bytes != segment.size:
                n["size_mismatches"] += 1
            prior = before.get(r.session_id, EMPTY_TOTALS).max_sequence
            mine = counted[r.session_id]
            value = min(r.bytes, segment.size)
            if r.sequence <= prior:
                n["duplicates"] += 1
            elif r.sequence in mine:
                n["duplicates"] += 1
                mine[r.sequence] = min(mine[r.sequence], value)
            else:
                mine[r.sequence] = value
    out = {}
    for sid, n in counts.items():
        mine = counted.get(sid, {})
        first, last = times[sid]
        out[sid] = SessionReceipts(
            counted_bytes=sum(mine.values()),
            ok_segments=len(mine),
            max_sequence=max(mine, default=-1),
            first_at=first,
            last_at=last,
            **n,
        )
    return out


def _sample(values: Sequence[object]) -> list[object]:
    return list(values[:EVIDENCE_SAMPLE])


# Discrepancy kind -> the SessionReceipts count it records.
_NOTES = (
    ("mismatch", "mismatches"),
    ("unknown_segment", "unknown_segment"),
    ("stale_receipt", "stale"),
    ("duplicate_receipt", "duplicates"),
    ("size_mismatch", "size_mismatches"),
)


class _SessionWork:
    """What one session's receipts and claims add up to in this interval."""

    __slots__ = ("before", "claimed", "counted", "ok_new", "reason", "timing")

    def __init__(self, before: SessionTotals, claimed: int, summary: SessionReceipts) -> None:
        self.before = before
        self.claimed = claimed
        self.counted = summary.counted_bytes
        self.ok_new = summary.ok_segments
        self.reason = before.excluded_reason
        self.timing: list[str] = []  # why the timing is impossible, if it is
        if summary.before_segment:
            self.timing.append(f"{summary.before_segment} receipts before their segment existed")
        if summary.too_fast:
            self.timing.append(f"{summary.too_fast} downloads faster than any browser")


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
    window = inp.window or segment_window(inp.segments, inp.start, inp.end, params)
    target_s = window.target_s
    outcomes: dict[str, int] = defaultdict(int)
    for summary in inp.receipts.values():
        outcomes["ok"] += summary.ok_receipts
        outcomes["mismatch"] += summary.mismatches
        outcomes["failed"] += summary.failures

    discrepancies: list[Discrepancy] = []
    excluded: dict[str, str] = {}
    after: dict[str, SessionTotals] = dict(inp.before)
    increases: dict[str, int] = {}
    shortfall: dict[str, int] = {}  # growth of the unreceipted balance, per compared session
    claimed_now = claimed_total = receipted_total = plausible = 0
    active = 0
    viewer = [0, 0, 0]  # ok, failed, sessions with a mismatch
    burst = params.opening_burst_segments * window.largest
    opening = 0  # the shortfall of new sessions' opening bursts (see ReconcileParams)

    for sid in sorted(inp.claims.keys() | inp.receipts.keys()):
        before = inp.before.get(sid, EMPTY_TOTALS)
        summary = inp.receipts.get(sid, NO_RECEIPTS)
        work = _SessionWork(before, inp.claims.get(sid, 0), summary)
        fact = inp.sessions.get(sid)
        reason = _controlled_reason(work, fact, summary.last_at, target_s, params)
        claimed_total += work.claimed
        if reason is None and fact is not None and not fact.is_probe:
            viewer[0] += summary.ok_receipts
            viewer[1] += summary.failures
            viewer[2] += summary.mismatches > 0

        for kind, name in _NOTES:
            if count := getattr(summary, name):
                evidence: dict[str, object] = {"count": count}
                discrepancies.append(Discrepancy(kind, sid, work.claimed, work.counted, evidence))
        max_sequence = max(before.max_sequence, summary.max_sequence)
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
                before, claimed=claimed_cum, excluded_reason=reason, max_sequence=max_sequence
            )
            continue

        active += 1
        if inp.session_window_bytes is not None:
            plausible += inp.session_window_bytes.get(sid, window.window_bytes)
        else:
            plausible += window.window_bytes
        receipted_total += work.counted
        receipted_cum = before.receipted + work.counted
        if work.claimed:
            claimed_now += work.claimed
            shortfall[sid] = _growth(before, claimed_cum, receipted_cum, params)
            if before.claimed == 0 and _no_receipts(summary):  # new, its receipts still due
                opening += min(max(shortfall[sid], 0), burst)
        increases[sid] = max(0, min(claimed_cum, receipted_cum) - before.paid)
        after[sid] = SessionTotals(
            claimed=claimed_cum,
            receipted=receipted_cum,
            paid=before.paid,  # the increase is added below, once the cap is known
            max_sequence=max_sequence,
            ok_segments=before.ok_segments + work.ok_new,
        )

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

    slack = max(_slack(inp, claimed_now), params.slack_segments * window.largest) + opening
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
        receipt_outcomes={k: v for k, v in outcomes.items() if v},
        viewer_ok=viewer[0],
        viewer_failed=viewer[1],
        viewer_mismatch_sessions=viewer[2],
    )


def _no_receipts(summary: SessionReceipts) -> bool:
    return summary.ok_receipts + summary.mismatches + summary.failures == 0


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
