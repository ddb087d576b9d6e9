"""Double-entry posting rules. Pure: plain data in, balanced transactions out.

Every amount is a change of one account's balance in integer micro-USD; a transaction's
postings add up to zero, so the sum of all balances is always zero and money is neither made
nor lost. Accounts:

- ``stream_budget:<stream>``: what the streamer funded and has not been spent (never < 0);
- ``node_earnings:<node>``: earned by the node and not paid out yet (never < 0);
- ``platform_fees``: the operator's fees (never < 0);
- ``streamer_funding``: money that came in from streamers: the outside world, so it goes
  negative by exactly what was funded;
- ``payouts_sent``: money that went out to friends (never < 0).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class AccountKind(enum.StrEnum):
    STREAM_BUDGET = "stream_budget"
    NODE_EARNINGS = "node_earnings"
    PLATFORM_FEES = "platform_fees"
    STREAMER_FUNDING = "streamer_funding"
    PAYOUTS_SENT = "payouts_sent"


class TransactionKind(enum.StrEnum):
    FUNDING = "funding"
    ACCRUAL = "accrual"
    PAYOUT = "payout"


MAY_GO_NEGATIVE = frozenset({AccountKind.STREAMER_FUNDING})


def account_key(kind: AccountKind, ref: str | None = None) -> str:
    """The account's unique name: ``kind`` alone for platform accounts, ``kind:ref`` else."""
    per_owner = kind in (AccountKind.STREAM_BUDGET, AccountKind.NODE_EARNINGS)
    if per_owner != (ref is not None):
        raise ValueError(f"{kind} accounts {'need' if per_owner else 'take no'} reference")
    return f"{kind}:{ref}" if ref is not None else str(kind)


def kind_of(key: str) -> AccountKind:
    return AccountKind(key.partition(":")[0])


class LedgerError(ValueError):
    """A transaction that must not be written: unbalanced, or it would overdraw an account."""


@dataclass(frozen=True)
class Posting:
    account: str  # an account key
    amount: int  # micro-USD added to the account's balance (negative: taken from it)


@dataclass(frozen=True)
class Draft:
    """A transaction before it is written: ``key`` makes posting it idempotent."""

    key: str
    kind: TransactionKind
    postings: tuple[Posting, ...]

    def check(self) -> None:
        """Refuse anything but whole, non-zero amounts that add up to zero."""
        for posting in self.postings:
            if isinstance(posting.amount, bool) or not isinstance(posting.amount, int):
                raise LedgerError(
                    f"{self.key}: amounts are whole micro-USD, not {posting.amount!r}"
                )
            if posting.amount == 0:
                raise LedgerError(f"{self.key}: a zero posting to {posting.account} says nothing")
        if sum(p.amount for p in self.postings) != 0:
            raise LedgerError(f"{self.key}: postings add up to {self.total}, not 0")
        if len({p.account for p in self.postings}) != len(self.postings):
            raise LedgerError(f"{self.key}: one account posted twice")

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.postings)


def _draft(key: str, kind: TransactionKind, *postings: Posting) -> Draft:
    draft = Draft(key, kind, tuple(p for p in postings if p.amount != 0))
    draft.check()
    return draft


def funding(key: str, stream_id: str, amount: int) -> Draft:
    """A streamer's money into the stream's budget."""
    if amount <= 0:
        raise LedgerError("a funding must be a positive amount")
    return _draft(
        key,
        TransactionKind.FUNDING,
        Posting(account_key(AccountKind.STREAMER_FUNDING), -amount),
        Posting(account_key(AccountKind.STREAM_BUDGET, stream_id), amount),
    )


def accrual(key: str, stream_id: str, node_id: str, friend: int, fee: int) -> Draft:
    """The budget pays an interval: the friend's share to the node, the fee to the platform."""
    if friend < 0 or fee < 0:
        raise LedgerError("accrued shares must not be negative")
    return _draft(
        key,
        TransactionKind.ACCRUAL,
        Posting(account_key(AccountKind.STREAM_BUDGET, stream_id), -(friend + fee)),
        Posting(account_key(AccountKind.NODE_EARNINGS, node_id), friend),
        Posting(account_key(AccountKind.PLATFORM_FEES), fee),
    )


def payout(key: str, node_id: str, amount: int) -> Draft:
    """A node's earnings go out to its friend."""
    if amount <= 0:
        raise LedgerError("a payout must be a positive amount")
    return _draft(
        key,
        TransactionKind.PAYOUT,
        Posting(account_key(AccountKind.NODE_EARNINGS, node_id), -amount),
        Posting(account_key(AccountKind.PAYOUTS_SENT), amount),
    )


def apply(balances: Mapping[str, int], draft: Draft) -> dict[str, int]:
    """The balances after ``draft``; refuses one that would take an account below zero."""
    return apply_all(balances, [draft])


def apply_all(balances: Mapping[str, int], drafts: Iterable[Draft]) -> dict[str, int]:
    """The balances after the drafts, in order: ``apply`` of each to what the ones before it
    left (one copy of the balances for a whole run's drafts, not one per draft)."""
    after = dict(balances)
    for draft in drafts:
        draft.check()
        for posting in draft.postings:
            after[posting.account] = after.get(posting.account, 0) + posting.amount
            if after[posting.account] < 0 and kind_of(posting.account) not in MAY_GO_NEGATIVE:
                raise LedgerError(
                    f"{draft.key}: {posting.account} would fall to {after[posting.account]}"
                )
    return after
