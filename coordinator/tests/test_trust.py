"""Trust as a pure function: the posterior, decay toward the prior, vetting, warning before
penalty, and the observations made from probes, reconciled intervals and viewers' receipts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamr_coordinator.verification import trust
from streamr_coordinator.verification.reconciliation import IntervalVerdict
from streamr_coordinator.verification.trust import Observation, TrustParams

T0 = datetime(2026, 3, 1, tzinfo=UTC)
P = TrustParams()


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def verdict(outcome: str, ratio: float | None = None) -> IntervalVerdict:
    return IntervalVerdict(0, 0, 0, 0, {}, (), outcome, {}, ratio=ratio)


def failing(state: trust.TrustState, start_s: float, count: int, weight: float = 3.0):
    obs = [Observation(later(start_s + i * 60), "reconciliation", 0, weight) for i in range(count)]
    return trust.observe(state, obs, P)


def test_a_new_node_starts_at_the_prior_mean_and_is_vetting():
    state = trust.initial(T0, P)
    assert trust.score(state) == pytest.approx(P.prior_alpha / (P.prior_alpha + P.prior_beta))
    s = trust.standing(state, T0, P, vetting_pay_bps=5_000)
    assert s.level == "vetting" and s.pay_bps == 5_000 and s.routing_weight == 1.0
    assert "new" in s.message and "0 of 10 checks" in s.message


def test_vetting_ends_only_after_enough_probes_and_enough_time():
    state = trust.observe(
        trust.initial(T0, P), [trust.probe_observation(later(i), "ok", P) for i in range(10)], P
    )
    assert state.probes_passed == 10
    assert trust.standing(state, later(600), P).level == "vetting"  # too soon
    done = trust.standing(state, later(P.vetting_min_s), P)
    assert done.level == "good" and done.pay_bps == 10_000 and "All good" in done.message
    few = trust.observe(trust.initial(T0, P), [trust.probe_observation(T0, "ok", P)], P)
    assert trust.standing(few, later(10 * P.vetting_min_s), P).level == "vetting"  # too few


def test_probe_outcomes_weigh_as_designed():
    def weights(outcome: str) -> tuple[float, float]:
        o = trust.probe_observation(T0, outcome, P)
        assert o.source == "probe" and o.at == T0
        return o.success, o.failure

    assert weights("ok") == (1.0, 0.0)
    assert weights("mismatch") == (0.0, P.mismatch_weight)
    for outcome in ("error", "stall", "timeout"):
        assert weights(outcome) == (0.0, P.failure_weight)


def test_one_lost_probe_leaves_a_new_node_above_0_9():
    state = trust.observe(trust.initial(T0, P), [trust.probe_observation(T0, "timeout", P)], P)
    assert trust.score(state) >= 0.9 and state.warned_at is None


def test_verdicts_become_observations():
    assert trust.verdict_observation(T0, verdict("idle"), P) is None
    agree = trust.verdict_observation(T0, verdict("agree", 1.0), P)
    assert agree is not None and (agree.success, agree.failure) == (1.0, 0.0)
    half = trust.verdict_observation(T0, verdict("disagree", 0.5), P)
    assert half is not None and half.failure == pytest.approx(P.disagree_weight * 0.5)
    none = trust.verdict_observation(T0, verdict("disagree", 0.0), P)
    assert none is not None and none.failure == pytest.approx(P.disagree_weight)


def test_viewer_summaries_weigh_shares_and_cap_mismatches():
    assert trust.viewer_observation(T0, 0, 0, 0, P) is None
    o = trust.viewer_observation(T0, 19, 1, 0, P)
    assert o is not None and (o.success, o.failure) == pytest.approx((0.95, 0.05))
    flood = trust.viewer_observation(T0, 0, 0, 1000, P)
    assert flood is not None
    assert flood.failure == pytest.approx(P.mismatch_weight * P.max_viewer_mismatches)


def test_evidence_decays_toward_the_prior():
    bad = failing(trust.initial(T0, P), 0, 20)
    assert trust.score(bad) < 0.6
    week = trust.decay(bad, later(7 * 86_400), P)
    assert trust.score(bad) < trust.score(week) < trust.score(trust.initial(T0, P))
    half = trust.decay(bad, bad.updated_at + timedelta(seconds=P.half_life_s), P)
    assert half.beta - P.prior_beta == pytest.approx((bad.beta - P.prior_beta) / 2)
    assert trust.decay(bad, T0, P) == bad  # time never runs backwards


def test_warning_comes_first_and_the_penalty_only_after_the_grace():
    state = failing(trust.initial(T0, P), 0, 30)
    assert trust.score(state) < P.penalty_below
    assert state.warned_at is not None and state.penalised_at is None
    warned = trust.standing(state, later(1_800), P)
    assert warned.level == "warned" and warned.pay_bps == 5_000  # still vetting pay
    assert 0 < warned.routing_weight < 1 and "Warning" in warned.message
    penalised = trust.standing(state, state.warned_at + timedelta(seconds=P.warning_grace_s), P)
    assert penalised.level == "penalised" and penalised.pay_bps == 0
    assert penalised.routing_weight == 0 and "no viewers" in penalised.message


def test_a_warned_node_that_recovers_is_never_penalised():
    state = failing(trust.initial(T0, P), 0, 4)
    assert state.warned_at is not None
    good = [Observation(later(300 + i), "probe", 1, 0) for i in range(40)]
    state = trust.observe(state, good, P)
    assert state.warned_at is None and state.penalised_at is None
    assert trust.standing(state, later(2 * P.warning_grace_s), P).level != "penalised"


def test_a_penalised_node_recovers_once_it_delivers_again():
    state = trust.review(failing(trust.initial(T0, P), 0, 40), later(5_000), P)
    assert state.penalised_at is not None
    good = [Observation(later(6_000 + i), "probe", 1, 0) for i in range(1_000)]
    assert trust.standing(trust.observe(state, good, P), later(7_000), P).level != "penalised"


def test_observations_are_applied_in_time_order_whatever_the_input_order():
    obs = [
        Observation(later(10), "probe", 1, 0),
        Observation(later(5), "viewers", 0, 2),
        Observation(later(86_400), "reconciliation", 1, 0),
    ]
    a = trust.observe(trust.initial(T0, P), obs, P)
    b = trust.observe(trust.initial(T0, P), list(reversed(obs)), P)
    assert a == b


obs_spec = st.builds(
    Observation,
    at=st.integers(0, 10 * 86_400).map(later),
    source=st.sampled_from(["probe", "reconciliation", "viewers"]),
    success=st.floats(0, 5),
    failure=st.floats(0, 10),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(obs_spec, max_size=30), st.integers(0, 30 * 86_400))
def test_scores_stay_in_range_and_standing_is_consistent(observations, now_s):
    state = trust.observe(trust.initial(T0, P), observations, P)
    now = max(later(now_s), state.updated_at)
    s = trust.standing(state, now, P)
    assert 0 < s.score < 1 and 0 <= s.routing_weight <= 1 and s.message
    if s.level == "penalised":
        assert s.pay_bps == 0 and s.routing_weight == 0 and s.score < P.warn_below
    if s.score >= P.warn_below:
        assert s.level in ("vetting", "good")
    if s.level == "good":
        assert s.pay_bps == 10_000


@settings(max_examples=100, deadline=None)
@given(st.lists(obs_spec, max_size=10), st.floats(0.1, 5))
def test_more_success_never_lowers_the_score(observations, extra):
    state = trust.observe(trust.initial(T0, P), observations, P)
    at = state.updated_at
    more = trust.observe(state, [Observation(at, "probe", extra, 0)], P)
    worse = trust.observe(state, [Observation(at, "probe", 0, extra)], P)
    assert trust.score(worse) < trust.score(state) < trust.score(more)


def fold_step_by_step(
    state: trust.TrustState, observations: list[Observation], params: TrustParams
) -> trust.TrustState:
    """``observe`` as its docstring says it: decay to each observation, add it, review."""
    for obs in sorted(observations, key=lambda o: o.at):
        state = trust.decay(state, obs.at, params)
        state = replace(
            state,
            alpha=state.alpha + max(obs.success, 0.0),
            beta=state.beta + max(obs.failure, 0.0),
            probes_passed=state.probes_passed + (obs.passed if obs.source == "probe" else 0),
        )
        state = trust.review(state, state.updated_at, params)
    return state


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.builds(
            Observation,
            at=st.integers(-3_600, 3 * 86_400).map(later),
            source=st.sampled_from(["probe", "reconciliation", "viewers"]),
            success=st.floats(-1, 5),
            failure=st.floats(-1, 10),
            passed=st.integers(0, 4),
        ),
        max_size=40,
    ),
    st.integers(0, 86_400),
    st.sampled_from([None, 0, 600]),
    st.sampled_from([None, 0]),
    st.sampled_from([0.0, 600.0, 3_600.0]),
)
def test_observe_folds_exactly_as_decay_then_review(
    observations, updated_s, warned_s, penalised_s, grace_s
):
    """The fast fold in ``observe`` gives the very same floats and moments as the
    step-by-step definition, from any state (warned, penalised, updated after some of the
    evidence) and with any grace."""
    params = replace(P, warning_grace_s=grace_s)
    start = replace(
        trust.initial(T0, params),
        updated_at=later(updated_s),
        alpha=11.5,
        beta=2.25,
        probes_passed=3,
        warned_at=None if warned_s is None else later(warned_s),
        penalised_at=None if penalised_s is None else later(penalised_s),
    )
    assert trust.observe(start, observations, params) == fold_step_by_step(
        start, observations, params
    )


def test_a_probe_session_is_one_observation_judged_whole():
    assert trust.probe_session_observation([], T0, P) is None
    ok = trust.probe_session_observation(["ok"] * 4, T0, P)
    assert ok is not None and (ok.success, ok.failure, ok.passed) == (1.0, 0.0, 4)
    assert ok.source == "probe" and ok.at == T0
    # A burst of loss in one session weighs at most one lost probe, split by its share.
    lossy = trust.probe_session_observation(["ok", "timeout", "ok", "error"], T0, P)
    assert lossy is not None and (lossy.success, lossy.passed) == (0.5, 2)
    assert lossy.failure == pytest.approx(P.failure_weight * 0.5)
    # Any mismatch is strong evidence, however many fetches were fine, and passes nothing.
    bad = trust.probe_session_observation(["ok", "ok", "mismatch"], T0, P)
    assert bad is not None and (bad.success, bad.failure, bad.passed) == (0, P.mismatch_weight, 0)
    state = trust.observe(trust.initial(T0, P), [ok, lossy], P)
    assert state.probes_passed == 6


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["ok", "error", "timeout", "stall", "missing"]), min_size=1))
def test_a_probe_session_without_mismatch_never_weighs_more_than_one_probe(outcomes):
    o = trust.probe_session_observation(outcomes, T0, P)
    assert o is not None
    assert o.success + o.failure == pytest.approx(1.0)
    assert o.passed == outcomes.count("ok")
    worst = trust.observe(trust.initial(T0, P), [o], P)
    assert trust.score(worst) >= 0.9  # a new node survives any one session of lost fetches


def test_a_quiet_interval_of_viewers_weighs_by_the_fetches_it_covers():
    one = trust.viewer_observation(T0, 0, 1, 0, P)
    assert one is not None and one.failure == pytest.approx(P.viewer_weight / P.viewer_full_fetches)
    full = trust.viewer_observation(T0, 0, P.viewer_full_fetches, 0, P)
    busy = trust.viewer_observation(T0, 0, 10 * P.viewer_full_fetches, 0, P)
    assert full is not None and busy is not None
    assert full.failure == busy.failure == pytest.approx(P.viewer_weight)  # saturates
    # Mismatches are not scaled down: one is hard evidence however quiet the interval.
    strong = trust.viewer_observation(T0, 0, 0, 1, P)
    assert strong is not None and strong.failure >= P.mismatch_weight
    # Two quiet intervals whose only fetch failed leave a new node above 0.9.
    state = trust.observe(trust.initial(T0, P), [one, replace_at(one, later(60))], P)
    assert trust.score(state) >= 0.9


def replace_at(o: Observation, at: datetime) -> Observation:
    from dataclasses import replace

    return replace(o, at=at)
