"""Trust: a reputation with memory that is fair to honest nodes and catches cheaters. Pure.

A Beta posterior over "this node delivers what it says": probes, reconciled intervals and
viewers' receipts add weighted successes (alpha) and failures (beta). Evidence fades with a
half-life toward the prior, so an old mistake is forgotten and a reformed node recovers.
A timeout under packet loss is weak evidence (weight 1, like one success); a segment that did
not match its signature is strong (``mismatch_weight``): an honest node cannot cause one.

Consequences come in order: a node below ``warn_below`` is warned (the friend sees why, and
what to do); only if it is still below ``penalty_below`` after ``warning_grace_s`` is it
penalised (no pay, no viewers) until its score is back above ``warn_below``. A new node is
vetting (reduced pay) until it passed ``vetting_min_probes`` probes and ``vetting_min_s``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from .reconciliation import IntervalVerdict

FULL_PAY_BPS = 10_000
Level = Literal["vetting", "good", "warned", "penalised"]
Source = Literal["probe", "reconciliation", "viewers"]


@dataclass(frozen=True)
class TrustParams:
    prior_alpha: float = 19.0  # prior mean 0.95: one lost probe leaves a new node above 0.9
    prior_beta: float = 1.0
    half_life_s: float = 3 * 86_400
    warn_below: float = 0.8
    penalty_below: float = 0.6
    warning_grace_s: float = 3_600
    vetting_min_probes: int = 10
    vetting_min_s: float = 3_600
    mismatch_weight: float = 5.0
    failure_weight: float = 1.0
    disagree_weight: float = 3.0  # an interval whose receipts covered none of the claims
    viewer_weight: float = 1.0  # one interval's viewer receipts, all failed
    # ...once they cover this many fetches (one viewer watching a whole minute of 6 s segments);
    # fewer weigh less, so one lost fetch in a quiet interval cannot outweigh several probes.
    viewer_full_fetches: int = 10
    # Viewers' mismatch reports are strong evidence but come from viewers, who could lie:
    # one interval's worth counts at most this many.
    max_viewer_mismatches: int = 3


DEFAULT_PARAMS = TrustParams()


@dataclass(frozen=True)
class Observation:
    at: datetime
    source: Source
    success: float
    failure: float
    detail: str = ""
    passed: int = 0  # probe fetches this observation saw pass: vetting counts them


@dataclass(frozen=True)
class TrustState:
    alpha: float
    beta: float
    updated_at: datetime
    first_seen_at: datetime
    probes_passed: int = 0
    warned_at: datetime | None = None
    penalised_at: datetime | None = None


@dataclass(frozen=True)
class Standing:
    level: Level
    score: float
    pay_bps: int  # 10000 = full pay
    routing_weight: float  # 1 = as any node, the score while warned, 0 = send no viewers
    message: str  # for the friend, in plain words


def initial(now: datetime, params: TrustParams = DEFAULT_PARAMS) -> TrustState:
    return TrustState(params.prior_alpha, params.prior_beta, now, now)


def score(state: TrustState) -> float:
    """The posterior mean: the share of evidence that says the node delivers."""
    return state.alpha / (state.alpha + state.beta)


def decay(state: TrustState, now: datetime, params: TrustParams = DEFAULT_PARAMS) -> TrustState:
    """Evidence fades toward the prior with ``half_life_s``; time never runs backwards."""
    elapsed = (now - state.updated_at).total_seconds()
    if elapsed <= 0:
        return state
    keep = 0.5 ** (elapsed / params.half_life_s)
    return replace(
        state,
        alpha=params.prior_alpha + (state.alpha - params.prior_alpha) * keep,
        beta=params.prior_beta + (state.beta - params.prior_beta) * keep,
        updated_at=now,
    )


def review(state: TrustState, now: datetime, params: TrustParams = DEFAULT_PARAMS) -> TrustState:
    """Warn, penalise or clear, by the score at ``now``: warning first, penalty after grace."""
    state = decay(state, now, params)
    s = score(state)
    if s >= params.warn_below:
        return replace(state, warned_at=None, penalised_at=None)
    warned_at = state.warned_at or now
    penalised_at = state.penalised_at
    grace = timedelta(seconds=params.warning_grace_s)
    if penalised_at is None and s < params.penalty_below and now - warned_at >= grace:
        penalised_at = now
    return replace(state, warned_at=warned_at, penalised_at=penalised_at)


def observe(
    state: TrustState, observations: Iterable[Observation], params: TrustParams = DEFAULT_PARAMS
) -> TrustState:
    """Add evidence in time order (each decayed to its moment), reviewing after each.

    The same arithmetic as ``decay`` then ``review`` per observation, on local variables: the
    trust update folds over a hundred thousand observations an hour at 1,000 nodes, and a new
    state object per step costs more than the arithmetic (``test_trust`` holds the two ways
    equal to the bit)."""
    ordered = sorted(observations, key=lambda o: o.at)
    if not ordered:
        return state
    alpha, beta, updated_at = state.alpha, state.beta, state.updated_at
    passed, warned_at, penalised_at = state.probes_passed, state.warned_at, state.penalised_at
    prior_alpha, prior_beta, half_life_s = params.prior_alpha, params.prior_beta, params.half_life_s
    warn_below, penalty_below = params.warn_below, params.penalty_below
    grace = timedelta(seconds=params.warning_grace_s)
    for obs in ordered:
        elapsed = (obs.at - updated_at).total_seconds()
        if elapsed > 0:  # decay: time never runs backwards
            keep = 0.5 ** (elapsed / half_life_s)
            alpha = prior_alpha + (alpha - prior_alpha) * keep
            beta = prior_beta + (beta - prior_beta) * keep
            updated_at = obs.at
        alpha = alpha + max(obs.success, 0.0)
        beta = beta + max(obs.failure, 0.0)
        if obs.source == "probe":
            passed = passed + obs.passed
        # review, at ``updated_at`` (where decay has nothing left to do)
        s = alpha / (alpha + beta)
        if s >= warn_below:
            warned_at = penalised_at = None
        else:
            warned_at = warned_at or updated_at
            if penalised_at is None and s < penalty_below and updated_at - warned_at >= grace:
                penalised_at = updated_at
    return replace(
        state,
        alpha=alpha,
        beta=beta,
        updated_at=updated_at,
        probes_passed=passed,
        warned_at=warned_at,
        penalised_at=penalised_at,
    )


def standing(
    state: TrustState,
    now: datetime,
    params: TrustParams = DEFAULT_PARAMS,
    vetting_pay_bps: int = 5_000,
) -> Standing:
    """What the node's trust means right now for its pay, its viewers and its friend."""
    state = review(state, now, params)
    s = score(state)
    if state.penalised_at is not None:
        return Standing(
            "penalised",
            s,
            0,
            0.0,
            f"Paused: what your node reported did not match what viewers and our checks "
            f"received (trust {s:.0%}). It gets no viewers and earns nothing until checks show "
            f"it delivering again. Make sure it runs an unmodified streamr-node on a working "
            f"connection; it recovers by itself once it delivers.",
        )
    vetting_done = (
        state.probes_passed >= params.vetting_min_probes
        and (now - state.first_seen_at).total_seconds() >= params.vetting_min_s
    )
    pay = FULL_PAY_BPS if vetting_done else vetting_pay_bps
    if state.warned_at is not None:
        deadline = state.warned_at + timedelta(seconds=params.warning_grace_s)
        return Standing(
            "warned",
            s,
            pay,
            s,
            f"Warning: some of what your node reported could not be confirmed by viewers or "
            f"our checks (trust {s:.0%}). Check its connection and that it runs an unmodified "
            f"streamr-node. If trust is still below {params.penalty_below:.0%} after "
            f"{deadline:%Y-%m-%d %H:%M} UTC, it gets no viewers and no pay until it recovers.",
        )
    if not vetting_done:
        hours = params.vetting_min_s / 3600
        return Standing(
            "vetting",
            s,
            pay,
            1.0,
            f"Your node is new: it earns {pay / 100:g}% of the full rate while we check it "
            f"({min(state.probes_passed, params.vetting_min_probes)} of "
            f"{params.vetting_min_probes} checks passed, at least {hours:g} h). "
            f"Nothing to do but keep it running.",
        )
    return Standing(
        "good",
        s,
        FULL_PAY_BPS,
        1.0,
        f"All good: viewers and our checks confirm what your node reports (trust {s:.0%}).",
    )


