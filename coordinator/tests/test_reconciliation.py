"""Reconciliation as a pure function: each rule on its own, then hypothesis over random runs of
intervals for the money invariants (never paid beyond what both sides and plausibility allow,
nothing paid twice, nothing lost at a boundary). No server, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamr_coordinator.verification.reconciliation import (
    ClaimFact,
    IntervalInput,
    ReceiptFact,
    ReconcileParams,
    SegmentFact,
    SessionFact,
    SessionReceipts,
    SessionTotals,
    reconcile,
    summarize_claims,
    summarize_receipts,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SIZE = 1_000_000
SEG_S = 2.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def segments(first: int = 0, count: int = 60, size: int = SIZE) -> dict[int, SegmentFact]:
    """Segment k is attested at k * 2 s."""
    return {k: SegmentFact(k, size, at(k * SEG_S), SEG_S) for k in range(first, first + count)}


def viewer(sid: str = "v1", **kw) -> SessionFact:
    values = {"opened_at": at(-10), "sources_polls": 5}
    values.update(kw)
    return SessionFact(sid, **values)


def ok(sid: str, seq: int, seconds: float | None = None, nbytes: int = SIZE, **kw) -> ReceiptFact:
    when = at(seq * SEG_S + 1 if seconds is None else seconds)
    return ReceiptFact(sid, seq, nbytes, kw.pop("outcome", "ok"), when, **kw)


def claim(sid: str, nbytes: int, seconds: float = 50) -> ClaimFact:
    return ClaimFact(sid, nbytes, max(nbytes // SIZE, 1), at(seconds))


def interval(
    claims=(), receipts=(), sessions=None, before=None, start=0, length=60, segs=None, params=None
):
    """Raw claims and receipts, summarized as the service's SQL would (``summarize_*``)."""
    sessions = sessions or {"v1": viewer()}
    segs = segs if segs is not None else segments()
    before = before or {}
    return IntervalInput(
        node_id="n1",
        stream_id="s1",
        start=at(start),
        end=at(start + length),
        segments=segs,
        sessions=sessions,
        claims=summarize_claims(claims),
        receipts=summarize_receipts(receipts, segs, before, params or ReconcileParams()),
        before=before,
        report_interval_s=10.0,
    )


def kinds(verdict) -> set[str]:
    return {d.kind for d in verdict.discrepancies}


# --- Agreement and payment ---------------------------------------------------------------------


def test_claims_matched_by_receipts_are_paid_in_full():
    v = reconcile(interval([claim("v1", 20 * SIZE)], [ok("v1", k) for k in range(20)]))
    assert (v.claimed_bytes, v.receipted_bytes, v.paid_bytes) == (20 * SIZE, 20 * SIZE, 20 * SIZE)
    assert v.outcome == "agree" and v.ratio == 1.0 and not v.discrepancies
    assert v.after["v1"].paid == 20 * SIZE and v.plausible_bytes >= v.paid_bytes


def test_a_claim_is_paid_once_its_receipts_arrive_and_never_twice():
    first = reconcile(interval([claim("v1", 5 * SIZE)]))
    assert first.paid_bytes == 0 and first.after["v1"].claimed == 5 * SIZE
    second = reconcile(
        interval(receipts=[ok("v1", k, 61) for k in range(5)], before=first.after, start=60)
    )
    assert second.paid_bytes == 5 * SIZE and second.outcome == "idle"
    third = reconcile(interval(before=second.after, start=120, receipts=[ok("v1", 40, 121)]))
    assert third.paid_bytes == 0  # no claim left to match


def test_an_interval_with_nothing_is_idle():
    v = reconcile(interval())
    assert v.outcome == "idle" and v.paid_bytes == 0 and v.plausible_bytes == 0


def test_a_duplicate_receipt_counts_once():
    v = reconcile(interval([claim("v1", 2 * SIZE)], [ok("v1", 3), ok("v1", 3, 9)]))
    assert v.receipted_bytes == SIZE and v.paid_bytes == SIZE
    assert "duplicate_receipt" in kinds(v)
    again = reconcile(interval(receipts=[ok("v1", 3, 70)], before=v.after, start=60))
    assert again.receipted_bytes == 0  # the sequence was already counted in an earlier interval


