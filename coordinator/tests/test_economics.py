"""Economics in integer micro-USD: exact earnings over any split of bytes into intervals,
shares that add up, budget caps, payout minimums, periods and dollar formatting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamr_coordinator.payouts.economics import (
    BYTES_PER_GB,
    Economics,
    earned_micro_usd,
    format_usd,
    payout_amount,
    period_bounds,
    quote_accrual,
    split,
)

RATES = st.integers(min_value=0, max_value=10_000_000)
BPS = st.integers(min_value=0, max_value=10_000)
FEW = settings(max_examples=150, deadline=None)


def test_defaults_are_the_issue_s():
    terms = Economics()
    assert terms.rate_micro_usd_per_gb == 50_000  # 0.05 USD per GB
    assert format_usd(terms.rate_micro_usd_per_gb) == "0.050000"
    assert (terms.platform_fee_bps, terms.minimum_payout_micro_usd) == (1_000, 1_000_000)
    assert (terms.vetting_pay_bps, terms.payout_period_s) == (5_000, 86_400)
    assert terms.problems() == []


def test_one_gigabyte_earns_the_rate_and_a_byte_earns_nothing_yet():
    assert earned_micro_usd(0, BYTES_PER_GB, 50_000) == 50_000
    assert earned_micro_usd(0, 1, 50_000) == 0
    # ...but the fraction is not lost: it is paid once the cumulative total crosses a unit.
    assert earned_micro_usd(1, 20_001, 50_000) == 1


def test_earnings_refuse_a_total_that_goes_backwards():
    with pytest.raises(ValueError, match="never decrease"):
        earned_micro_usd(10, 9, 50_000)


@FEW
@given(st.lists(st.integers(min_value=0, max_value=5 * BYTES_PER_GB), max_size=40), RATES)
def test_cumulative_accrual_loses_nothing_over_any_split(intervals, rate):
    cum, paid = 0, 0
    for size in intervals:
        paid += earned_micro_usd(cum, cum + size, rate)
        cum += size
    assert paid == cum * rate // BYTES_PER_GB


@FEW
@given(st.integers(min_value=0, max_value=10**15), BPS)
def test_friend_and_fee_add_up_to_gross(gross, fee_bps):
    friend, fee = split(gross, fee_bps)
    assert friend + fee == gross
    assert fee == gross * fee_bps // 10_000 and friend >= 0


@FEW
@given(
    paid=st.integers(min_value=0, max_value=10**13),
    cum=st.integers(min_value=0, max_value=10**14),
    rate=RATES,
    pay_bps=BPS,
    fee_bps=BPS,
    budget=st.integers(min_value=0, max_value=10**9),
)
def test_a_quote_never_spends_more_than_the_budget(paid, cum, rate, pay_bps, fee_bps, budget):
    q = quote_accrual(
        paid_bytes=paid,
        cum_bytes_before=cum,
        rate_micro_usd_per_gb=rate,
        pay_bps=pay_bps,
        fee_bps=fee_bps,
        budget_micro_usd=budget,
    )
    assert q.earned_micro_usd == earned_micro_usd(cum, cum + paid, rate)
    assert q.owed_micro_usd == q.earned_micro_usd * pay_bps // 10_000
    assert q.gross_micro_usd == min(q.owed_micro_usd, budget)
    assert q.friend_micro_usd + q.fee_micro_usd == q.gross_micro_usd
    assert q.gross_micro_usd + q.unfunded_micro_usd == q.owed_micro_usd
    assert 0 <= q.unfunded_bytes <= paid
    assert (q.unfunded_bytes == 0) or q.unfunded_micro_usd > 0


def test_an_exhausted_budget_pays_what_is_left_and_records_the_rest():
    q = quote_accrual(
        paid_bytes=2 * BYTES_PER_GB,
        cum_bytes_before=0,
        rate_micro_usd_per_gb=50_000,
        pay_bps=10_000,
        fee_bps=1_000,
        budget_micro_usd=25_000,
    )
    assert (q.owed_micro_usd, q.gross_micro_usd, q.unfunded_micro_usd) == (100_000, 25_000, 75_000)
    assert (q.friend_micro_usd, q.fee_micro_usd) == (22_500, 2_500)
    assert q.unfunded_bytes == 1_500_000_000


def test_vetting_pays_the_vetting_share():
    q = quote_accrual(
        paid_bytes=BYTES_PER_GB,
        cum_bytes_before=0,
        rate_micro_usd_per_gb=50_000,
        pay_bps=5_000,
        fee_bps=1_000,
        budget_micro_usd=10**9,
    )
    assert (q.earned_micro_usd, q.owed_micro_usd, q.friend_micro_usd) == (50_000, 25_000, 22_500)
    assert q.unfunded_micro_usd == 0 and q.unfunded_bytes == 0


def test_balances_under_the_minimum_carry_over():
    assert payout_amount(999_999, 1_000_000) == 0
    assert payout_amount(1_000_000, 1_000_000) == 1_000_000
    assert payout_amount(0, 0) == 0


def test_periods_are_aligned_to_the_epoch():
    now = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
    assert period_bounds(now, 86_400) == (
        datetime(2026, 3, 3, tzinfo=UTC),
        datetime(2026, 3, 4, tzinfo=UTC),
    )
    assert period_bounds(datetime(2026, 3, 4, tzinfo=UTC), 3600)[1] == datetime(
        2026, 3, 4, tzinfo=UTC
    )


@FEW
@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_usd_text_is_exact(micro):
    text = format_usd(micro)
    assert Decimal(text) * 1_000_000 == micro
    assert len(text.partition(".")[2]) == 6


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"rate_micro_usd_per_gb": -1}, "rate_micro_usd_per_gb"),
        ({"platform_fee_bps": 10_001}, "platform_fee_bps"),
        ({"minimum_payout_micro_usd": -5}, "minimum_payout_micro_usd"),
        ({"vetting_pay_bps": 20_000}, "vetting_pay_bps"),
        ({"payout_period_s": 0}, "payout_period_s"),
        ({"rate_micro_usd_per_gb": 10**12}, "10 USD per GB"),
    ],
)
def test_absurd_terms_are_named(change, word):
    problems = Economics(**change).problems()
    assert len(problems) == 1 and word in problems[0]