def probe_observation(
    at: datetime, outcome: str, params: TrustParams = DEFAULT_PARAMS, detail: str = ""
) -> Observation:
    """ok: one success; mismatch: strong failure; error, stall or timeout: weak failure."""
    if outcome == "ok":
        return Observation(at, "probe", 1.0, 0.0, detail or "probe ok", passed=1)
    if outcome == "mismatch":
        return Observation(at, "probe", 0.0, params.mismatch_weight, detail or "probe mismatch")
    return Observation(at, "probe", 0.0, params.failure_weight, detail or f"probe {outcome}")


def probe_session_observation(
    outcomes: Sequence[str], at: datetime, params: TrustParams = DEFAULT_PARAMS, detail: str = ""
) -> Observation | None:
    """One probe session's judged fetches as one observation; the prober (service) and the
    simulation both judge probes with this and nothing else.

    Each outcome is a fetch's judgement, after the prober's one retry of an error or timeout
    (``ok``, ``mismatch``, ``error``, ``timeout``/``stall``, ``missing``). Any mismatch is a
    strong failure (``mismatch_weight``): an honest node cannot serve bytes that differ from the
    signed index. Otherwise the session weighs as one probe, split by its shares of ok and failed
    fetches: the fetches of one session share a moment and a path, so a burst of
    loss is one piece of evidence, not one per segment it hit."""
    if not outcomes:
        return None
    counts = Counter(outcomes)
    summary = detail or "probe session: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    if counts["mismatch"]:
        return Observation(at, "probe", 0.0, params.mismatch_weight, summary)
    ok, total = counts["ok"], len(outcomes)
    return Observation(
        at,
        "probe",
        ok / total,
        params.failure_weight * (total - ok) / total,
        summary,
        passed=ok,
    )