def test_a_receipt_larger_than_the_segment_counts_its_size_and_is_recorded():
    v = reconcile(interval([claim("v1", 3 * SIZE)], [ok("v1", 1, nbytes=3 * SIZE)]))
    assert v.receipted_bytes == SIZE and "size_mismatch" in kinds(v)


def test_receipts_for_unknown_or_stale_segments_count_nothing():
    v = reconcile(interval([claim("v1", SIZE)], [ok("v1", 999, 10)]))
    assert v.receipted_bytes == 0 and "unknown_segment" in kinds(v)
    late = reconcile(
        interval([claim("v1", SIZE)], [ok("v1", 0, 700)], start=660),
        ReconcileParams(max_receipt_age_s=600),
    )
    (d,) = [d for d in late.discrepancies if d.kind == "stale_receipt"]
    assert d.evidence == {"count": 1}
    assert late.receipted_bytes == 0 and "stale_receipt" in kinds(late)


def test_mismatch_error_and_stall_receipts_count_nothing_and_mismatch_is_evidence():
    receipts = [
        ok("v1", 1, outcome="mismatch"),
        ok("v1", 2, outcome="error", nbytes=0),
        ok("v1", 3, outcome="stall", nbytes=10),
    ]
    v = reconcile(interval([claim("v1", 3 * SIZE)], receipts))
    assert v.receipted_bytes == 0 and v.paid_bytes == 0
    assert "mismatch" in kinds(v) and v.outcome == "disagree"
    assert v.receipt_outcomes == {"mismatch": 1, "failed": 2}
    assert (v.viewer_ok, v.viewer_failed, v.viewer_mismatch_sessions) == (0, 2, 1)


def test_inflated_claims_disagree_and_are_paid_only_what_receipts_cover():
    v = reconcile(interval([claim("v1", 40 * SIZE)], [ok("v1", k) for k in range(20)]))
    assert v.paid_bytes == 20 * SIZE and v.outcome == "disagree"
    assert v.ratio == pytest.approx(1 - (40 * 0.9 - 20) / 40)
    (d,) = [d for d in v.discrepancies if d.kind == "claims_exceed_receipts"]
    assert d.evidence["sessions"] == ["v1"] and d.claimed == 40 * SIZE


def test_a_lost_receipt_batch_stays_within_tolerance_and_slack():
    receipts = [ok("v1", k) for k in range(28) if k not in (10, 11)]  # one 5 s batch lost
    v = reconcile(interval([claim("v1", 28 * SIZE)], receipts))
    assert v.outcome == "agree" and v.paid_bytes == 26 * SIZE


def test_receipts_ahead_of_claims_at_a_boundary_cost_nothing_later():
    first = reconcile(interval([claim("v1", 25 * SIZE)], [ok("v1", k) for k in range(30)]))
    assert first.outcome == "agree"
    later = reconcile(interval([claim("v1", 5 * SIZE, 61)], before=first.after, start=60))
    assert later.outcome == "agree" and later.paid_bytes == 5 * SIZE


def test_a_new_sessions_opening_burst_receipted_after_the_boundary_is_no_mark():
    # A viewer arrives at 50 s: three segments at once to reach the live edge, then one every
    # 2 s; the node reports them all before 60 s, the page's receipts for them land after it.
    sessions = {"v1": viewer(opened_at=at(50))}
    claims = [claim("v1", 3 * SIZE, 52), claim("v1", 2 * SIZE, 59)]
    first = reconcile(interval(claims, sessions=sessions))  # no receipts in this interval
    assert first.outcome == "agree" and first.paid_bytes == 0
    late = [ok("v1", k, 61) for k in (22, 23, 24, 25, 26)]
    second = reconcile(interval(receipts=late, sessions=sessions, before=first.after, start=60))
    assert second.paid_bytes == 5 * SIZE


