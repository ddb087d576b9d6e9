"""The ledger's posting rules, pure: every transaction adds up to zero, money is conserved over
any sequence of fundings, accruals and payouts, and no covered account ever goes negative."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamr_coordinator.payouts import ledger
from streamr_coordinator.payouts.economics import payout_amount, quote_accrual
from streamr_coordinator.payouts.ledger import (
    AccountKind,
    Draft,
    LedgerError,
    Posting,
    TransactionKind,
    account_key,
)

STREAMS = ("s1", "s2")
NODES = ("n1", "n2", "n3")
BUDGET = {s: account_key(AccountKind.STREAM_BUDGET, s) for s in STREAMS}
EARNINGS = {n: account_key(AccountKind.NODE_EARNINGS, n) for n in NODES}


def test_each_rule_balances():
    for draft in (
        ledger.funding("f", "s1", 500),
        ledger.accrual("a", "s1", "n1", 90, 10),
        ledger.payout("p", "n1", 90),
    ):
        draft.check()
        assert sum(p.amount for p in draft.postings) == 0


def test_an_unbalanced_transaction_is_refused_before_writing():
    draft = Draft(
        "bad",
        TransactionKind.FUNDING,
        (Posting(BUDGET["s1"], 10), Posting(account_key(AccountKind.STREAMER_FUNDING), -9)),
    )
    with pytest.raises(LedgerError, match="add up to 1"):
        draft.check()
    with pytest.raises(LedgerError, match="whole micro-USD"):
        Draft("f", TransactionKind.FUNDING, (Posting("x", 0.5), Posting("y", -0.5))).check()  # type: ignore[arg-type]


def test_an_overdraft_is_refused_but_outside_money_may_go_negative():
    after = ledger.apply({}, ledger.funding("f", "s1", 100))
    assert after[account_key(AccountKind.STREAMER_FUNDING)] == -100
    with pytest.raises(LedgerError, match="would fall to -1"):
        ledger.apply(after, ledger.accrual("a", "s1", "n1", 91, 10))
    with pytest.raises(LedgerError):
        ledger.apply(after, ledger.payout("p", "n1", 1))


def test_a_run_of_drafts_applies_as_each_in_turn():
    """``apply_all`` (one run's drafts at once) is ``apply`` of each to what the ones before it
    left, and refuses the draft that would overdraw, whatever came before it."""
    drafts = [
        ledger.funding("f", "s1", 100),
        ledger.accrual("a1", "s1", "n1", 45, 5),
        ledger.accrual("a2", "s1", "n2", 45, 5),
        ledger.payout("p", "n1", 45),
    ]
    one_by_one: dict[str, int] = {}
    for draft in drafts:
        one_by_one = ledger.apply(one_by_one, draft)
    before: dict[str, int] = {}
    assert ledger.apply_all(before, drafts) == one_by_one and before == {}
    with pytest.raises(LedgerError, match="a3: stream_budget:s1 would fall to -1"):
        ledger.apply_all({}, [*drafts, ledger.accrual("a3", "s1", "n3", 1, 0)])


def test_keys_name_their_accounts():
    assert account_key(AccountKind.PLATFORM_FEES) == "platform_fees"
    assert account_key(AccountKind.NODE_EARNINGS, "abc") == "node_earnings:abc"
    with pytest.raises(ValueError, match="need"):
        account_key(AccountKind.STREAM_BUDGET)


operation = st.one_of(
    st.tuples(st.just("fund"), st.sampled_from(STREAMS), st.integers(1, 5_000_000)),
    st.tuples(
        st.just("accrue"),
        st.sampled_from(STREAMS),
        st.sampled_from(NODES),
        st.integers(0, 40 * 10**9),  # paid bytes
        st.integers(0, 10_000),  # pay factor
    ),
    st.tuples(st.just("payout"), st.sampled_from(NODES), st.integers(0, 2_000_000)),
)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(operation, max_size=40),
    st.integers(0, 200_000),  # rate
    st.integers(0, 10_000),  # fee
)
def test_money_is_conserved_over_any_history(ops, rate, fee_bps):
    balances: dict[str, int] = {}
    cum: dict[tuple[str, str], int] = {}
    funded = gross_total = friend_total = fee_total = sent = 0
    for i, op in enumerate(ops):
        if op[0] == "fund":
            _, stream, amount = op
            draft = ledger.funding(f"fund:{i}", stream, amount)
            funded += amount
        elif op[0] == "accrue":
            _, stream, node, paid, pay_bps = op
            before = cum.get((stream, node), 0)
            cum[(stream, node)] = before + paid
            q = quote_accrual(
                paid_bytes=paid,
                cum_bytes_before=before,
                rate_micro_usd_per_gb=rate,
                pay_bps=pay_bps,
                fee_bps=fee_bps,
                budget_micro_usd=balances.get(BUDGET[stream], 0),
            )
            assert q.friend_micro_usd + q.fee_micro_usd == q.gross_micro_usd
            draft = ledger.accrual(f"accrue:{i}", stream, node, q.friend_micro_usd, q.fee_micro_usd)
            gross_total += q.gross_micro_usd
            friend_total += q.friend_micro_usd
            fee_total += q.fee_micro_usd
        else:
            _, node, minimum = op
            amount = payout_amount(balances.get(EARNINGS[node], 0), minimum)
            if not amount:
                continue  # carried over: no transaction, the balance stays
            draft = ledger.payout(f"payout:{i}", node, amount)
            sent += amount
        assert sum(p.amount for p in draft.postings) == 0
        balances = ledger.apply(balances, draft)
        assert sum(balances.values()) == 0
        for key, value in balances.items():
            assert value >= 0 or ledger.kind_of(key) in ledger.MAY_GO_NEGATIVE
    assert -balances.get(account_key(AccountKind.STREAMER_FUNDING), 0) == funded
    assert sum(balances.get(k, 0) for k in BUDGET.values()) == funded - gross_total
    assert balances.get(account_key(AccountKind.PLATFORM_FEES), 0) == fee_total
    assert sum(balances.get(k, 0) for k in EARNINGS.values()) == friend_total - sent
    assert balances.get(account_key(AccountKind.PAYOUTS_SENT), 0) == sent