def verdict_observation(
    at: datetime, verdict: IntervalVerdict, params: TrustParams = DEFAULT_PARAMS
) -> Observation | None:
    """agree: one success; disagree: a failure as large as the unreceipted share of the
    claims; idle: no evidence either way. Receipt outcomes are ``viewer_observation``'s."""
    return interval_observation(at, verdict.outcome, verdict.ratio, params)


def interval_observation(
    at: datetime, outcome: str, ratio: float | None, params: TrustParams = DEFAULT_PARAMS
) -> Observation | None:
    """``verdict_observation`` from the two fields it reads: the trust update folds stored
    verdicts (reconciliations rows), tens of thousands an hour, without rebuilding each. A
    backlog reconciled as one window is one verdict, weighed as one interval: most of a window's
    intervals may have been idle, so its length says nothing about how much it saw."""
    if outcome == "idle":
        return None
    if outcome == "agree":
        return Observation(at, "reconciliation", 1.0, 0.0, "claims matched receipts")
    shortfall = 1.0 - min(max(ratio or 0.0, 0.0), 1.0)
    return Observation(
        at,
        "reconciliation",
        0.0,
        params.disagree_weight * shortfall,
        f"receipts covered {1 - shortfall:.0%} of claimed bytes",
    )


def viewer_observation(
    at: datetime, ok: int, failed: int, mismatched: int, params: TrustParams = DEFAULT_PARAMS
) -> Observation | None:
    """One interval of viewers' receipts for the node: the shares of ok and failed fetches
    weigh ``viewer_weight`` together (a viewer's network fails too), scaled down when the
    interval saw fewer than ``viewer_full_fetches`` fetches (evidence in proportion to what it
    covers, saturating so a busy node's history is not all viewers); each mismatch weighs
    ``mismatch_weight`` whatever the volume (an honest node cannot cause one)."""
    total = ok + failed + mismatched
    if total == 0:
        return None
    weight = params.viewer_weight * min(1.0, total / max(params.viewer_full_fetches, 1))
    strong = params.mismatch_weight * min(mismatched, params.max_viewer_mismatches)
    return Observation(
        at,
        "viewers",
        weight * ok / total,
        weight * failed / total + strong,
        f"{ok} ok, {failed} failed, {mismatched} mismatched receipts",
    )