def test_the_opening_allowance_is_once_per_session_and_only_its_burst():
    sessions = {"v1": viewer(opened_at=at(50))}
    # A new session claimed for far more than its burst, with no receipts: still disagree.
    v = reconcile(interval([claim("v1", 10 * SIZE, 59)], sessions=sessions))
    assert v.outcome == "disagree"
    # The same burst once the session is known from an earlier interval: held against the node.
    known = reconcile(interval([claim("v1", SIZE, 30)], [ok("v1", 14, 31)], sessions))
    assert known.outcome == "agree"
    later = reconcile(
        interval([claim("v1", 5 * SIZE, 119)], sessions=sessions, before=known.after, start=60)
    )
    assert later.outcome == "disagree"


# --- Controlled sessions -----------------------------------------------------------------------


def test_a_same_network_session_is_unpaid_but_no_mark_against_the_node():
    sessions = {"v1": viewer(same_network_as_node=True)}
    v = reconcile(interval([claim("v1", 5 * SIZE)], [ok("v1", k) for k in range(5)], sessions))
    assert v.paid_bytes == 0 and v.receipted_bytes == 0 and v.excluded == {"v1": "same_network"}
    assert v.outcome == "idle" and "same_network" in kinds(v)
    # Excluded for good, even if the node's address changes later.
    later = reconcile(
        interval([claim("v1", SIZE, 61)], [ok("v1", 35)], {"v1": viewer()}, v.after, start=60)
    )
    assert later.paid_bytes == 0 and later.excluded == {"v1": "same_network"}


def test_a_session_that_never_polled_its_sources_is_fabricated():
    sessions = {"v1": viewer(sources_polls=0)}
    v = reconcile(interval([claim("v1", 5 * SIZE)], [ok("v1", k) for k in range(5)], sessions))
    assert v.paid_bytes == 0 and v.excluded == {"v1": "no_playback"} and v.outcome == "disagree"


def test_more_segments_than_playable_is_impossible_timing():
    sessions = {"v1": viewer(opened_at=at(50))}
    receipts = [ok("v1", k, 55) for k in range(25, 45)]  # 20 segments within 5 s of opening
    v = reconcile(interval([claim("v1", 20 * SIZE)], receipts, sessions, segs=segments()))
    assert v.excluded == {"v1": "impossible_timing"} and v.paid_bytes == 0
    (d,) = [d for d in v.discrepancies if d.kind == "impossible_timing"]
    assert d.evidence["receipted_if_counted"] == 0 or d.evidence["timing"]


def test_a_receipt_before_its_segment_existed_is_impossible_timing():
    v = reconcile(interval([claim("v1", SIZE)], [ok("v1", 20, 10)]))
    assert v.excluded == {"v1": "impossible_timing"}


def test_a_download_faster_than_any_browser_is_impossible_timing():
    fast = [ok("v1", 1, download_ms=1)]  # 1 MB in 1 ms: 8 Gbit/s
    params = ReconcileParams(max_receipt_bps=1e9)
    v = reconcile(interval([claim("v1", SIZE)], fast, params=params), params)
    assert v.excluded == {"v1": "impossible_timing"}
    loopback = reconcile(interval([claim("v1", SIZE)], [ok("v1", 1, download_ms=0)]))
    assert loopback.excluded == {} and loopback.paid_bytes == SIZE


def test_a_claim_for_a_session_never_issued_counts_nothing():
    v = reconcile(interval([claim("ghost", 5 * SIZE)]))
    assert v.excluded == {"ghost": "unknown_session"} and v.outcome == "disagree"


def test_probe_sessions_count_like_viewers_and_are_never_controlled():
    sessions = {"p1": viewer("p1", is_probe=True, same_network_as_node=True, sources_polls=0)}
    v = reconcile(interval([claim("p1", 3 * SIZE)], [ok("p1", k) for k in range(3)], sessions))
    assert v.excluded == {} and v.paid_bytes == 3 * SIZE and v.outcome == "agree"


def test_a_session_excluded_after_it_was_paid_records_what_it_was_paid():
    first = reconcile(interval([claim("v1", 2 * SIZE)], [ok("v1", 0), ok("v1", 1)]))
    later = reconcile(
        interval([claim("v1", SIZE, 61)], [ok("v1", 50, 62)], before=first.after, start=60)
    )  # segment 50 is attested at 100 s: received before it existed
    (d,) = [d for d in later.discrepancies if d.kind == "impossible_timing"]
    assert d.evidence["paid_before_exclusion"] == 2 * SIZE and later.paid_bytes == 0


# --- Plausibility ------------------------------------------------------------------------------


def test_the_plausibility_cap_holds_and_the_rest_waits_for_room():
    few = {k: SegmentFact(k, SIZE, at(k * SEG_S), SEG_S) for k in range(3)}
    before = {"v1": SessionTotals(claimed=10 * SIZE, receipted=10 * SIZE)}
    v = reconcile(interval([claim("v1", SIZE)], before=before, segs=few))
    assert v.plausible_bytes == 3 * SIZE and v.paid_bytes == 3 * SIZE
    assert "implausible" in kinds(v)
    more = reconcile(interval([claim("v1", SIZE, 61)], before=v.after, start=60, segs=segments()))
    assert more.paid_bytes == 7 * SIZE  # the agreed rest (min(11, 10) - 3), once plausible


def test_a_sequence_not_above_the_highest_counted_one_is_a_duplicate():
    """Live playback fetches in order: once segment 5 counted, 3 and 5 again are duplicates,
    also in a later interval; 4 and 4 in one interval count once (the smaller)."""
    v = reconcile(interval([claim("v1", 3 * SIZE)], [ok("v1", 5), ok("v1", 4), ok("v1", 4, 9)]))
    assert v.receipted_bytes == 2 * SIZE and v.after["v1"].max_sequence == 5
    assert v.after["v1"].ok_segments == 2
    later = reconcile(
        interval(receipts=[ok("v1", 3, 62), ok("v1", 5, 63), ok("v1", 6, 64)], before=v.after),
    )
    assert later.receipted_bytes == SIZE and later.after["v1"].max_sequence == 6
    (d,) = [d for d in later.discrepancies if d.kind == "duplicate_receipt"]
    assert d.evidence == {"count": 2}
    smaller = summarize_receipts(
        [ok("v1", 7, nbytes=SIZE), ok("v1", 7, 15, nbytes=10)], segments(), {}
    )
    assert smaller["v1"].counted_bytes == 10 and smaller["v1"].duplicates == 1


def test_summaries_put_every_receipt_in_one_bucket():
    segs = segments()
    receipts = [
        ok("v1", 1),  # counted
        ok("v1", 1, 4),  # duplicate
        ok("v1", 2, nbytes=SIZE + 1),  # counted, size mismatch
        ok("v1", 999, 10),  # unknown segment
        ok("v1", 20, 10),  # before its segment existed
        ok("v1", 3, download_ms=1),  # too fast
        ok("v1", 4, outcome="mismatch"),
        ok("v1", 5, outcome="error", nbytes=0),
        ok("v1", 6, outcome="stall"),
    ]
    params = ReconcileParams(max_receipt_bps=1e9)
    (summary,) = summarize_receipts(receipts, segs, {}, params).values()
    assert summary == SessionReceipts(
        counted_bytes=2 * SIZE,
        ok_segments=2,
        max_sequence=2,
        size_mismatches=1,
        before_segment=1,
        too_fast=1,
        duplicates=1,
        unknown_segment=1,
        ok_receipts=6,
        mismatches=1,
        failures=2,
        first_at=at(3),
        last_at=at(13),
    )


# --- Properties --------------------------------------------------------------------------------

SESSIONS = ["a", "b", "c"]
receipt_spec = st.tuples(
    st.sampled_from(SESSIONS),
    st.integers(0, 40),  # sequence
    st.integers(0, 2 * SIZE),  # bytes
    st.sampled_from(["ok", "ok", "ok", "mismatch", "error", "stall"]),
    st.floats(0, 59.9),  # offset in the interval
)
interval_spec = st.tuples(
    st.lists(st.tuples(st.sampled_from(SESSIONS), st.integers(0, 5 * SIZE)), max_size=4),
    st.lists(receipt_spec, max_size=12),
)
session_spec = st.fixed_dictionaries(
    {
        sid: st.builds(
            SessionFact,
            session_id=st.just(sid),
            opened_at=st.just(at(-30)),
            same_network_as_node=st.booleans(),
            sources_polls=st.integers(0, 3),
            is_probe=st.booleans(),
        )
        for sid in SESSIONS
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(interval_spec, min_size=1, max_size=5), session_spec)
def test_paid_never_exceeds_what_both_sides_and_plausibility_allow(intervals, sessions):
    segs = segments(count=200)
    before: dict[str, SessionTotals] = {}
    paid_total = 0
    claimed: dict[str, int] = dict.fromkeys(SESSIONS, 0)
    counted_receipts: dict[str, set[int]] = {sid: set() for sid in SESSIONS}
    for i, (claims, receipts) in enumerate(intervals):
        start = i * 60
        facts = [ClaimFact(sid, b, 1, at(start + 30)) for sid, b in claims]
        rfacts = [
            ReceiptFact(sid, seq, b, outcome, at(start + off))
            for sid, seq, b, outcome, off in receipts
        ]
        v = reconcile(interval(facts, rfacts, sessions, before, start=start, segs=segs))
        assert 0 <= v.paid_bytes <= v.plausible_bytes
        paid_total += v.paid_bytes
        for sid, b in claims:
            claimed[sid] += b
        for r in rfacts:
            seg = segs[r.sequence]
            if r.outcome == "ok" and r.received_at >= seg.attested_at:
                counted_receipts[r.session_id].add(r.sequence)
        for sid, totals in v.after.items():
            old = before.get(sid, SessionTotals())
            assert totals.paid >= old.paid  # never taken back
            assert totals.paid <= min(totals.claimed, totals.receipted)
            assert totals.receipted <= len(counted_receipts[sid]) * SIZE  # one copy a segment
            if totals.excluded_reason is not None:
                assert totals.paid == old.paid  # controlled sessions earn nothing more
        before = dict(v.after)
    assert paid_total == sum(t.paid for t in before.values())
    assert paid_total <= sum(claimed.values())
    for totals in before.values():
        if totals.excluded_reason is None:
            # Every segment was in the window, so the cap never bit: the full agreed amount.
            assert totals.paid == min(totals.claimed, totals.receipted)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 10), min_size=2, max_size=8),  # ok segments per interval
    st.integers(0, 2),  # intervals the claims lag the receipts by
)
def test_interval_boundaries_never_change_what_is_paid(per_interval, lag):
    """The same bytes, claimed early or late against their receipts, are paid exactly once."""
    segs = segments(count=200)
    before: dict[str, SessionTotals] = {}
    seq = paid = 0
    claims_due: dict[int, int] = {}
    n = len(per_interval) + lag + 1
    for i in range(n):
        start = i * 60
        receipts = []
        if i < len(per_interval):
            for _ in range(per_interval[i]):
                receipts.append(ReceiptFact("v1", seq, SIZE, "ok", at(seq * SEG_S + 0.5)))
                seq += 1
            claims_due[i + lag] = claims_due.get(i + lag, 0) + per_interval[i] * SIZE
        claims = [ClaimFact("v1", claims_due[i], 1, at(start + 30))] if claims_due.get(i) else []
        params = ReconcileParams(max_receipt_age_s=10_000, plausible_lookback_s=10_000)
        v = reconcile(
            interval(
                claims,
                receipts,
                {
                    "v1": viewer(opened_at=at(-600)),
                },
                before,
                start,
                segs=segs,
                params=params,
            ),
            params,
        )
        paid += v.paid_bytes
        before = dict(v.after)
    assert paid == sum(per_interval) * SIZE
